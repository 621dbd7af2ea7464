"""The training loop's settings: one dataclass, every option with its default and help,
checked on creation.

What to train and on which data is the caller's business; this is only how to train it. The
fields declared with `option` are the training options of every experiment command; the
others (where the run lives, how it shows) are set by whoever calls `fit`.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import torch

from rnnlab.options import check_choices, check_range, option

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("none", "cosine", "onecycle")
MAX_SEED = 2**32 - 1  # torch's CPU generator (mt19937) keeps 32 bits: 2**32 seeds as 0 does
# Fields that say where a run lives or how it shows, not what it computes: a run moved,
# renamed or resumed with other ones is the same run.
PLACE_AND_PRESENTATION = ("name", "out_dir", "resume", "progress", "plots")
# Options added after runs were saved without them, and the value that does what those runs did:
# a run from before reads as the same run, so it resumes and keeps its folder.
LEGACY_DEFAULTS = {"label_smoothing": 0.0}


@dataclass
class TrainConfig:
    epochs: int = option(10, "passes over the training data")
    optimizer: str = option("adam", "the optimiser", choices=OPTIMIZERS)
    lr: float = option(1e-3, "learning rate (the peak rate under --schedule onecycle)")
    momentum: float = option(0.9, "SGD's momentum; ignored by adam and adamw")
    weight_decay: float = option(0.0, "L2 penalty (decoupled from the gradient under adamw)")
    schedule: str = option(
        "none",
        "learning-rate schedule over the run: none, cosine to 0, onecycle",
        choices=SCHEDULES,
    )
    warmup: int = option(
        0, "updates of linear learning-rate warm-up before --schedule (none or cosine)"
    )
    grad_clip: float = option(0.0, "clip the gradient norm at this value; 0 disables")
    label_smoothing: float = option(
        0.0, "training loss only: this share of each target spread evenly over the classes"
    )
    device: str = option("auto", "'auto' (cuda when available), 'cpu', 'cuda' or 'cuda:N'")
    seed: int = option(0, "seed of every random stream (weights, data order, dropout)")
    name: str = "run"  # the run's folder is out_dir/name
    out_dir: str = "runs"  # parent folder of every run
    resume: bool = False  # continue out_dir/name from its checkpoint (fresh if it has none)
    limit_batches: int = 0  # stop each epoch after this many batches (0 = all); for dry runs
    progress: bool = True  # a tqdm bar per epoch (on stderr)
    plots: bool = True  # write loss, accuracy and confusion-matrix PNGs at the end

    def __post_init__(self) -> None:
        check_choices(self)
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ValueError(
                f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}"
            )
        if not self.name or "/" in self.name or self.name in (".", ".."):
            raise ValueError(f"name must be a plain folder name, got {self.name!r}")
        check_range("epochs", self.epochs, 1)
        check_range("lr", self.lr)
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        check_range("momentum", self.momentum, 0.0)
        check_range("weight_decay", self.weight_decay, 0.0)
        check_range("grad_clip", self.grad_clip, 0.0)
        check_range("label_smoothing", self.label_smoothing, 0.0)
        if not self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be < 1, got {self.label_smoothing}")
        check_range("warmup", self.warmup, 0)
        if self.warmup and self.schedule == "onecycle":
            raise ValueError("--warmup does not combine with --schedule onecycle, which warms up")
        check_range("limit_batches", self.limit_batches, 0)
        check_range("seed", self.seed, 0, MAX_SEED)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def settings(self) -> dict:
        """What defines the training, without where the run lives or how it shows."""
        return {k: v for k, v in self.to_dict().items() if k not in PLACE_AND_PRESENTATION}

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown TrainConfig fields {unknown}; expected some of {sorted(known)}"
            )
        return cls(**values)


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cpu', 'cuda', 'cuda:N' as named."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but torch sees no CUDA device")
    return device
