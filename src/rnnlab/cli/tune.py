"""`rnnlab tune EXPERIMENT`: a hyperparameter search over the experiment's declared search
space, on Optuna (`rnnlab.tune`), and `rnnlab tune --report STUDY_DIR`, its summary again.

The options are the experiment's own and the training ones (every trial starts from them, its
drawn values on top), the study folder's, and the search's (`TuneOptions`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import optuna

from rnnlab import tune
from rnnlab.cli.commands import (
    FORMATTER,
    _for_this_run,
    add_experiment_options,
    add_settings_files,
    configs_from,
    run_place,
)
from rnnlab.cli.options import RunOptions, add_options, print_config, read_settings_file, values_of
from rnnlab.experiments import Experiment
from rnnlab.options import option
from rnnlab.train import TrainConfig

DRY_RUN_TRIALS = 2  # trials of a --dry-run study
# The run-folder options a study takes: its trials always continue their folders (no --resume)
STUDY_FIELDS = ("name", "out_dir", "threads", "progress", "plots", "dry_run")


@dataclass
class TuneOptions:
    trials: int = option(20, "trials in the study in all; running it again continues to this many")
    timeout: float = option(0.0, "start no trial after this many seconds; 0: no limit")
    folds: int = option(
        0,
        "0: a trial's objective is its run's best validation score; K >= 2: the mean over "
        "K-fold cross-validation of the training split (as `rnnlab cv`)",
    )
    workers: int = option(1, "trial processes on this machine, sharing torch's threads")
    storage: str | None = option(
        None,
        "the study's database URL, shared by workers on other machines (e.g. "
        "postgresql://user@host/db); default: the SQLite file study.db in the study folder",
    )
    space: str | None = option(
        None,
        "a YAML or JSON file of search-space entries that replace the experiment's own by "
        "name (name: null removes one)",
    )
    sampler: str = option("tpe", "Optuna's sampler: TPE or random", choices=tune.SAMPLERS)
    sampler_seed: int = option(0, "the sampler's seed: the same seed draws the same trials")
    pruner: str = option(
        "median",
        "stop a trial whose validation score per epoch trails: Optuna's median or Hyperband "
        "pruner, or none",
        choices=tune.PRUNERS,
    )
    heartbeat: int = option(
        10,
        "seconds between a running trial's signs of life; one silent for twice as long (its "
        "worker died) is failed and run again",
    )
    test: bool = option(
        True,
        "at the end, train the best settings once more and score them on the test split "
        "(--no-test on workers that should leave that to one machine)",
    )


DESCRIPTION = (
    "Search the experiment's settings with Optuna: each trial is an ordinary run of the "
    "experiment (its options below, the trial's drawn values on top) in OUT_DIR/NAME/trial-<k>, "
    "scored by its validation metric; the test split is scored once, at the end, with the best "
    "settings. The study lives in OUT_DIR/NAME/study.db (or --storage): run the same command "
    "again to continue it, or on other machines to share it. Writes trials.csv, best.yaml (a "
    "--config file for the experiment) and Optuna's plots. NAME: tune-<experiment> unless "
    "--name says otherwise."
)


def add_parser(subparsers, experiments: tuple[Experiment, ...]) -> None:
    tune = subparsers.add_parser(
        "tune",
        help="hyperparameter search over an experiment's settings (Optuna); --report STUDY_DIR",
        description=DESCRIPTION,
    )
    tune.add_argument(
        "--report",
        metavar="STUDY_DIR",
        help="print a study's summary again (and rewrite its trials.csv, best.yaml and plots)",
    )
    tune.set_defaults(run=run_report)
    chosen = tune.add_subparsers(dest="experiment", metavar="EXPERIMENT")
    for experiment in experiments:
        p = chosen.add_parser(
            experiment.name,
            help=f"tune: {experiment.help}",
            description=DESCRIPTION,
            formatter_class=FORMATTER,
        )
        add_experiment_options(p, experiment, None)
        add_options(p, TrainConfig, experiment.train_defaults, "training, before a trial's draw")
        add_options(p, RunOptions, None, "study folder", only=STUDY_FIELDS)
        add_options(p, TuneOptions, None, "search")
        add_settings_files(p, experiment)
        p.set_defaults(run=partial(run_tune, experiment), resume=False)


def run_tune(experiment: Experiment, args) -> int:
    config, train_config, run = configs_from(experiment, args)
    options = TuneOptions(**values_of(args, TuneOptions))
    if args.report:
        raise ValueError("--report STUDY_DIR stands alone: give it or an EXPERIMENT, not both")
    if args.print_config:
        print_config(experiment.name, {"config": config, "train": train_config})
        return 0
    entries = experiment.search_space
    if options.space is not None:
        changes = read_settings_file(options.space, "--space", "search-space entries")
        entries = tune.merge(entries, changes)
    where = f"--space {options.space}" if options.space else f"{experiment.name}'s search space"
    space = tune.search_space(entries, (config, train_config), where)
    name = run.name or f"tune-{experiment.run_name(config)}"
    with run_place(run) as out_dir:
        train_config = dataclasses.replace(_for_this_run(train_config, run, out_dir), name=name)
        job = tune.TuneJob(
            experiment=experiment,
            config=config,
            train_config=train_config,
            space=space,
            trials=min(options.trials, DRY_RUN_TRIALS) if run.dry_run else options.trials,
            folds=options.folds,
            storage=options.storage,
            sampler=options.sampler,
            sampler_seed=options.sampler_seed,
            pruner=options.pruner,
            heartbeat=options.heartbeat,
            timeout=options.timeout,
            threads=tune.threads_per_worker(run.threads or None, options.workers),
            test=options.test,
        )
        tune.check(job, options.workers)
        study = tune.open_study(job)
        tune.write_study_file(job)
        where = tune.shown_url(job.storage) if job.storage else str(job.study_dir)
        print(f"study {name} ({where}): {job.trials} trials, drawing")
        for key, distribution in space.items():
            print(f"  {key}: {tune.describe(distribution)}")
        tune.run_workers(job, options.workers)
        if job.test:
            tune.final_run(job, study)
        print(tune.summarize(study, job.study_dir, where, plots=run.plots))
    return 0


def run_report(args) -> int:
    if args.report is None:
        raise ValueError("give an EXPERIMENT to tune, or --report STUDY_DIR (see rnnlab tune -h)")
    study_dir = Path(args.report)
    path = study_dir / tune.STUDY_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"--report {study_dir}: not a study folder (it has no {tune.STUDY_FILE}; "
            f"expected a folder that `rnnlab tune` wrote)"
        )
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        name, url = record["study"], record["storage"] or tune.sqlite_url(study_dir)
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a study record ({type(e).__name__}: {e})") from None
    storage = tune.open_storage(url, heartbeat=1)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise ValueError(f"--report {study_dir}: its storage holds no study {name!r}") from None
    print(tune.summarize(study, study_dir, record["storage"] or str(study_dir)))
    return 0
