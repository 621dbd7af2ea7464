"""The commands derived from the experiments' declarations: `rnnlab NAME` trains a run,
`rnnlab cv NAME` cross-validates, `rnnlab evaluate RUN_DIR` scores a saved run again, and
`rnnlab predict RUN_DIR` (or an experiment's own command, such as `generate`) uses one.

Nothing here names an experiment: a new experiment module gets all of these by being listed
in `rnnlab.experiments.EXPERIMENTS`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from rnnlab.cli.options import RunOptions, add_options, print_config, values_of
from rnnlab.crossval import CURVES_FILE, CV_FILE, format_table
from rnnlab.experiments import (
    Experiment,
    cross_validate_experiment,
    evaluate_saved,
    restore,
    train,
)
from rnnlab.experiments.experiment import DRY_RUN_BATCHES
from rnnlab.models import RNNOptions
from rnnlab.options import option
from rnnlab.train import TrainConfig
from rnnlab.train.distributed import is_launch_main

FORMATTER = argparse.ArgumentDefaultsHelpFormatter


@dataclass
class CVOptions:
    folds: int = option(5, "k, the number of folds")
    workers: int = option(1, "folds trained at once, in separate processes sharing torch's threads")
    shuffle: bool = option(
        True, "shuffle the samples by --seed before folding; --no-shuffle: folds in data order"
    )
    stratify: bool = option(
        True, "each fold keeps the classes' proportions (where samples have one class)"
    )
    test: bool = option(False, "also score each fold's best model on the test split")


CV_DESCRIPTION = (
    "Train a fresh model on k-1 folds and validate it on the held-out one, for each fold; "
    "print each fold's scores and their mean ± std. Writes OUT_DIR/NAME/cv.json, "
    "cv_curves.png and a run folder fold-<i> per fold (NAME: cv-<experiment> unless --name "
    "says otherwise). Running the same command again skips the finished folds and continues "
    "the others. Under torchrun the ranks share the folds."
)


def add_training_options(parser, experiment: Experiment, cv: bool = False) -> None:
    """The experiment's settings, the training options with its recipe, the run's place; and
    --config / --print-config."""
    add_experiment_options(parser, experiment, experiment.cv_defaults if cv else None)
    add_options(parser, TrainConfig, experiment.train_defaults, "training")
    add_options(parser, RunOptions, None, "run folder")
    if cv:
        add_options(parser, CVOptions, None, "cross-validation")
    add_settings_files(parser, experiment)


def add_experiment_options(parser, experiment: Experiment, defaults: dict | None) -> None:
    """The experiment's settings: its own, then the recurrent network's (every experiment's)."""
    network = [f.name for f in dataclasses.fields(RNNOptions)]
    own = [f.name for f in dataclasses.fields(experiment.config) if f.name not in network]
    add_options(parser, experiment.config, defaults, "experiment", only=own)
    add_options(parser, experiment.config, defaults, "recurrent network", only=network)


def add_settings_files(parser, experiment: Experiment) -> None:
    """--config and --print-config; the parser remembers the classes a --config file may set."""
    settings = parser.add_argument_group("settings files")
    settings.add_argument(
        "--config",
        metavar="FILE",
        help="read options from this YAML or JSON file (a run's config.json works); "
        "options typed on the command line win",
    )
    settings.add_argument(
        "--print-config", action="store_true", help="print the resolved settings and exit"
    )
    parser.set_defaults(
        settings_classes={"config": experiment.config, "train": TrainConfig},
        experiment_name=experiment.name,
        parser=parser,
    )


def add_parsers(subparsers, experiments: tuple[Experiment, ...], saved: Experiment | None):
    """Every experiment-derived command; `saved`: the experiment of the run folder named on
    the command line, whose options the run commands take (None: none named)."""
    for experiment in experiments:
        p = subparsers.add_parser(
            experiment.name,
            help=experiment.help,
            description=experiment.help,
            formatter_class=FORMATTER,
        )
        add_training_options(p, experiment)
        p.set_defaults(run=partial(run_training, experiment))

    cv = subparsers.add_parser(
        "cv",
        help="k-fold cross-validation of an experiment: per-fold scores and mean ± std",
        description=CV_DESCRIPTION,
    )
    cv_experiments = cv.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")
    for experiment in experiments:
        p = cv_experiments.add_parser(
            experiment.name,
            help=f"cross-validate: {experiment.help}",
            description=CV_DESCRIPTION,
            formatter_class=FORMATTER,
        )
        add_training_options(p, experiment, cv=True)
        p.set_defaults(run=partial(run_cv, experiment))

    evaluate = _run_parser(
        subparsers,
        "evaluate",
        "score a saved run's best model again on its test split",
        experiments,
        saved,
        _evaluate_flags,
    )
    evaluate.add_argument("--dry-run", action="store_true", help="score two batches only")
    if saved is not None and saved.evaluate_fields:
        add_options(
            evaluate,
            saved.config,
            dict.fromkeys(saved.evaluate_fields),
            saved.name,
            only=saved.evaluate_fields,
        )
    evaluate.set_defaults(
        run=run_evaluate, evaluate_fields=saved.evaluate_fields if saved is not None else ()
    )

    for name, help_ in _run_command_names(experiments).items():
        p = _run_parser(
            subparsers,
            name,
            help_,
            experiments,
            saved,
            lambda e, name=name: _command_flags(e, name),
        )
        command = _command_of(saved, name) if saved is not None else None
        if command is not None:
            add_options(p, command.options, None, f"{saved.name} {name}")
        p.set_defaults(run=partial(run_saved_command, name), command_options=command)


def _run_parser(subparsers, name, help_, experiments, saved, describe):
    """A command on a run folder; its --help lists each experiment's options."""
    lines = [f"  {e.name}: {describe(e)}" for e in experiments if describe(e)]
    epilog = "options by the run's experiment:\n" + "\n".join(lines) if lines else None
    p = subparsers.add_parser(
        name,
        help=help_,
        description=help_,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", help="the run folder, e.g. runs/mnist")
    return p


def _evaluate_flags(experiment: Experiment) -> str:
    fields = experiment.evaluate_fields
    return f"may change {_flags(fields)}" if fields else ""


def _run_command_names(experiments) -> dict[str, str]:
    helps: dict[str, list[str]] = {}
    for experiment in experiments:
        for command in experiment.run_commands():
            helps.setdefault(command.name, []).append(f"{experiment.name}: {command.help}")
    return {name: "; ".join(lines) for name, lines in helps.items()}


def _command_of(experiment: Experiment, name: str):
    return next((c for c in experiment.run_commands() if c.name == name), None)


def _command_flags(experiment: Experiment, name: str) -> str:
    command = _command_of(experiment, name)
    if command is None:
        return ""
    flags = [f.name for f in dataclasses.fields(command.options)]
    return f"{_flags(flags)} ({command.help})"


def _flags(names) -> str:
    return ", ".join("--" + n.replace("_", "-") for n in names)


@contextlib.contextmanager
def run_place(run: RunOptions) -> Iterator[str]:
    """The parent folder of the run: --out-dir, or a temporary folder under --dry-run that is
    removed when the command ends, however it ends."""
    if not run.dry_run:
        yield run.out_dir
        return
    with tempfile.TemporaryDirectory(prefix="rnnlab-dry-run-") as out_dir:
        if is_launch_main():
            print(
                f"dry run: {DRY_RUN_BATCHES} batches, one epoch, in {out_dir} (removed at the end)"
            )
        yield out_dir


def configs_from(experiment: Experiment, args) -> tuple[object, TrainConfig, RunOptions]:
    """The experiment's config, the training settings and the run options the flags say."""
    config = experiment.config(**values_of(args, experiment.config))
    run = RunOptions(**values_of(args, RunOptions))
    if run.threads < 0:
        raise ValueError(f"--threads must be >= 0, got {run.threads}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if cores and run.threads > cores:
        print(
            f"rnnlab: warning: --threads {run.threads} is more than the {cores} cores this "
            "process may use; the threads wait on each other and an epoch runs many times slower",
            file=sys.stderr,
        )
    train_config = TrainConfig(
        **values_of(args, TrainConfig),
        name=run.name or experiment.run_name(config),
        out_dir=run.out_dir,
        resume=run.resume,
        progress=run.progress,
        plots=run.plots,
    )
    return config, train_config, run


def _for_this_run(train_config: TrainConfig, run: RunOptions, out_dir: str) -> TrainConfig:
    if not run.dry_run:
        return train_config
    return dataclasses.replace(
        train_config, out_dir=out_dir, epochs=1, limit_batches=DRY_RUN_BATCHES
    )


def run_training(experiment: Experiment, args) -> int:
    config, train_config, run = configs_from(experiment, args)
    if args.print_config:
        print_config(experiment.name, {"config": config, "train": train_config})
        return 0
    with run_place(run) as out_dir:
        train(
            experiment,
            config,
            _for_this_run(train_config, run, out_dir),
            explicit_name=run.name is not None,
            threads=run.threads or None,
        )
    return 0


def run_cv(experiment: Experiment, args) -> int:
    config, train_config, run = configs_from(experiment, args)
    cv = CVOptions(**values_of(args, CVOptions))
    if args.print_config:
        print_config(experiment.name, {"config": config, "train": train_config})
        return 0
    if run.threads:
        torch.set_num_threads(run.threads)
    name = run.name or f"cv-{experiment.run_name(config)}"
    with run_place(run) as out_dir:
        train_config = dataclasses.replace(_for_this_run(train_config, run, out_dir), name=name)
        result = cross_validate_experiment(
            experiment,
            config,
            train_config,
            folds=cv.folds,
            workers=cv.workers,
            shuffle=cv.shuffle,
            stratify=cv.stratify,
            test=cv.test,
        )
        if result is not None:
            rows = [dataclasses.asdict(fold) for fold in result.folds]
            print(format_table(rows, result.summary))
            acc = result.summary["val_acc"]
            files = [CV_FILE] + ([CURVES_FILE] if train_config.plots else [])
            print(
                f"validation accuracy {100 * acc['mean']:.2f}% ± {100 * acc['std']:.2f}% over "
                f"{len(rows)} folds; {' and '.join(files)} in {Path(result.run_dir)}"
            )
    return 0


def run_evaluate(args) -> int:
    overrides = {
        name: getattr(args, name)
        for name in args.evaluate_fields
        if getattr(args, name, None) is not None
    }
    saved = restore(args.run_dir, args.experiments, **overrides)
    result, data, extra = evaluate_saved(
        saved, limit_batches=DRY_RUN_BATCHES if args.dry_run else 0, same_data=not overrides
    )
    print(
        json.dumps(
            {
                "run": str(args.run_dir),
                "data": data.identity.get("source"),  # which data was scored, as it was found
                "on": "test split" if data.test is not None else "validation data",
                "loss": result.loss,
                "accuracy": result.accuracy,
                "count": result.count,
                **extra,
            },
            indent=2,
        )
    )
    return 0


def run_saved_command(name: str, args) -> int:
    saved = restore(args.run_dir, args.experiments)
    command = _command_of(saved.experiment, name)
    if command is None:
        raise ValueError(
            f"{args.run_dir} is a {saved.experiment.name} run, which has no {name!r} command"
        )
    command.run(saved, command.options(**values_of(args, command.options)))
    return 0
