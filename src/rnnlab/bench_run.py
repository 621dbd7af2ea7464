"""Where an epoch of an experiment's training goes: data, forward, backward, optimiser,
evaluation. `rnnlab bench --run` prints it beside the whole-run comparison with the seed's
plain script.

The training step here is a timed copy of `rnnlab.train.loop`'s (nanoGPT's bench.py is a short
copy of its step in the same way): the experiment's own data, loaders, model, optimiser,
schedule and clipping, with a clock read between the phases. Reading a clock costs nothing next
to a phase, and the loss's `.item()` (which the loop calls too) waits for the forward, so the
phases do not overlap. Nothing here asserts a speed.
"""

from __future__ import annotations

import time

from torch import nn

from rnnlab.experiments.experiment import TEST_BATCH, Experiment
from rnnlab.train import TrainConfig, evaluate, make_eval_loader, make_loader, seed_everything
from rnnlab.train.loop import cross_entropy, make_optimizer, make_scheduler

PHASES = ("data", "forward", "backward", "optimiser", "evaluation")


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
    train.sampler.set_epoch(1)
    seconds = dict.fromkeys(PHASES, 0.0)
    model.train()
    clock = time.perf_counter()
    for i, (inputs, targets) in enumerate(train):
        if i == steps:
            break
        clock = _lap(seconds, "data", clock)
        loss = cross_entropy(model(inputs), targets)
        loss.item()
        clock = _lap(seconds, "forward", clock)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clock = _lap(seconds, "backward", clock)
        if train_config.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), train_config.grad_clip)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        clock = _lap(seconds, "optimiser", clock)
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
