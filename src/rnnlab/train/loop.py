"""The training loop: fit a classifier, evaluate it, checkpoint the run and resume it exactly.

Nothing in this file knows what the model is or what the data are (after minGPT's trainer.py).
A loader yields (inputs, targets) batches, the model maps inputs to logits, and the default
loss is cross-entropy over the last dimension: logits (B, C) with targets (B,) classify whole
sequences, logits (B, T, C) with targets (B, T) tag every step, and then loss and accuracy are
per element.

Every file write and log line goes through `is_main_process()`, epoch metrics are kept as sums
and counts reduced over processes, and every decision that stops or steers the run (resume or
refuse, a non-finite loss, batches per epoch) is the same on all processes, so data-parallel
training under torchrun needs only a wrapped model and distributed loaders from the caller
(`rnnlab.train.distributed`, which owns every fact about the processes).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils.rnn import PackedSequence
from tqdm import tqdm

from rnnlab.report import plot_confusion, plot_curves, write_summary
from rnnlab.train.checkpoint import load_checkpoint
from rnnlab.train.config import TrainConfig, resolve_device
from rnnlab.train.distributed import (
    all_reduce_sum,
    in_process_group,
    is_main_process,
    min_max_over_processes,
    nonfinite_ranks,
    on_main_then_everywhere,
)
from rnnlab.train.metrics import append_metrics, rewrite_metrics
from rnnlab.train.run_dir import (
    BEST_FILE,
    CHECKPOINT_FILE,
    METRICS_FILE,
    RunRecord,
    run_lock,
    settings_diff,
)
from rnnlab.train.seed import seed_everything
from rnnlab.train.state import RunState, save_best

# Fields of a metrics record that measure the machine, not the model: they differ between
# two otherwise identical runs.
TIMING_KEYS = ("samples_per_s", "tokens_per_s", "seconds")
# A target of this value marks padding: it is neither scored nor counted (torch's default
# ignore_index of cross_entropy).
IGNORE_INDEX = -100
# Devices where torch's optimisers have a fused kernel for every floating-point dtype.
FUSED_DEVICES = ("cpu", "cuda")
# Past this many classes a confusion-matrix picture is unreadable; the loop does not draw it.
CONFUSION_PLOT_MAX_CLASSES = 50
# Past this many classes no confusion matrix is counted at all: it is a classifier's, and a
# language model's vocabulary of 10,000 words would make it 800 MB in every checkpoint.
CONFUSION_MAX_CLASSES = 1000

LossFn = Callable[[Tensor, Tensor], Tensor]
EpochHook = Callable[[int, nn.Module, dict], "dict | None"]
# Told each finished epoch's record (its best.pt and checkpoint already written); what it raises
# stops the run there, as a hyperparameter search stops a trial it prunes.
AfterEpochHook = Callable[[dict], None]
# What picks best.pt: a metric of the validation pass; one ending in "loss" is minimised.
BEST_BY = ("val_acc", "val_loss")
# What an epoch's rate counts: a batch's samples, or every element scored (an lm's tokens).
COUNTED = ("samples", "tokens")


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the run stopped before updating the weights."""


@dataclass
class EvalResult:
    loss: float  # mean loss per scored element
    accuracy: float  # fraction of elements whose arg-max logit is the target
    count: int  # elements scored: samples, or samples x steps for per-step tagging
    confusion: Tensor | None = None  # (C, C) counts, row = true class, column = predicted
    predictions: Tensor | None = None  # (count,) predicted class per element, in loader order


@dataclass
class FitResult:
    run_dir: Path  # the folder holding config, metrics, checkpoints, plots and summary
    history: list[dict]  # the metrics record of every epoch, as in metrics.jsonl
    best_epoch: int  # the epoch whose model is in best.pt
    best_score: float  # its `best_by` metric (on the training pass without a val loader)


def _log(message: str) -> None:
    if is_main_process():
        print(message, flush=True)


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy of logits (N, C) against class indices (N,): the default loss."""
    return F.cross_entropy(logits, targets)


def with_label_smoothing(loss_fn: LossFn, smoothing: float) -> LossFn:
    """loss_fn taken (1 - smoothing) plus smoothing times the mean over classes of -log p_c:
    torch's label smoothing when loss_fn is the cross-entropy, whatever loss_fn is."""

    def smoothed(logits: Tensor, targets: Tensor) -> Tensor:
        uniform = -logits.log_softmax(dim=-1).mean()  # mean over (N, C) of -log p_c
        return (1 - smoothing) * loss_fn(logits, targets) + smoothing * uniform

    return smoothed if smoothing else loss_fn


def _flatten(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Logits (..., C) and targets (...) -> (N, C) and (N,), one row per scored element.
    Targets equal to IGNORE_INDEX (the padding of unequal-length sequences) are not scored."""
    if logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"logits of shape {tuple(logits.shape)} must have the targets' shape "
            f"{tuple(targets.shape)} plus a class dimension"
        )
    logits, targets = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)  # (N, C), (N,)
    scored = targets != IGNORE_INDEX  # (N,)
    if not scored.all():
        logits, targets = logits[scored], targets[scored]  # (n, C), (n,)
    return logits, targets


def forward_loss(
    model: nn.Module, inputs, targets: Tensor, loss_fn: LossFn
) -> tuple[Tensor, Tensor, Tensor]:
    """The forward half of a training step: (logits (N, C), targets (N,), loss), the batch
    moved to the model's device and flattened (`_flatten`)."""
    device = _model_device(model)
    logits = model(_to_device(inputs, device))
    logits, targets = _flatten(logits, _to_device(targets, device))  # (N, C), (N,)
    return logits, targets, loss_fn(logits, targets)


def update(
    model: nn.Module,
    loss: Tensor,
    optimizer: torch.optim.Optimizer,
    scheduler,
    grad_clip: float,
    lap: Callable[[str], None] = lambda phase: None,
) -> float:
    """The backward half of a training step: gradients, clipping at `grad_clip` (0: none),
    the optimiser's and the schedule's steps. `lap(phase)` is called after 'backward' and
    after 'optimiser' (`rnnlab bench --run` times them). Returns the rate the update used."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    lap("backward")
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    lr = optimizer.param_groups[0]["lr"]
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    lap("optimiser")
    return lr


def _to_device(obj, device: torch.device):
    if isinstance(obj, (Tensor, PackedSequence)):  # a PackedSequence is a tuple: moved whole
        return obj.to(device, non_blocking=True)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    return obj


def _unwrap(model: nn.Module) -> nn.Module:
    """The module whose state_dict is saved: without DDP's 'module.' prefix."""
    wrappers = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    return model.module if isinstance(model, wrappers) else model


def _reset_state(model: nn.Module) -> None:
    """Forget what a stateful model carries between batches (a language model's hidden state):
    each pass over a loader starts from the model's initial state, so a resumed run, which
    begins a pass, is exact."""
    reset = getattr(_unwrap(model), "reset_state", None)
    if callable(reset):
        reset()


def _model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _steps(loader, limit_batches: int) -> int:
    n = len(loader)
    return min(n, limit_batches) if limit_batches else n


def evaluate(
    model: nn.Module,
    loader,
    *,
    loss_fn: LossFn = cross_entropy,
    device: torch.device | str | None = None,
    confusion: bool = False,
    predictions: bool = False,
    limit_batches: int = 0,
) -> EvalResult:
    """Loss and accuracy of `model` over `loader`, in eval mode under torch.inference_mode.

    **Arguments:** `loss_fn(logits (N, C), targets (N,))` returns the mean loss; `device`
    defaults to the model's; `confusion` / `predictions` also return the (C, C) confusion
    matrix (None past CONFUSION_MAX_CLASSES classes) / the (N,) predicted classes;
    `limit_batches` > 0 stops after that many batches.

    **Returns:** an EvalResult. Under torch.distributed the sums and the confusion matrix are
    summed over all processes, so with a loader that shards without padding
    (`rnnlab.train.distributed.make_eval_loader`) the result is the whole dataset's; predictions
    stay per process. A DDP-wrapped model is run unwrapped: evaluation needs no gradient sync,
    and the processes' shards may hold different numbers of batches.
    """
    device = _model_device(model) if device is None else torch.device(device)
    was_training = model.training
    model = _unwrap(model)
    model.eval()
    _reset_state(model)
    loss_sum, correct, count = 0.0, 0, 0
    matrix, predicted = None, []
    with torch.inference_mode():  # no autograd bookkeeping at all, not even version counters
        for i, (inputs, targets) in enumerate(loader):
            if limit_batches and i == limit_batches:
                break
            logits = model(_to_device(inputs, device))
            logits, targets = _flatten(logits, _to_device(targets, device))  # (N, C), (N,)
            pred = logits.argmax(dim=-1)  # (N,)
            n = targets.numel()
            loss_sum += loss_fn(logits, targets).item() * n
            correct += (pred == targets).sum().item()
            count += n
            if confusion and logits.shape[-1] <= CONFUSION_MAX_CLASSES:
                c = logits.shape[-1]
                if matrix is None:
                    matrix = torch.zeros(c, c, dtype=torch.int64, device=device)
                matrix += torch.bincount(targets * c + pred, minlength=c * c).view(c, c)  # (C, C)
            if predictions:
                predicted.append(pred.cpu())
    model.train(was_training)
    sums = all_reduce_sum(
        torch.tensor([loss_sum, correct, count], dtype=torch.float64, device=device)
    )
    loss_sum, correct, count = sums.tolist()
    if count == 0:
        raise ValueError("the loader yielded no batches to evaluate")
    if confusion and in_process_group():
        # A process whose shard was empty has no matrix yet; it takes its size from the others
        # so that every process joins the same all-reduce.
        _, c = min_max_over_processes(0 if matrix is None else len(matrix), device)
        if matrix is None and c:  # c == 0: no process counted one (too many classes)
            matrix = torch.zeros(c, c, dtype=torch.int64, device=device)
    if matrix is not None:  # a copy made here is an ordinary tensor the all-reduce may change
        matrix = all_reduce_sum(matrix.clone()).cpu()
    return EvalResult(
        loss=loss_sum / count,
        accuracy=correct / count,
        count=int(count),
        confusion=matrix,
        predictions=torch.cat(predicted) if predictions else None,
    )


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser named by config.optimizer over all of the model's parameters.

    It runs torch's fused kernel where the parameters' device has one and no module makes
    sparse gradients: one pass over each tensor instead of one per operation, the same
    equations rounded in another order. A checkpoint's optimiser state brings its own setting
    back, so a run saved before keeps its kernel when resumed."""
    params = list(model.parameters())
    sparse = any(getattr(module, "sparse", False) for module in model.modules())
    fused = not sparse and all(
        p.device.type in FUSED_DEVICES and p.is_floating_point() for p in params
    )
    options = dict(lr=config.lr, weight_decay=config.weight_decay, fused=fused or None)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, momentum=config.momentum, **options)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, **options)
    return torch.optim.AdamW(params, **options)


def make_scheduler(optimizer, config: TrainConfig, total_steps: int):
    """The per-step learning-rate schedule named by config.schedule (None for 'none'), after
    config.warmup updates whose rate rises linearly to config.lr."""
    schedulers = torch.optim.lr_scheduler
    warmup = min(config.warmup, total_steps)
    main = None
    if config.schedule == "cosine":
        main = schedulers.CosineAnnealingLR(optimizer, T_max=max(total_steps - warmup, 1))
    elif config.schedule == "onecycle":
        main = schedulers.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total_steps)
    if not warmup:
        return main
    # lr (s + 1) / warmup at update s < warmup, then lr and the schedule's course
    warm = schedulers.LinearLR(optimizer, 1 / warmup, 1.0, total_iters=warmup - 1)
    if main is None:
        return warm
    return schedulers.SequentialLR(optimizer, [warm, main], milestones=[warmup])


def loader_generators(*loaders) -> list[torch.Generator]:
    """The torch.Generators the loaders draw shuffling orders and worker seeds from, once each.

    A loader that shuffles without one draws from torch's global RNG, which the checkpoint
    saves as well.
    """
    found: dict[int, torch.Generator] = {}
    for loader in loaders:
        if loader is None:
            continue
        sampler = getattr(loader, "sampler", None)
        batch_sampler = getattr(loader, "batch_sampler", None)
        for owner in (loader, sampler, getattr(batch_sampler, "sampler", None)):
            g = getattr(owner, "generator", None)
            if isinstance(g, torch.Generator):
                found.setdefault(id(g), g)
    return list(found.values())


def _check_extra(extra, record: dict) -> dict:
    if extra is None:
        return {}
    if not isinstance(extra, dict):
        raise TypeError(f"on_epoch_end must return a dict or None, got {type(extra).__name__}")
    for key, value in extra.items():
        if key in record:
            raise ValueError(f"on_epoch_end returned {key!r}, which the loop already records")
        if not (value is None or isinstance(value, (bool, int, float, str))):
            raise TypeError(
                f"on_epoch_end's {key!r} must be an int, float, str, bool or None (it goes into "
                f"metrics.jsonl and the checkpoint), got {type(value).__name__}"
            )
    return extra


def _epoch_line(record: dict, epochs: int, extra: dict, best: bool) -> str:
    parts = [
        f"epoch {record['epoch']:>{len(str(epochs))}}/{epochs}",
        f"train loss {record['train_loss']:.4f} acc {100 * record['train_acc']:.2f}%",
    ]
    if "val_loss" in record:
        parts.append(f"val loss {record['val_loss']:.4f} acc {100 * record['val_acc']:.2f}%")
    rate = next(key for key in TIMING_KEYS if key in record)  # samples_per_s or tokens_per_s
    parts.append(f"{record[rate]:,.0f} {rate.removesuffix('_per_s')}/s")
    parts.append(f"{record['seconds']:.1f}s")
    if best:
        parts.append("best so far")
    parts.extend(f"{k} {_shown(v)}" for k, v in extra.items())
    return " | ".join(parts)


def _shown(value) -> str:
    """A hook's value as the epoch line shows it: strings quoted, floats to 4 decimals."""
    if isinstance(value, str):
        return repr(value)
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def fit(
    model: nn.Module,
    train_loader,
    val_loader=None,
    config: TrainConfig | None = None,
    *,
    loss_fn: LossFn = cross_entropy,
    on_epoch_end: EpochHook | None = None,
    class_names: list[str] | None = None,
    record: RunRecord | None = None,
    best_by: str = "val_acc",
    after_epoch: AfterEpochHook | None = None,
    counted: str = "samples",
) -> FitResult:
    """Train `model` on `train_loader` for config.epochs, writing the run to out_dir/name.

    Each epoch: a tqdm bar over the batches; evaluation on `val_loader` (if any); the optional
    `on_epoch_end(epoch, model, metrics)` hook, called in eval mode without gradients with a
    copy of the epoch's metrics so far, whose returned dict of scalars or strings joins the
    epoch's metrics record and log line; a line appended to metrics.jsonl; best.pt when the
    `best_by` metric (validation accuracy by default, or validation loss; the training pass's
    without a val loader) beats every earlier epoch and weights and metrics are finite; then
    checkpoint.pt, written atomically; then `after_epoch(record)`, if given, with the epoch's
    record (an exception it raises ends the run there, the epoch kept). A model with a
    `reset_state()` method (one that carries state from batch to batch) is reset at the start
    of every pass over a loader. At the end: loss.png, accuracy.png, confusion.png (the best
    epoch on validation) and summary.json. A fresh run writes `record` (the run's settings; by
    default the training settings alone) as config.json. The main process holds the folder's
    lock throughout.

    With config.resume the run continues from checkpoint.pt (model, optimiser, scheduler, every
    RNG stream, the loaders' generators, best-so-far, metrics history) and on CPU ends with the
    same metrics as a run that was never stopped. The caller must rebuild model and loaders the
    same way; the loader's own shuffling generator, if any, is re-seeded and checkpointed here.

    **Arguments:** `loss_fn(logits (N, C), targets (N,))` returns the mean loss (default
    cross-entropy); `class_names` label the confusion matrix; `counted` is what the epoch's
    rate counts: "samples" (a batch's first dimension) or "tokens" (every scored element,
    recorded as tokens_per_s).

    **Returns:** a FitResult. Raises NonFiniteLossError on a NaN or infinite training loss,
    leaving the last checkpoint as it was.
    """
    config = TrainConfig() if config is None else config
    if best_by not in BEST_BY:
        raise ValueError(f"best_by must be one of {', '.join(BEST_BY)}; got {best_by!r}")
    if counted not in COUNTED:
        raise ValueError(f"counted must be one of {', '.join(COUNTED)}; got {counted!r}")
    record = replace(
        record or RunRecord(experiment="", config={}, train={}), train=config.settings()
    )
    run_dir = Path(config.out_dir) / config.name
    with run_lock(run_dir) if is_main_process() else contextlib.nullcontext():
        loop = _Loop(model, train_loader, val_loader, config, loss_fn, run_dir, best_by, counted)
        state = loop.start(record)
        for epoch in range(state.epoch + 1, config.epochs + 1):
            started = time.perf_counter()
            metrics = loop.train_epoch(epoch, state)
            result = loop.validate() if val_loader is not None else None
            if result is not None:
                metrics.update(val_loss=result.loss, val_acc=result.accuracy)
            extra = loop.epoch_extras(on_epoch_end, epoch, metrics)
            metrics["seconds"] = time.perf_counter() - started
            improved = loop.finish_epoch(state, metrics, result)
            _log(_epoch_line(metrics, config.epochs, extra, improved))
            if after_epoch is not None:
                after_epoch(dict(metrics))
        if is_main_process():
            _write_reports(run_dir, config, state, class_names, best_by)
    return FitResult(run_dir, state.history, state.best_epoch, state.best_score)


class _Loop:
    """The objects one run trains with, and the steps of an epoch: fit reads as their order."""

    def __init__(
        self,
        model,
        train_loader,
        val_loader,
        config: TrainConfig,
        loss_fn,
        run_dir,
        best_by,
        counted,
    ):
        self.device = resolve_device(config.device)
        self.model = model.to(self.device)
        self.train_loader, self.val_loader = train_loader, val_loader
        self.config, self.loss_fn, self.run_dir = config, loss_fn, run_dir
        self.counted = counted
        self.train_loss_fn = with_label_smoothing(loss_fn, config.label_smoothing)
        # the metric that picks best.pt: of the training pass when nothing is validated
        self.best_by = best_by if val_loader is not None else best_by.replace("val_", "train_")
        self.optimizer = make_optimizer(model, config)
        self.steps = _steps(train_loader, config.limit_batches)
        fewest, most = min_max_over_processes(self.steps, self.device)
        if fewest != most:
            raise ValueError(
                f"the processes have between {fewest} and {most} training batches per epoch, "
                f"and DDP needs the same number on each: build train_loader with a "
                f"DistributedSampler (rnnlab.train.distributed.make_loader)"
            )
        if self.steps == 0:
            raise ValueError("train_loader yields no batches")
        self.scheduler = make_scheduler(self.optimizer, config, self.steps * config.epochs)
        self.generators = loader_generators(train_loader, val_loader)

    def start(self, record: RunRecord) -> RunState:
        """The state to continue from: the checkpoint's on resume, else a fresh run's."""
        checkpoint_path = self.run_dir / CHECKPOINT_FILE
        cuda = self.device.type == "cuda"

        def read_checkpoint() -> dict | None:
            if not checkpoint_path.exists():
                return None
            if not self.config.resume:
                raise FileExistsError(
                    f"{self.run_dir} already holds this run; resume it (--resume), "
                    f"or give another name (--name) to train it again"
                )
            return load_checkpoint(checkpoint_path)

        checkpoint = on_main_then_everywhere(read_checkpoint)
        if checkpoint is not None:
            changed = settings_diff(
                TrainConfig.from_dict(checkpoint["config"]).settings(), self.config.settings()
            )
            if changed:
                raise ValueError(
                    f"cannot resume {checkpoint_path} with other training settings "
                    f"({'; '.join(changed)}); resume with the run's own settings or start a "
                    f"new run under another name"
                )
            state = RunState.restore(
                checkpoint,
                _unwrap(self.model),
                self.optimizer,
                self.scheduler,
                self.generators,
                cuda=cuda,
            )
            if is_main_process():
                rewrite_metrics(self.run_dir / METRICS_FILE, state.history)
            _log(f"resuming {self.run_dir} after epoch {state.epoch} (step {state.step})")
            return state
        if is_main_process():
            record.write(self.run_dir)
            rewrite_metrics(self.run_dir / METRICS_FILE, [])  # a run killed before its checkpoint
            (self.run_dir / BEST_FILE).unlink(missing_ok=True)
        seed_everything(self.config.seed)
        for g in self.generators:
            g.manual_seed(self.config.seed)
        return RunState()

    def train_epoch(self, epoch: int, state: RunState) -> dict:
        """One pass over the training batches; the epoch's training metrics."""
        config, model, device = self.config, self.model, self.device
        for loader in (self.train_loader, self.val_loader):
            if hasattr(getattr(loader, "sampler", None), "set_epoch"):
                loader.sampler.set_epoch(epoch)  # DistributedSampler reshuffles per epoch
        model.train()
        _reset_state(model)
        started = time.perf_counter()
        loss_sum, correct, count, samples = 0.0, 0, 0, 0
        bar = tqdm(
            self.train_loader,
            total=self.steps,
            desc=f"epoch {epoch}/{config.epochs}",
            unit="batch",
            leave=False,
            dynamic_ncols=True,
            disable=not (config.progress and is_main_process()),
        )
        for i, (inputs, targets) in enumerate(bar):
            if i == self.steps:
                break
            samples += targets.shape[0]  # sequences or images, whatever each one scores
            logits, targets, loss = forward_loss(model, inputs, targets, self.train_loss_fn)
            value = loss.item()
            stopped = nonfinite_ranks(value, device)
            if stopped:
                bar.close()
                raise NonFiniteLossError(
                    _nonfinite_message(
                        value,
                        stopped,
                        epoch,
                        i + 1,
                        self.steps,
                        state.step,
                        self.run_dir / CHECKPOINT_FILE,
                    )
                )
            lr = update(model, loss, self.optimizer, self.scheduler, config.grad_clip)
            state.step += 1
            n = targets.numel()
            loss_sum += value * n
            correct += (logits.argmax(dim=-1) == targets).sum().item()
            count += n
            if i % 10 == 0 or i == self.steps - 1:
                bar.set_postfix(loss=f"{loss_sum / count:.4f}", refresh=False)
        bar.close()
        seconds = time.perf_counter() - started
        sums = torch.tensor([loss_sum, correct, count, samples], dtype=torch.float64, device=device)
        loss_sum, correct, count, samples = all_reduce_sum(sums).tolist()
        return {
            "epoch": epoch,
            "step": state.step,
            "lr": lr,  # of the epoch's last update
            "train_loss": loss_sum / count,
            "train_acc": correct / count,
            f"{self.counted}_per_s": (samples if self.counted == "samples" else count) / seconds,
        }

    def validate(self) -> EvalResult:
        return evaluate(
            self.model,
            self.val_loader,
            loss_fn=self.loss_fn,
            device=self.device,
            confusion=True,
            limit_batches=self.config.limit_batches,
        )

    def epoch_extras(self, on_epoch_end: EpochHook | None, epoch: int, metrics: dict) -> dict:
        """What the caller's hook adds to the epoch's record (a prediction, a sample...)."""
        if on_epoch_end is None:
            return {}
        self.model.eval()
        with torch.no_grad():
            extra = _check_extra(on_epoch_end(epoch, self.model, dict(metrics)), metrics)
        metrics.update(extra)
        return extra

    def finish_epoch(self, state: RunState, metrics: dict, result: EvalResult | None) -> bool:
        """Record the epoch; best.pt if it is the best so far; then the checkpoint. Whether it
        was the best."""
        score = metrics[self.best_by]
        lower_is_better = self.best_by.endswith("loss")
        better = score < state.best_score if lower_is_better else score > state.best_score
        improved = (state.best_epoch == 0 or better) and _finite(metrics, self.model)
        state.epoch = metrics["epoch"]
        state.history.append(metrics)
        if improved:
            state.best_epoch, state.best_score = state.epoch, score
            state.best_confusion = None if result is None else result.confusion
        # Order matters for a kill at any moment: the metrics line and best.pt first, the
        # checkpoint last, so a resume always redoes the epochs the checkpoint lacks.
        if is_main_process():
            model, config = _unwrap(self.model), self.config.to_dict()
            append_metrics(self.run_dir / METRICS_FILE, metrics)
            if improved:
                save_best(self.run_dir / BEST_FILE, model, state.epoch, score, config)
            state.save(
                self.run_dir / CHECKPOINT_FILE,
                model,
                self.optimizer,
                self.scheduler,
                self.generators,
                cuda=self.device.type == "cuda",
                config=config,
            )
        return improved


def _finite(metrics: dict, model: nn.Module) -> bool:
    """True when every number in `metrics` and every weight of `model` is finite: a model
    that is not is never kept as the best."""
    numbers = [v for v in metrics.values() if isinstance(v, float)]
    return all(math.isfinite(v) for v in numbers) and all(
        bool(torch.isfinite(p).all()) for p in model.parameters()
    )


def _nonfinite_message(
    value: float, ranks: list[int], epoch: int, batch: int, steps: int, step: int, checkpoint: Path
) -> str:
    """The one line that says where a run stopped on a NaN or infinite loss and what is kept."""
    kept = (
        f"the last good checkpoint, {checkpoint} (epoch {epoch - 1}), is unchanged"
        if epoch > 1
        else "no checkpoint was written yet"
    )
    what = value if not math.isfinite(value) else "not finite"
    where = f" on rank {', '.join(map(str, ranks))}" if in_process_group() else ""
    return (
        f"training loss is {what}{where} at epoch {epoch}, batch {batch}/{steps} "
        f"(global step {step + 1}); stopped before the update, {kept}"
    )


def _write_reports(
    run_dir: Path, config: TrainConfig, state: RunState, class_names, best_by: str
) -> None:
    """The plots and summary.json of a finished run."""
    if config.plots:
        plot_curves(run_dir)
        confusion = state.best_confusion
        if confusion is not None and len(confusion) <= CONFUSION_PLOT_MAX_CLASSES:
            plot_confusion(
                confusion,
                class_names,
                run_dir / "confusion.png",
                title=f"{config.name}, epoch {state.best_epoch}, validation",
            )
    write_summary(run_dir, best_by)
