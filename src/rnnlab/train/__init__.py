"""rnnlab.train: a model- and data-agnostic training loop with exact resume.

`fit` trains any classifier that maps a batch to logits and writes the run folder
(config.json, metrics.jsonl, checkpoint.pt, best.pt, plots, summary.json); `evaluate` scores a
model on a loader. It knows nothing of MNIST, characters or RNNs. `rnnlab.train.distributed`
holds the pieces for data-parallel runs under torchrun (process group, DDP, loaders) and every
fact about the processes; `rnnlab.train.run_dir` the run folder's files, record and lock.
"""

from rnnlab.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rnnlab.train.config import OPTIMIZERS, SCHEDULES, TrainConfig, resolve_device
from rnnlab.train.distributed import (
    DistributedContext,
    broadcast_from_main,
    init_distributed,
    is_main_process,
    make_eval_loader,
    make_loader,
    wrap_model,
)
from rnnlab.train.loop import (
    IGNORE_INDEX,
    TIMING_KEYS,
    EvalResult,
    FitResult,
    NonFiniteLossError,
    cross_entropy,
    evaluate,
    fit,
)
from rnnlab.train.run_dir import RunFolderBusyError, RunRecord, run_lock, settings_diff
from rnnlab.train.seed import seed_everything

__all__ = [
    "IGNORE_INDEX",
    "OPTIMIZERS",
    "SCHEDULES",
    "TIMING_KEYS",
    "CheckpointError",
    "DistributedContext",
    "EvalResult",
    "FitResult",
    "NonFiniteLossError",
    "RunFolderBusyError",
    "RunRecord",
    "TrainConfig",
    "broadcast_from_main",
    "cross_entropy",
    "evaluate",
    "fit",
    "init_distributed",
    "is_main_process",
    "load_checkpoint",
    "make_eval_loader",
    "make_loader",
    "resolve_device",
    "run_lock",
    "save_checkpoint",
    "seed_everything",
    "settings_diff",
    "wrap_model",
]
