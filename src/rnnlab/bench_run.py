"""`rnnlab bench --run`: the whole `rnnlab mnist` run against one epoch of the tutorial's plain
script (scripts/tutorial_mnist.py) in the same process, and where an epoch of an experiment's
training goes: data, forward, backward, optimiser, evaluation.

The training step timed here is `rnnlab.train.loop`'s own (`forward_loss`, then `update`, which
calls back between its phases): the experiment's own data, loaders, collate, model, optimiser,
schedule and clipping, with a clock read between the phases. Reading a clock costs nothing next
to a phase, and the loss's `.item()` (which the loop calls too) waits for the forward, so the
phases do not overlap. Nothing here asserts a speed.
"""

from __future__ import annotations

import json
import os
import runpy
import statistics
import tempfile
import time
from pathlib import Path

import torch

from rnnlab.experiments import EXPERIMENTS
from rnnlab.experiments.experiment import DRY_RUN_BATCHES, TEST_BATCH, Experiment, train
from rnnlab.files import TEST_FILE
from rnnlab.train import TrainConfig, evaluate, make_eval_loader, make_loader, seed_everything
from rnnlab.train.loop import (
    cross_entropy,
    forward_loss,
    make_optimizer,
    make_scheduler,
    update,
    with_label_smoothing,
)

PHASES = ("data", "forward", "backward", "optimiser", "evaluation")
EXPERIMENTS_BY_NAME = {e.name: e for e in EXPERIMENTS}
DRY_RUN_VAL = 5  # validation images of a dry run (small data sets have few)


def epoch_breakdown(
    experiment: Experiment, config, train_config: TrainConfig, limit_batches: int = 0
) -> dict[str, float]:
    """Seconds of one training epoch (the first, `limit_batches` batches if > 0) and one
    validation pass of `experiment` with these settings, by phase, plus 'batches'."""
    data = experiment.load_data(config, None)
    seed_everything(train_config.seed)
    model = experiment.build_model(config, data.meta)
    train = make_loader(
        data.train,
        config.batch_size,
        shuffle=True,
        seed=train_config.seed,
        collate_fn=experiment.collate,
    )
    steps = min(len(train), limit_batches) if limit_batches else len(train)
    optimizer = make_optimizer(model, train_config)
    scheduler = make_scheduler(optimizer, train_config, steps * train_config.epochs)
    train_loss = with_label_smoothing(cross_entropy, train_config.label_smoothing)
    train.sampler.set_epoch(1)
    seconds = dict.fromkeys(PHASES, 0.0)
    model.train()
    clock = time.perf_counter()
    for i, (inputs, targets) in enumerate(train):
        if i == steps:
            break
        clock = _lap(seconds, "data", clock)
        _, _, loss = forward_loss(model, inputs, targets, train_loss)
        loss.item()  # as the loop reads it: waits for the forward
        clock = _lap(seconds, "forward", clock)

        def lap(phase: str) -> None:
            nonlocal clock
            clock = _lap(seconds, phase, clock)

        update(model, loss, optimizer, scheduler, train_config.grad_clip, lap)
    if data.val is not None:
        val = make_eval_loader(data.val, TEST_BATCH, collate_fn=experiment.collate)
        evaluate(model, val, limit_batches=limit_batches)
        _lap(seconds, "evaluation", clock)
    return {**seconds, "batches": steps}


def _lap(seconds: dict[str, float], phase: str, since: float) -> float:
    now = time.perf_counter()
    seconds[phase] += now - since
    return now


def print_breakdown(seconds: dict[str, float], log=print) -> None:
    total = sum(seconds[p] for p in PHASES)
    log(f"one epoch of {seconds['batches']} batches, {total:.1f} s:")
    for phase in PHASES:
        log(f"  {phase:<11} {seconds[phase]:>7.2f} s {seconds[phase] / total:>6.1%}")


def tutorial_script() -> Path:
    """The repository's scripts/tutorial_mnist.py, beside src/ in a checkout."""
    path = Path(__file__).resolve().parents[2] / "scripts" / "tutorial_mnist.py"
    if not path.is_file():
        raise FileNotFoundError(
            f"bench --run times the tutorial's script, {path}, which only a checkout of the "
            f"repository has"
        )
    return path


def compare_with_tutorial(seed: int = 0, dry_run: bool = False, log=print) -> dict[str, object]:
    """`rnnlab mnist` with its defaults, whole (every epoch with its validation), against one
    epoch of the tutorial's plain script, in this process, one after the other: a script epoch,
    the rnnlab run, a second script epoch (so that a change of the machine's load shows), then one
    rnnlab epoch by phase. Returns the figures; prints them through `log`."""
    script_run = runpy.run_path(str(tutorial_script()), run_name="tutorial_mnist")["run"]
    batches = DRY_RUN_BATCHES if dry_run else 0
    info = (
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}"
    )
    log(f"{info}, load average {os.getloadavg()[0]:.2f}")
    script_epochs = [script_run(1, seed, batches, log=log)[0]]
    experiment = EXPERIMENTS_BY_NAME["mnist"]
    config = experiment.config(**({"val_size": DRY_RUN_VAL} if dry_run else {}))
    with tempfile.TemporaryDirectory(prefix="rnnlab-bench-run-") as out_dir:
        settings = {**experiment.train_defaults, "seed": seed}
        if dry_run:
            settings.update(epochs=1, limit_batches=batches)
        train_config = TrainConfig(
            **settings, name="mnist", out_dir=out_dir, progress=False, plots=False
        )
        result = train(experiment, config, train_config)
        test_acc = json.loads((result.run_dir / TEST_FILE).read_text())["test_acc"]
    script_epochs += script_run(1, seed, batches, log=log)
    rnnlab_s = sum(record["seconds"] for record in result.history)
    script_s = statistics.mean(e["train_s"] + e["test_s"] for e in script_epochs)
    figures = {
        "rnnlab_training_s": rnnlab_s,
        "rnnlab_epochs": len(result.history),
        "rnnlab_test_acc": test_acc,
        "tutorial_epoch_s": [e["train_s"] + e["test_s"] for e in script_epochs],
        "ratio": rnnlab_s / script_s,
    }
    log(
        f"rnnlab mnist, defaults ({_recipe(config, train_config)}): {len(result.history)} "
        f"epochs with validation in {rnnlab_s:.1f} s, test accuracy {test_acc:.2%}"
    )
    log(
        f"tutorial script, one epoch (training + test): "
        f"{' and '.join(f'{s:.1f} s' for s in figures['tutorial_epoch_s'])}"
    )
    log(
        f"whole rnnlab training / one tutorial script epoch: {figures['ratio']:.2f}x "
        f"(the target: <= 4x)"
    )
    breakdown = epoch_breakdown(experiment, config, train_config, limit_batches=batches)
    print_breakdown(breakdown, log)
    log(f"load average at the end {os.getloadavg()[0]:.2f}")
    return {**figures, "breakdown": breakdown}


def _recipe(config, train_config: TrainConfig) -> str:
    return (
        f"batch {config.batch_size}, {train_config.optimizer} lr {train_config.lr:g}, "
        f"{train_config.schedule}, clip {train_config.grad_clip:g}, init {config.init}"
    )
