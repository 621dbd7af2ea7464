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
(`rnnlab.train.distributed`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm import tqdm

from rnnlab.files import atomic_write
from rnnlab.report import plot_confusion, plot_curves, write_summary
from rnnlab.train.checkpoint import load_checkpoint, save_checkpoint
from rnnlab.train.config import TrainConfig
from rnnlab.train.metrics import append_metrics, rewrite_metrics
from rnnlab.train.seed import capture_rng_state, restore_rng_state, seed_everything

CHECKPOINT_FILE = "checkpoint.pt"
BEST_FILE = "best.pt"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
# Fields of a metrics record that measure the machine, not the model: they differ between
# two otherwise identical runs.
TIMING_KEYS = ("samples_per_s", "seconds")
# Config fields that change what is shown, not what is computed: a resumed run may differ here.
PRESENTATION_FIELDS = ("resume", "progress", "plots")
# A target of this value marks padding: it is neither scored nor counted (torch's default
# ignore_index of cross_entropy).
IGNORE_INDEX = -100
# Past this many classes a confusion-matrix picture is unreadable; the loop does not draw it.
CONFUSION_PLOT_MAX_CLASSES = 50

LossFn = Callable[[Tensor, Tensor], Tensor]
EpochHook = Callable[[int, nn.Module], "dict | None"]


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
    best_accuracy: float  # its validation accuracy (training accuracy without a val loader)


def is_main_process() -> bool:
    """True unless this is a torch.distributed process of rank > 0: the one that writes."""
    return not _distributed() or dist.get_rank() == 0


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _all_reduce_sum(sums: Tensor) -> Tensor:
    """Sum `sums` over all processes (a no-op in a single process)."""
    if _distributed():
        dist.all_reduce(sums, op=dist.ReduceOp.SUM)
    return sums


def _nonfinite_ranks(value: float, device: torch.device) -> list[int]:
    """The ranks whose loss `value` is NaN or infinite, the same list on every process.

    One small all-reduce per step: without it the other processes would go on into DDP's
    gradient all-reduce and wait for the stopped one until the collective timeout.
    """
    bad = not math.isfinite(value)
    if not _distributed():
        return [0] if bad else []
    flags = torch.zeros(dist.get_world_size(), device=device)  # (world,)
    flags[dist.get_rank()] = float(bad)
    dist.all_reduce(flags, op=dist.ReduceOp.SUM)
    return flags.nonzero().flatten().tolist()


def _min_max_over_processes(value: int, device: torch.device) -> tuple[int, int]:
    """(min, max) of an integer over all processes ((value, value) in a single process)."""
    if not _distributed():
        return value, value
    both = torch.tensor([-value, value], dtype=torch.int64, device=device)
    dist.all_reduce(both, op=dist.ReduceOp.MAX)
    return -int(both[0]), int(both[1])


def _on_main_then_everywhere(read: Callable[[], object]):
    """`read()` on rank 0, its result (or exception) sent to every process and returned/raised.

    Resume decisions are made from rank 0's files, so that processes on machines without a
    shared file system, or a race between readers, cannot take different branches and hang.
    """
    payload = None
    if is_main_process():
        try:
            payload = read()
        except Exception as e:
            if not _distributed():
                raise
            payload = e
    if _distributed():
        box = [payload]
        dist.broadcast_object_list(box, src=0)
        payload = box[0]
    if isinstance(payload, Exception):
        raise payload
    return payload


def _log(message: str) -> None:
    if is_main_process():
        print(message, flush=True)


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cpu', 'cuda', 'cuda:N' as named."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but torch sees no CUDA device")
    return device


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy of logits (N, C) against class indices (N,): the default loss."""
    return F.cross_entropy(logits, targets)


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


def _to_device(obj, device: torch.device):
    if isinstance(obj, Tensor):
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
    """Loss and accuracy of `model` over `loader`, in eval mode without gradients.

    **Arguments:** `loss_fn(logits (N, C), targets (N,))` returns the mean loss; `device`
    defaults to the model's; `confusion` / `predictions` also return the (C, C) confusion
    matrix / the (N,) predicted classes; `limit_batches` > 0 stops after that many batches.

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
    loss_sum, correct, count = 0.0, 0, 0
    matrix, predicted = None, []
    with torch.no_grad():
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
            if confusion:
                c = logits.shape[-1]
                if matrix is None:
                    matrix = torch.zeros(c, c, dtype=torch.int64, device=device)
                matrix += torch.bincount(targets * c + pred, minlength=c * c).view(c, c)  # (C, C)
            if predictions:
                predicted.append(pred.cpu())
    model.train(was_training)
    sums = _all_reduce_sum(
        torch.tensor([loss_sum, correct, count], dtype=torch.float64, device=device)
    )
    loss_sum, correct, count = sums.tolist()
    if count == 0:
        raise ValueError("the loader yielded no batches to evaluate")
    if confusion and _distributed():
        # A process whose shard was empty has no matrix yet; it takes its size from the others
        # so that every process joins the same all-reduce.
        _, c = _min_max_over_processes(0 if matrix is None else len(matrix), device)
        if matrix is None:
            matrix = torch.zeros(c, c, dtype=torch.int64, device=device)
    if matrix is not None:
        matrix = _all_reduce_sum(matrix).cpu()
    return EvalResult(
        loss=loss_sum / count,
        accuracy=correct / count,
        count=int(count),
        confusion=matrix,
        predictions=torch.cat(predicted) if predictions else None,
    )


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser named by config.optimizer over all of the model's parameters."""
    params, lr, wd = model.parameters(), config.lr, config.weight_decay
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum, weight_decay=wd)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    return torch.optim.AdamW(params, lr=lr, weight_decay=wd)


def make_scheduler(optimizer, config: TrainConfig, total_steps: int):
    """The per-step learning-rate schedule named by config.schedule, or None for 'none'."""
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=total_steps
        )
    return None


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


def _check_same_config(saved: dict, config: TrainConfig, path: Path) -> None:
    given = config.to_dict()
    changed = [
        f"{k}: {saved.get(k)!r} -> {given.get(k)!r}"
        for k in sorted(set(saved) | set(given))
        if k not in PRESENTATION_FIELDS and saved.get(k) != given.get(k)
    ]
    if changed:
        raise ValueError(
            f"cannot resume {path} with a different config ({'; '.join(changed)}); "
            f"resume with the run's own settings or start a new run under another name"
        )


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
    parts.append(f"{record['samples_per_s']:,.0f} samples/s")
    parts.append(f"{record['seconds']:.1f}s")
    if best:
        parts.append("best so far")
    parts.extend(f"{k} {v!r}" if isinstance(v, str) else f"{k} {v}" for k, v in extra.items())
    return " | ".join(parts)


def fit(
    model: nn.Module,
    train_loader,
    val_loader=None,
    config: TrainConfig | None = None,
    *,
    loss_fn: LossFn = cross_entropy,
    on_epoch_end: EpochHook | None = None,
    class_names: list[str] | None = None,
) -> FitResult:
    """Train `model` on `train_loader` for config.epochs, writing the run to out_dir/name.

    Each epoch: a tqdm bar over the batches; evaluation on `val_loader` (if any); the optional
    `on_epoch_end(epoch, model)` hook, called in eval mode without gradients, whose returned
    dict of scalars or strings joins the epoch's metrics record and log line; a line appended to
    metrics.jsonl; best.pt when validation accuracy (training accuracy without a val loader)
    beats every earlier epoch; then checkpoint.pt, written atomically. At the end: loss.png,
    accuracy.png, confusion.png (the best epoch on validation) and summary.json.

    With config.resume the run continues from checkpoint.pt (model, optimiser, scheduler, every
    RNG stream, the loaders' generators, best-so-far, metrics history) and on CPU ends with the
    same metrics as a run that was never stopped. The caller must rebuild model and loaders the
    same way; the loader's own shuffling generator, if any, is re-seeded and checkpointed here.

    **Arguments:** `loss_fn(logits (N, C), targets (N,))` returns the mean loss (default
    cross-entropy); `class_names` label the confusion matrix.

    **Returns:** a FitResult. Raises NonFiniteLossError on a NaN or infinite training loss,
    leaving the last checkpoint as it was.
    """
    config = TrainConfig() if config is None else config
    device = resolve_device(config.device)
    cuda = device.type == "cuda"
    main = is_main_process()
    run_dir = Path(config.out_dir) / config.name
    checkpoint_path, best_path = run_dir / CHECKPOINT_FILE, run_dir / BEST_FILE
    metrics_path = run_dir / METRICS_FILE

    model.to(device)
    optimizer = make_optimizer(model, config)
    steps_per_epoch = _steps(train_loader, config.limit_batches)
    fewest, most = _min_max_over_processes(steps_per_epoch, device)
    if fewest != most:
        raise ValueError(
            f"the processes have between {fewest} and {most} training batches per epoch, and "
            f"DDP needs the same number on each: build train_loader with a DistributedSampler "
            f"(rnnlab.train.distributed.make_loader)"
        )
    if steps_per_epoch == 0:
        raise ValueError("train_loader yields no batches")
    scheduler = make_scheduler(optimizer, config, steps_per_epoch * config.epochs)
    generators = loader_generators(train_loader, val_loader)

    def read_checkpoint() -> dict | None:
        if not checkpoint_path.exists():
            return None
        if not config.resume:
            raise FileExistsError(
                f"{run_dir} already holds a run; pass resume=True to continue it, "
                f"or choose another name"
            )
        return load_checkpoint(checkpoint_path)

    state = _on_main_then_everywhere(read_checkpoint)
    if state is not None:
        _check_same_config(state["config"], config, checkpoint_path)
        _unwrap(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        restore_rng_state(state["rng"], generators, cuda=cuda)
        start, step, history = state["epoch"], state["step"], state["history"]
        best_epoch, best_score = state["best_epoch"], state["best_score"]
        best_confusion = state["best_confusion"]
        if main:
            rewrite_metrics(metrics_path, history)
        _log(f"resuming {run_dir} after epoch {start} (step {step})")
    else:
        if main:
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(run_dir / CONFIG_FILE, json.dumps(config.to_dict(), indent=2).encode())
            rewrite_metrics(metrics_path, [])  # a run killed before its first checkpoint
            best_path.unlink(missing_ok=True)
        seed_everything(config.seed)
        for g in generators:
            g.manual_seed(config.seed)
        start, step, history = 0, 0, []
        best_epoch, best_score, best_confusion = 0, -math.inf, None

    for epoch in range(start + 1, config.epochs + 1):
        started = time.perf_counter()
        for loader in (train_loader, val_loader):
            if hasattr(getattr(loader, "sampler", None), "set_epoch"):
                loader.sampler.set_epoch(epoch)  # DistributedSampler reshuffles per epoch

        model.train()
        loss_sum, correct, count, samples = 0.0, 0, 0, 0
        bar = tqdm(
            train_loader,
            total=steps_per_epoch,
            desc=f"epoch {epoch}/{config.epochs}",
            unit="batch",
            leave=False,
            dynamic_ncols=True,
            disable=not (config.progress and main),
        )
        for i, (inputs, targets) in enumerate(bar):
            if i == steps_per_epoch:
                break
            logits = model(_to_device(inputs, device))
            samples += targets.shape[0]  # sequences or images, whatever each one scores
            logits, targets = _flatten(logits, _to_device(targets, device))  # (N, C), (N,)
            loss = loss_fn(logits, targets)
            value = loss.item()
            stopped = _nonfinite_ranks(value, device)
            if stopped:
                bar.close()
                kept = (
                    f"the last good checkpoint, {checkpoint_path} (epoch {epoch - 1}), is unchanged"
                    if epoch > 1
                    else "no checkpoint was written yet"
                )
                what = value if not math.isfinite(value) else "not finite"
                where = f" on rank {', '.join(map(str, stopped))}" if _distributed() else ""
                raise NonFiniteLossError(
                    f"training loss is {what}{where} at epoch {epoch}, batch {i + 1}/"
                    f"{steps_per_epoch} (global step {step + 1}); stopped before the update, {kept}"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            lr = optimizer.param_groups[0]["lr"]  # the rate this update uses
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            step += 1
            n = targets.numel()
            loss_sum += value * n
            correct += (logits.argmax(dim=-1) == targets).sum().item()
            count += n
            if i % 10 == 0 or i == steps_per_epoch - 1:
                bar.set_postfix(loss=f"{loss_sum / count:.4f}", refresh=False)
        bar.close()
        train_seconds = time.perf_counter() - started
        sums = torch.tensor([loss_sum, correct, count, samples], dtype=torch.float64, device=device)
        loss_sum, correct, count, samples = _all_reduce_sum(sums).tolist()

        record = {
            "epoch": epoch,
            "step": step,
            "lr": lr,  # of the epoch's last update
            "train_loss": loss_sum / count,
            "train_acc": correct / count,
        }
        confusion = None
        if val_loader is not None:
            result = evaluate(
                model,
                val_loader,
                loss_fn=loss_fn,
                device=device,
                confusion=True,
                limit_batches=config.limit_batches,
            )
            record.update(val_loss=result.loss, val_acc=result.accuracy)
            confusion = result.confusion
        extra = {}
        if on_epoch_end is not None:
            model.eval()
            with torch.no_grad():
                extra = _check_extra(on_epoch_end(epoch, model), record)
            record.update(extra)
        record["samples_per_s"] = samples / train_seconds
        record["seconds"] = time.perf_counter() - started
        history.append(record)

        score = record["val_acc" if val_loader is not None else "train_acc"]
        improved = score > best_score
        if improved:
            best_epoch, best_score, best_confusion = epoch, score, confusion
        # Order matters for a kill at any moment: the metrics line and best.pt first, the
        # checkpoint last, so a resume always redoes the epochs the checkpoint lacks.
        if main:
            append_metrics(metrics_path, record)
            if improved:
                save_checkpoint(
                    {
                        "epoch": epoch,
                        "score": score,
                        "model": _unwrap(model).state_dict(),
                        "config": config.to_dict(),
                    },
                    best_path,
                )
            save_checkpoint(
                {
                    "epoch": epoch,
                    "step": step,
                    "model": _unwrap(model).state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": None if scheduler is None else scheduler.state_dict(),
                    "rng": capture_rng_state(generators, cuda=cuda),
                    "config": config.to_dict(),
                    "history": history,
                    "best_epoch": best_epoch,
                    "best_score": best_score,
                    "best_confusion": best_confusion,
                },
                checkpoint_path,
            )
        _log(_epoch_line(record, config.epochs, extra, improved))

    if main:
        if config.plots:
            plot_curves(run_dir)
            if best_confusion is not None and len(best_confusion) <= CONFUSION_PLOT_MAX_CLASSES:
                plot_confusion(
                    best_confusion,
                    class_names,
                    run_dir / "confusion.png",
                    title=f"{config.name}, epoch {best_epoch}, validation",
                )
        write_summary(run_dir)
    return FitResult(run_dir, history, best_epoch, best_score)
