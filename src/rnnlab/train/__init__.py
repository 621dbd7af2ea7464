"""rnnlab.train: a model- and data-agnostic training loop with exact resume.

`fit` trains any classifier that maps a batch to logits and writes the run folder
(config.json, metrics.jsonl, checkpoint.pt, best.pt, plots, summary.json); `evaluate` scores a
model on a loader. It knows nothing of MNIST, characters or RNNs. `rnnlab.train.distributed`
holds the pieces for data-parallel runs under torchrun (process group, DDP, loaders).
"""

from rnnlab.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rnnlab.train.config import OPTIMIZERS, SCHEDULES, TrainConfig
from rnnlab.train.distributed import (
    DistributedContext,
    ShardSampler,
    broadcast_from_main,
    init_distributed,
    make_eval_loader,
    make_loader,
    wrap_model,
)
from rnnlab.train.loop import (
    BEST_FILE,
    IGNORE_INDEX,
    PRESENTATION_FIELDS,
    TIMING_KEYS,
    EvalResult,
    FitResult,
    NonFiniteLossError,
    cross_entropy,
    evaluate,
    fit,
    is_main_process,
    resolve_device,
)
from rnnlab.train.seed import capture_rng_state, restore_rng_state, seed_everything

__all__ = [
    "BEST_FILE",
    "IGNORE_INDEX",
    "OPTIMIZERS",
    "PRESENTATION_FIELDS",
    "SCHEDULES",
    "TIMING_KEYS",
    "CheckpointError",
    "DistributedContext",
    "EvalResult",
    "FitResult",
    "NonFiniteLossError",
    "ShardSampler",
    "TrainConfig",
    "broadcast_from_main",
    "capture_rng_state",
    "cross_entropy",
    "evaluate",
    "fit",
    "init_distributed",
    "is_main_process",
    "load_checkpoint",
    "make_eval_loader",
    "make_loader",
    "resolve_device",
    "restore_rng_state",
    "save_checkpoint",
    "seed_everything",
    "wrap_model",
]
