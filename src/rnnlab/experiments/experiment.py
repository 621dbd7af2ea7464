"""What an experiment is, declared once, and the four things every experiment can do with it:
train a run, cross-validate, rebuild a saved run, and score a saved run again.

An experiment module (mnist.py, seq2seq.py, ...) ends with one `Experiment(...)`: its name,
its config dataclass (every field an `option` with default and help), its training defaults,
how it loads its data, how it builds its model, and what it does with a saved run (predict,
explain, and any commands of its own). `rnnlab.cli` derives `rnnlab NAME`, `rnnlab cv NAME`,
`rnnlab evaluate RUN_DIR`, `rnnlab predict RUN_DIR`, `rnnlab explain RUN_DIR` and the
experiment's own commands from that declaration alone. Nothing here parses a command line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from rnnlab.crossval import CVResult, cross_validate
from rnnlab.files import BASELINES_FILE, CONFIG_FILE, EXPLAIN_FILE, TEST_FILE, atomic_write
from rnnlab.report import render_explain_page
from rnnlab.train import (
    EvalResult,
    FitResult,
    RunRecord,
    TrainConfig,
    broadcast_from_main,
    evaluate,
    fit,
    init_distributed,
    load_checkpoint,
    make_eval_loader,
    make_loader,
    run_lock,
    seed_everything,
    wrap_model,
)
from rnnlab.train.distributed import DistributedContext, on_main_then_everywhere
from rnnlab.train.run_dir import BEST_FILE, WEIGHTS_FILES, choose_run_dir, settings_diff

TEST_BATCH = 1000  # samples per batch when a model is scored (validation, test): no gradients
DRY_RUN_BATCHES = 2  # batches per epoch (and per evaluation) under --dry-run


@dataclass(frozen=True)
class Data:
    """An experiment's data, as `load_data` returns it."""

    train: Dataset  # (inputs, target) samples to train on
    val: Dataset | None  # to pick the best epoch; None: the training accuracy picks it
    test: Dataset | None  # scored once with the best model at the end; None: no test split
    identity: dict = field(default_factory=dict)  # {"source": ..., "sha256": {file: digest}}
    meta: dict = field(default_factory=dict)  # JSON the model needs beside its weights
    description: str = ""  # one line printed before training: sizes and source
    labels: np.ndarray | None = None  # (len(train),) class of each sample: stratified cv folds
    class_names: list[str] | None = None  # the confusion matrix's labels


@dataclass(frozen=True)
class SavedRun:
    """A finished (or interrupted) run rebuilt from its folder: record, config, best model."""

    run_dir: Path
    record: RunRecord
    experiment: Experiment
    config: Any  # the experiment's config dataclass
    model: nn.Module  # in eval mode, with the best weights (best.pt, else checkpoint.pt)


@dataclass(frozen=True)
class RunCommand:
    """A command on a saved run: `rnnlab NAME RUN_DIR [options]` (predict, generate...)."""

    name: str  # the command, e.g. 'predict'
    help: str  # one line for `rnnlab --help`
    options: type  # a dataclass of `option` fields: the command's flags
    run: Callable[[SavedRun, Any], None]  # (the saved run, the options) -> prints its result


@dataclass(frozen=True)
class Explain:
    """`rnnlab explain RUN_DIR`: one HTML page showing the saved model at work on a few
    examples. `compute` does the experiment's part, the tensors; the page is drawn by
    `rnnlab.report.explain_html` from the JSON it returns."""

    help: str  # one line for `rnnlab --help`
    options: type  # a dataclass of `option` fields: the command's flags
    # (the saved run, the options) -> the page's data: {"kind": the experiment's view, ...}
    compute: Callable[[SavedRun, Any], dict]


# (config, dataset, training?, the processes or None for one) -> the batches of `dataset`
LoaderHook = Callable[[Any, Dataset, bool, DistributedContext | None], Iterable]
# (config, data) -> {method: {"val_acc": ..., "test_acc": ...}}: what a non-RNN method scores
BaselinesHook = Callable[[Any, Data], dict[str, dict[str, float]]]
# (config, data, model, the epoch's metrics so far, the run folder (None off the main
# process)) -> more metrics for the epoch's record and line
EpochEndHook = Callable[[Any, Data, nn.Module, dict, Path | None], dict]
# (config, data, model, its EvalResult on the test split, with predictions) -> more metrics
TestMetricsHook = Callable[[Any, Data, nn.Module, EvalResult], dict]


@dataclass(frozen=True)
class Experiment:
    name: str  # the command, `rnnlab NAME`, and the run's default folder name
    help: str  # one line for `rnnlab --help`
    config: type  # the settings dataclass: every field an `option`
    load_data: Callable[[Any, dict | None], Data]  # (config, a saved run's meta or None)
    build_model: Callable[[Any, dict], nn.Module]  # (config, data.meta) -> a fresh model
    train_defaults: dict = field(default_factory=dict)  # TrainConfig options, this recipe's
    default_name: Callable[[Any], str] | None = None  # the run folder's name; None: `name`
    collate: Callable | None = None  # the DataLoader's collate_fn; None: torch's default
    loader: LoaderHook | None = None  # how batches are made; None: shuffled `batch_size` ones
    baselines: BaselinesHook | None = None  # printed before training, kept in baselines.json
    best_by: str = "val_acc"  # the validation metric that picks best.pt (see `fit`)
    counted: str = "samples"  # what the lines count and rate: "tokens" when each is scored
    accuracy_name: str = "accuracy"  # what the test line calls the arg-max hitting its target
    on_epoch_end: EpochEndHook | None = None  # extra epoch metrics (a prediction, a sample)
    test_metrics: TestMetricsHook | None = None  # extra test-split metrics, into test.json
    contiguous_folds: bool = False  # cv folds are runs of the data in order, never shuffled
    predict: RunCommand | None = None  # `rnnlab predict RUN_DIR`
    explain: Explain | None = None  # `rnnlab explain RUN_DIR`: a page of the model at work
    commands: tuple[RunCommand, ...] = ()  # more commands on a saved run (generate...)
    evaluate_fields: tuple[str, ...] = ()  # config fields `rnnlab evaluate` may change
    where_fields: tuple[str, ...] = ("data_dir",)  # config fields saying where, not what
    cv_defaults: dict = field(default_factory=dict)  # config values cross-validation needs
    # what an option meant before it existed: read for a saved run whose config.json lacks it
    legacy_defaults: dict = field(default_factory=dict)
    # what `rnnlab tune` may vary, by option name (this config's or TrainConfig's): a list of
    # choices, or {"low": ..., "high": ..., "log": bool, "step": ...} for a number
    search_space: dict = field(default_factory=dict)

    def run_name(self, config) -> str:
        """The run folder's default name: `default_name`'s or `name`, and `-gru`, `-lstm` for
        a cell other than the config's default."""
        name = self.default_name(config) if self.default_name else self.name
        cells = {f.name: f.default for f in dataclasses.fields(config)}
        cell = getattr(config, "cell", None)
        return name if cell == cells.get("cell") else f"{name}-{cell}"

    def run_commands(self) -> tuple[RunCommand, ...]:
        explain = self.explain
        if explain is not None:
            page = partial(write_explain_page, explain.compute)
            explain = RunCommand("explain", explain.help, explain.options, page)
        return tuple(c for c in (self.predict, explain) if c is not None) + self.commands


def write_explain_page(compute: Callable[[SavedRun, Any], dict], saved: SavedRun, options) -> Path:
    """The run's explain.html: `compute`'s data, the run's settings and test scores drawn by
    `render_explain_page` into one file that needs nothing else; its path is printed."""
    with torch.no_grad():
        page = compute(saved, options)
    try:
        test = json.loads((saved.run_dir / TEST_FILE).read_text())
    except (FileNotFoundError, ValueError):  # a run stopped before its test: none to show
        test = {}
    page["run"] = {
        "folder": saved.run_dir.name,
        "experiment": saved.experiment.name,
        "config": dataclasses.asdict(saved.config),
        "test": {k: v for k, v in test.items() if isinstance(v, (int, float))},
    }
    path = saved.run_dir / EXPLAIN_FILE
    atomic_write(path, render_explain_page(page).encode())
    print(path)
    return path


def printable(text: str) -> str:
    """`text` with its control characters (an ANSI escape's ESC, a carriage return...) written
    as escapes, `\\x1b`: what a command echoes of a user's input shows, never steers, the
    terminal."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def some_wrong(correct: list[bool], count: int) -> list[int]:
    """The indices of `count` examples, in order: about a third the first ones the model got
    wrong (fewer if it got fewer wrong), the rest the first ones it got right."""
    right = [i for i, ok in enumerate(correct) if ok]
    wrong = [i for i, ok in enumerate(correct) if not ok]
    wrong = wrong[: max(count // 3, count - len(right))]
    return sorted(wrong + right[: count - len(wrong)])


def loader(
    dataset: Dataset, *, batch_size: int, shuffle: bool, collate: Callable | None = None
) -> DataLoader:
    """Batches in one process (cross-validation folds, a saved run's scoring), shuffled by a
    generator that fit() seeds."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        collate_fn=collate,
        generator=torch.Generator(),
    )


def batches(
    experiment: Experiment,
    config,
    dataset: Dataset,
    *,
    train: bool,
    ctx: DistributedContext | None = None,
    batch_size: int | None = None,
    seed: int = 0,
) -> Iterable:
    """The batches of `dataset` this experiment trains (`train`) or scores on: its `loader`
    hook's, else `batch_size` (default config.batch_size) samples each, shuffled for training
    and in order otherwise; under `ctx` each process takes its share (see
    `rnnlab.train.distributed`), without one everything runs here."""
    if experiment.loader is not None:
        return experiment.loader(config, dataset, train, ctx)
    size = batch_size or config.batch_size
    if ctx is None:
        return loader(dataset, batch_size=size, shuffle=train, collate=experiment.collate)
    if train:
        return make_loader(
            dataset, size, shuffle=True, seed=seed, ctx=ctx, collate_fn=experiment.collate
        )
    return make_eval_loader(dataset, size, ctx=ctx, collate_fn=experiment.collate)


def score_baselines(experiment: Experiment, config, data: Data, run_dir: Path) -> None:
    """Print what the experiment's non-RNN methods score on this split, kept in the run
    folder's baselines.json (which a resumed run reads instead of scoring them again)."""
    path = run_dir / BASELINES_FILE
    try:
        scores = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):  # none yet, or cut short: scored afresh
        scores = experiment.baselines(config, data)
        atomic_write(path, (json.dumps(scores, indent=2) + "\n").encode())
    for method, metrics in scores.items():
        print(f"baseline {method}: {format_metrics(metrics)}")


def format_metrics(metrics: dict) -> str:
    """`{"val_acc": 0.9, "test_loss": 1.2}` as 'val acc 90.00% · test loss 1.2000'."""

    def shown(key: str, value) -> str:
        if isinstance(value, float) and key.endswith("acc"):
            return f"{100 * value:.2f}%"
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    return " · ".join(f"{key.replace('_', ' ')} {shown(key, v)}" for key, v in metrics.items())


def record_of(experiment: Experiment, config, train_config: TrainConfig, data: Data) -> RunRecord:
    return RunRecord(
        experiment=experiment.name,
        config=dataclasses.asdict(config),
        train=train_config.settings(),
        data=data.identity,
        meta=data.meta,
        where_fields=experiment.where_fields,
    )


def train(
    experiment: Experiment,
    config,
    train_config: TrainConfig,
    *,
    explicit_name: bool = False,
    threads: int | None = None,
    scored: bool = True,
    after_epoch: Callable[[dict], None] | None = None,
) -> FitResult:
    """Train a run of `experiment` and score its best epoch on the test split (test.json).

    `scored=False` makes a run that sees the validation split alone, as a trial of a
    hyperparameter search must: no baselines, no test split. `after_epoch` is `fit`'s.
    The run folder is out_dir/name when it is free or holds this very run; for a default name
    otherwise the first free name-2, name-3, ...; an explicit name holding another run is
    refused. Under torchrun every process trains its share of each global batch (DDP); only
    rank 0 chooses the folder, holds its lock, prints and writes.
    """
    with init_distributed(train_config.device, threads=threads) as ctx:
        data = experiment.load_data(config, None) if ctx.local_rank == 0 else None
        ctx.barrier()  # local rank 0 fetched and cached the data; the others read the cache
        data = data or experiment.load_data(config, None)
        record = record_of(experiment, config, train_config, data)
        run_dir = on_main_then_everywhere(
            lambda: choose_run_dir(
                train_config.out_dir,
                train_config.name,
                record,
                explicit_name,
                legacy_defaults=experiment.legacy_defaults,
            )
        )
        train_config = replace(train_config, name=run_dir.name, out_dir=str(run_dir.parent))
        with run_lock(run_dir) if ctx.is_main else contextlib.nullcontext():
            if ctx.is_main:
                print(f"run folder: {run_dir}")
                if data.description:
                    print(data.description)
                if not (run_dir / CONFIG_FILE).is_file():  # claimed before the baselines
                    (run_dir / BASELINES_FILE).unlink(missing_ok=True)  # a dead start's
                    record.write(run_dir)
                if experiment.baselines is not None and scored:
                    if train_config.limit_batches:
                        print("baselines: not scored in a run limited to a few batches")
                    else:
                        score_baselines(experiment, config, data, run_dir)
            seed_everything(train_config.seed)  # the initial weights follow from the seed too
            model = experiment.build_model(config, data.meta)

            def extras(epoch: int, _, metrics: dict) -> dict:
                where = run_dir if ctx.is_main else None
                return experiment.on_epoch_end(config, data, model, metrics, where)

            result = fit(
                wrap_model(model, ctx),
                batches(
                    experiment, config, data.train, train=True, ctx=ctx, seed=train_config.seed
                ),
                None
                if data.val is None
                else batches(
                    experiment, config, data.val, train=False, ctx=ctx, batch_size=TEST_BATCH
                ),
                train_config,
                on_epoch_end=extras if experiment.on_epoch_end else None,
                class_names=data.class_names,
                record=record,
                best_by=experiment.best_by,
                after_epoch=after_epoch,
                counted=experiment.counted,
            )
            if data.test is not None and scored:
                _score_test(experiment, config, data, model, result, train_config, ctx)
    return result


def _score_test(experiment, config, data, model, result: FitResult, train_config, ctx) -> None:
    """The best epoch's model on the test split, on every process; rank 0 writes test.json."""
    if ctx.is_main:
        load_weights(model, result.run_dir)
    broadcast_from_main(model, ctx)
    loader_ = batches(experiment, config, data.test, train=False, ctx=ctx, batch_size=TEST_BATCH)
    scored = evaluate(
        model, loader_, limit_batches=train_config.limit_batches, predictions=True, confusion=True
    )
    extra = _test_metrics(experiment, config, data, model, scored)
    if ctx.is_main:
        record = {
            "epoch": result.best_epoch,
            "test_loss": scored.loss,
            "test_acc": scored.accuracy,
            "count": scored.count,
            **extra,
        }
        atomic_write(result.run_dir / TEST_FILE, json.dumps(record, indent=2).encode())
        print(
            f"test {experiment.accuracy_name} {scored.accuracy:.2%} (loss {scored.loss:.4f}) "
            f"on {scored.count:,} {experiment.counted}, model of epoch {result.best_epoch}"
        )
        if extra:
            print(format_metrics(extra))


def _test_metrics(experiment, config, data: Data, model, scored: EvalResult) -> dict:
    if experiment.test_metrics is None:
        return {}
    model.eval()
    with torch.no_grad():
        return experiment.test_metrics(config, data, model, scored)


def cross_validate_experiment(
    experiment: Experiment,
    config,
    train_config: TrainConfig,
    *,
    folds: int,
    workers: int = 1,
    shuffle: bool = True,
    stratify: bool = True,
    test: bool = False,
    after_epoch: Callable[[int, dict], None] | None = None,
) -> CVResult | None:
    """k-fold cross-validation of `experiment` over its training split: a fresh model per
    fold, each fold an ordinary run folder that `evaluate` and `predict` accept.
    `after_epoch(fold, record)` is told each fold's epochs (see `cross_validate`)."""
    check_cv_settings(experiment, config, folds)
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    data = experiment.load_data(config, None)
    if folds > len(data.train):
        raise ValueError(
            f"--folds {folds} needs at least {folds} samples to fold, got {len(data.train)}"
        )
    if test and data.test is None:
        raise ValueError(f"--test: the {experiment.name} experiment has no test split")
    if experiment.contiguous_folds:
        shuffle, stratify = False, False  # a fold is a stretch of the data, as it comes
    labels = data.labels if stratify else None
    if labels is not None:  # scikit-learn's StratifiedKFold needs this, in words of its own
        most = int(np.unique(labels, return_counts=True)[1].max())
        if folds > most:
            raise ValueError(
                f"--folds {folds}: stratified folds share out each class, and the largest "
                f"has {most} training samples; use at most {most} folds, or --no-stratify"
            )
    print(
        f"{len(data.train)} training samples in {folds} "
        f"{'stratified ' if labels is not None else ''}folds"
        + (f", {len(data.test)} test samples" if test else "")
        + (f"; {data.description}" if data.description else "")
    )
    return cross_validate(
        partial(experiment.build_model, config, data.meta),
        data.train,
        labels,
        folds=folds,
        config=train_config,
        make_loader=partial(_fold_loader, experiment, config),
        shuffle=shuffle,
        test_dataset=data.test if test else None,
        workers=workers,
        class_names=data.class_names,
        record=record_of(experiment, config, train_config, data),
        best_by=experiment.best_by,
        legacy_defaults=experiment.legacy_defaults,
        after_epoch=after_epoch,
    )


def check_cv_settings(experiment: Experiment, config, folds: int) -> None:
    """Refuse what k-fold cross-validation of `experiment` cannot run: fewer than 2 folds, or
    a setting other than its `cv_defaults` (the held-out fold validates, not a split of its own)."""
    if folds < 2:
        raise ValueError(f"--folds must be at least 2, got {folds}")
    for key, value in experiment.cv_defaults.items():
        if getattr(config, key) != value:
            raise ValueError(
                f"--{key.replace('_', '-')} must be {value} under cv, where the held-out fold "
                f"validates; got {getattr(config, key)}"
            )


def _fold_loader(experiment: Experiment, config, dataset: Dataset, *, shuffle: bool) -> Iterable:
    """A cross-validation fold's batches (a module-level function: fold workers pickle it)."""
    return batches(experiment, config, dataset, train=shuffle)


def load_weights(model: nn.Module, run_dir: str | Path) -> Path:
    """Load the run's best weights (best.pt, else checkpoint.pt) into `model`; return the file."""
    for name in WEIGHTS_FILES:
        path = Path(run_dir) / name
        if path.is_file():
            state = load_checkpoint(path)["model"]
            try:
                model.load_state_dict(state)
            except RuntimeError as e:
                first = str(e).strip().splitlines()[-1].strip()
                raise ValueError(
                    f"{path} does not fit the model its run's config.json describes (was the "
                    f"config edited by hand?): {first}"
                ) from None
            return path
    raise FileNotFoundError(
        f"{run_dir} holds no weights: expected one of {', '.join(WEIGHTS_FILES)}"
    )


def restore(run_dir: str | Path, experiments: tuple[Experiment, ...], **overrides) -> SavedRun:
    """A saved run rebuilt from its folder, wherever it was moved: its experiment, config (with
    `overrides` of the fields the caller may change) and best model."""
    run_dir = Path(run_dir)
    record = RunRecord.read(run_dir)
    experiment = find_experiment(experiments, record.experiment, run_dir)
    try:
        config = experiment.config(**{**experiment.legacy_defaults, **record.config, **overrides})
    except TypeError as e:
        raise ValueError(
            f"{run_dir}/config.json does not describe a {experiment.name} run: {e}"
        ) from None
    try:
        model = experiment.build_model(config, record.meta)
    except (KeyError, TypeError) as e:
        raise ValueError(f"{run_dir}/config.json lacks what rebuilds its model: {e!r}") from None
    loaded = load_weights(model, run_dir)
    if loaded.name != BEST_FILE:
        print(
            f"rnnlab: note: {run_dir} has no {BEST_FILE}; using {loaded.name}, the weights of "
            "its last finished epoch",
            file=sys.stderr,
        )
    return SavedRun(run_dir, record, experiment, config, model.eval())


def find_experiment(experiments, name: str, run_dir: Path | str = "") -> Experiment:
    for experiment in experiments:
        if experiment.name == name:
            return experiment
    known = ", ".join(e.name for e in experiments)
    raise ValueError(f"{run_dir}: unknown experiment {name!r}; rnnlab knows {known}")


def check_same_data(saved: SavedRun, sha256) -> None:
    """Refuse data whose sha256 (`Data.identity`'s) differs from what the saved run recorded:
    a file changed in place, or another of the same name, would be scored or shown as if it
    were the run's. A record without digests (an old one) is taken on trust."""
    recorded = saved.record.data.get("sha256")
    changed = settings_diff(recorded, sha256) if recorded else []
    if changed:
        fields = saved.experiment.evaluate_fields
        flags = ", ".join("--" + name.replace("_", "-") for name in fields)
        raise ValueError(
            f"{saved.run_dir}: its data changed since the run was trained ({'; '.join(changed)}), "
            "so the result would be another data's; restore the run's data"
            + (f", or name the data to score with `rnnlab evaluate` {flags}" if flags else "")
        )


def evaluate_saved(
    saved: SavedRun, limit_batches: int = 0, same_data: bool = True
) -> tuple[EvalResult, Data, dict]:
    """Score a saved run's best model on its test split (its validation data without one):
    the result, the data, and the experiment's own test metrics. `same_data`: refuse data
    whose sha256 differs from the run's record (a file changed in place), as resume does."""
    experiment, config = saved.experiment, saved.config
    data = experiment.load_data(config, saved.record.meta)
    if same_data:
        check_same_data(saved, data.identity.get("sha256"))
    dataset = data.test if data.test is not None else data.val
    if dataset is None:
        raise ValueError(f"{saved.run_dir}: the {experiment.name} data has nothing to score")
    batch = TEST_BATCH if data.test is not None else config.batch_size
    loader_ = batches(experiment, config, dataset, train=False, batch_size=batch)
    scored = evaluate(
        saved.model, loader_, limit_batches=limit_batches, predictions=True, confusion=True
    )
    return scored, data, _test_metrics(experiment, config, data, saved.model, scored)
