"""What an experiment is, declared once, and the four things every experiment can do with it:
train a run, cross-validate, rebuild a saved run, and score a saved run again.

An experiment module (mnist.py, seq2seq.py, ...) ends with one `Experiment(...)`: its name,
its config dataclass (every field an `option` with default and help), its training defaults,
how it loads its data, how it builds its model, and what it does with a saved run (predict,
and any commands of its own). `rnnlab.cli` derives `rnnlab NAME`, `rnnlab cv NAME`,
`rnnlab evaluate RUN_DIR`, `rnnlab predict RUN_DIR` and the experiment's own commands from
that declaration alone. Nothing here parses a command line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from rnnlab.crossval import CVResult, cross_validate
from rnnlab.files import TEST_FILE, atomic_write
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
from rnnlab.train.distributed import on_main_then_everywhere
from rnnlab.train.run_dir import WEIGHTS_FILES, choose_run_dir

TEST_BATCH = 1000  # samples per batch when a saved model is scored: no gradients, so large


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
class Experiment:
    name: str  # the command, `rnnlab NAME`, and the run's default folder name
    help: str  # one line for `rnnlab --help`
    config: type  # the settings dataclass: every field an `option`
    load_data: Callable[[Any, dict | None], Data]  # (config, a saved run's meta or None)
    build_model: Callable[[Any, dict], nn.Module]  # (config, data.meta) -> a fresh model
    train_defaults: dict = field(default_factory=dict)  # TrainConfig options, this recipe's
    default_name: Callable[[Any], str] | None = None  # the run folder's name; None: `name`
    collate: Callable | None = None  # the DataLoader's collate_fn; None: torch's default
    on_epoch_end: Callable[[Any, Data, nn.Module], dict] | None = None  # extra epoch metrics
    predict: RunCommand | None = None  # `rnnlab predict RUN_DIR`
    commands: tuple[RunCommand, ...] = ()  # more commands on a saved run (generate...)
    evaluate_fields: tuple[str, ...] = ()  # config fields `rnnlab evaluate` may change
    where_fields: tuple[str, ...] = ("data_dir",)  # config fields saying where, not what
    cv_defaults: dict = field(default_factory=dict)  # config values cross-validation needs
    # (config, data, best model) -> more test-split scores for test.json (F1, per class...)
    test_metrics: Callable[[Any, Data, nn.Module], dict] | None = None

    def run_name(self, config) -> str:
        return self.default_name(config) if self.default_name else self.name

    def run_commands(self) -> tuple[RunCommand, ...]:
        return ((self.predict,) if self.predict else ()) + self.commands


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
) -> FitResult:
    """Train a run of `experiment` and score its best epoch on the test split (test.json).

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
            lambda: choose_run_dir(train_config.out_dir, train_config.name, record, explicit_name)
        )
        train_config = replace(train_config, name=run_dir.name, out_dir=str(run_dir.parent))
        with run_lock(run_dir) if ctx.is_main else contextlib.nullcontext():
            if ctx.is_main:
                print(f"run folder: {run_dir}")
                if data.description:
                    print(data.description)
            seed_everything(train_config.seed)  # the initial weights follow from the seed too
            model = experiment.build_model(config, data.meta)
            batch = config.batch_size

            def extras(epoch: int, _) -> dict:
                return experiment.on_epoch_end(config, data, model)

            result = fit(
                wrap_model(model, ctx),
                make_loader(
                    data.train,
                    batch,
                    shuffle=True,
                    seed=train_config.seed,
                    ctx=ctx,
                    collate_fn=experiment.collate,
                ),
                None
                if data.val is None
                else make_eval_loader(data.val, batch, ctx=ctx, collate_fn=experiment.collate),
                train_config,
                on_epoch_end=extras if experiment.on_epoch_end else None,
                class_names=data.class_names,
                record=record,
            )
            if data.test is not None:
                more = experiment.test_metrics and partial(experiment.test_metrics, config, data)
                _score_test(experiment, model, data.test, result, train_config, ctx, more)
    return result


def _score_test(experiment, model, test, result: FitResult, train_config, ctx, more) -> None:
    """The best epoch's model on the test split, on every process; rank 0 writes test.json,
    with what `more(model)` adds (the experiment's test_metrics), its numbers printed."""
    if ctx.is_main:
        load_weights(model, result.run_dir)
    broadcast_from_main(model, ctx)
    loader_ = make_eval_loader(test, TEST_BATCH, ctx=ctx, collate_fn=experiment.collate)
    scored = evaluate(model, loader_, limit_batches=train_config.limit_batches)
    if ctx.is_main:
        extra = more(model) if more else {}
        record = {
            "epoch": result.best_epoch,
            "test_loss": scored.loss,
            "test_acc": scored.accuracy,
            "count": scored.count,
            **extra,
        }
        atomic_write(result.run_dir / TEST_FILE, json.dumps(record, indent=2).encode())
        print(
            f"test accuracy {scored.accuracy:.2%} (loss {scored.loss:.4f}) on "
            f"{scored.count} samples, model of epoch {result.best_epoch}"
        )
        for key, value in extra.items():
            shown = {k: round(v, 4) for k, v in value.items()} if isinstance(value, dict) else value
            print(f"{key}: {shown:.4f}" if isinstance(value, float) else f"{key}: {shown}")


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
) -> CVResult | None:
    """k-fold cross-validation of `experiment` over its training split: a fresh model per
    fold, each fold an ordinary run folder that `evaluate` and `predict` accept."""
    if folds < 2:
        raise ValueError(f"--folds must be at least 2, got {folds}")
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    for key, value in experiment.cv_defaults.items():
        if getattr(config, key) != value:
            raise ValueError(
                f"--{key.replace('_', '-')} must be {value} under cv, where the held-out fold "
                f"validates; got {getattr(config, key)}"
            )
    data = experiment.load_data(config, None)
    if folds > len(data.train):
        raise ValueError(
            f"--folds {folds} needs at least {folds} samples to fold, got {len(data.train)}"
        )
    if test and data.test is None:
        raise ValueError(f"--test: the {experiment.name} experiment has no test split")
    labels = data.labels if stratify else None
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
        make_loader=partial(loader, batch_size=config.batch_size, collate=experiment.collate),
        shuffle=shuffle,
        test_dataset=data.test if test else None,
        workers=workers,
        class_names=data.class_names,
        record=record_of(experiment, config, train_config, data),
    )


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
        config = experiment.config(**{**record.config, **overrides})
    except TypeError as e:
        raise ValueError(
            f"{run_dir}/config.json does not describe a {experiment.name} run: {e}"
        ) from None
    try:
        model = experiment.build_model(config, record.meta)
    except (KeyError, TypeError) as e:
        raise ValueError(f"{run_dir}/config.json lacks what rebuilds its model: {e!r}") from None
    load_weights(model, run_dir)
    return SavedRun(run_dir, record, experiment, config, model.eval())


def find_experiment(experiments, name: str, run_dir: Path | str = "") -> Experiment:
    for experiment in experiments:
        if experiment.name == name:
            return experiment
    known = ", ".join(e.name for e in experiments)
    raise ValueError(f"{run_dir}: unknown experiment {name!r}; rnnlab knows {known}")


def evaluate_saved(saved: SavedRun, limit_batches: int = 0) -> tuple[EvalResult, Data]:
    """Score a saved run's best model on its test split (its validation data without one)."""
    experiment = saved.experiment
    data = experiment.load_data(saved.config, saved.record.meta)
    dataset = data.test if data.test is not None else data.val
    if dataset is None:
        raise ValueError(f"{saved.run_dir}: the {experiment.name} data has nothing to score")
    batch = TEST_BATCH if data.test is not None else saved.config.batch_size
    loader_ = loader(dataset, batch_size=batch, shuffle=False, collate=experiment.collate)
    return evaluate(saved.model, loader_, limit_batches=limit_batches), data
