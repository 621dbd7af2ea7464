"""Where a run stands after an epoch, and the checkpoint that holds it: written and read here
only, so the checkpoint's keys exist in one place.

A checkpoint is the RunState's fields plus what it restores into live objects: the model's and
optimiser's state, the scheduler's, every random stream (with the loaders' generators) and the
training settings, which a resume must share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path

from torch import Tensor, nn

from rnnlab.train.checkpoint import save_checkpoint
from rnnlab.train.seed import capture_rng_state, restore_rng_state


@dataclass
class RunState:
    epoch: int = 0  # the last finished epoch
    step: int = 0  # optimiser updates so far
    history: list[dict] = field(default_factory=list)  # metrics record of each finished epoch
    best_epoch: int = 0  # the epoch whose weights are in best.pt (0: none yet)
    best_score: float = -math.inf  # its `best_by` metric (see fit); none while best_epoch is 0
    best_confusion: Tensor | None = None  # (C, C) its validation confusion matrix

    def save(
        self,
        path: Path,
        model: nn.Module,
        optimizer,
        scheduler,
        generators,
        *,
        cuda: bool,
        config: dict,
    ) -> None:
        """Atomically write the checkpoint of this state and the live objects to `path`."""
        save_checkpoint(
            {
                **{f.name: getattr(self, f.name) for f in fields(self)},
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": None if scheduler is None else scheduler.state_dict(),
                "rng": capture_rng_state(generators, cuda=cuda),
                "config": config,
            },
            path,
        )

    @classmethod
    def restore(
        cls, checkpoint: dict, model: nn.Module, optimizer, scheduler, generators, *, cuda: bool
    ) -> RunState:
        """Load a checkpoint (as `load_checkpoint` returns it) into the live objects; the state."""
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(checkpoint["scheduler"])
        restore_rng_state(checkpoint["rng"], generators, cuda=cuda)
        return cls(**{f.name: checkpoint[f.name] for f in fields(cls)})


def save_best(path: Path, model: nn.Module, epoch: int, score: float, config: dict) -> None:
    """Write best.pt: the weights of the best epoch so far."""
    save_checkpoint(
        {"epoch": epoch, "score": score, "model": model.state_dict(), "config": config}, path
    )


__all__ = ["RunState", "save_best"]
