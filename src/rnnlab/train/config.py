"""The training loop's settings: one dataclass, every default commented, checked on creation.

What to train and on which data is the caller's business; this is only how to train it.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("none", "cosine", "onecycle")


@dataclass
class TrainConfig:
    name: str = "run"  # the run's folder is out_dir/name
    out_dir: str = "runs"  # parent folder of every run
    epochs: int = 10  # passes over the training data
    optimizer: str = "adam"  # 'sgd', 'adam' or 'adamw'
    lr: float = 1e-3  # learning rate; the peak rate under schedule='onecycle'
    momentum: float = 0.9  # SGD's momentum; ignored by adam and adamw
    weight_decay: float = 0.0  # L2 penalty (decoupled from the gradient under 'adamw')
    schedule: str = "none"  # 'none', 'cosine' (lr down to 0 over the run) or 'onecycle'
    grad_clip: float = 0.0  # clip the gradient norm at this value, or disable if == 0.0
    device: str = "auto"  # 'auto' (cuda when available), 'cpu', 'cuda' or 'cuda:N'
    seed: int = 0  # seeds python, numpy, torch and the loaders' generators on a fresh run
    resume: bool = False  # continue out_dir/name from its checkpoint (fresh if it has none)
    limit_batches: int = 0  # stop each epoch after this many batches (0 = all); for dry runs
    progress: bool = True  # a tqdm bar per epoch (on stderr)
    plots: bool = True  # write loss, accuracy and confusion-matrix PNGs at the end

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ValueError(
                f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}"
            )
        if not self.name or "/" in self.name or self.name in (".", ".."):
            raise ValueError(f"name must be a plain folder name, got {self.name!r}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        for field in ("momentum", "weight_decay", "grad_clip", "limit_batches"):
            if getattr(self, field) < 0:
                raise ValueError(f"{field} must be >= 0, got {getattr(self, field)}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown TrainConfig fields {unknown}; expected some of {sorted(known)}"
            )
        return cls(**values)
