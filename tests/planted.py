"""A fake experiment whose validation loss is planted: a known function of two options, least
at x = 0.3 and kind 'b'. Training changes nothing (the model's one weight is multiplied by
zero), so a study scores each trial by the planted function alone, in a fraction of a second.
`pause` makes every batch take that long, so that a test can kill a trial in its middle.

Module-level, so that worker processes (spawned) can import it; `ALL` is rnnlab's experiments
with this one added, for `main(..., experiments=ALL)`.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import TensorDataset

from rnnlab.cli import main
from rnnlab.experiments import EXPERIMENTS, Data, Experiment
from rnnlab.options import check_range, option

OPTIMUM = 0.3  # the best x
KINDS = {"a": 0.5, "b": 0.0, "c": 1.0}  # what each kind adds to the penalty: 'b' is best


@dataclass
class PlantedConfig:
    x: float = option(0.0, "the planted objective's variable; best at 0.3")
    kind: str = option("a", "a categorical option; best 'b'", choices=tuple(KINDS))
    pause: float = option(0.0, "seconds every batch sleeps")
    batch_size: int = option(4, "samples per batch")

    def __post_init__(self) -> None:
        check_range("x", self.x, -10.0, 10.0)
        check_range("pause", self.pause, 0.0)


def penalty(x: float, kind: str) -> float:
    return 10 * (x - OPTIMUM) ** 2 + KINDS[kind]


def planted_loss(x: float, kind: str) -> float:
    """The validation loss a run with these settings gets: log(1 + e^(penalty - 1))."""
    return math.log1p(math.exp(penalty(x, kind) - 1))


def load_data(config: PlantedConfig, meta: dict | None = None) -> Data:
    inputs, targets = torch.zeros(8, 1), torch.zeros(8, dtype=torch.int64)  # (8, 1), (8,)
    split = TensorDataset(inputs, targets)
    return Data(train=split, val=split, test=split)


class Planted(nn.Module):
    """Logits (B, 2) = (0, penalty - 1) whatever the input: cross-entropy against class 0 is
    the planted loss."""

    def __init__(self, config: PlantedConfig) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))  # the optimiser needs one; it has no effect
        self.penalty = penalty(config.x, config.kind)
        self.pause = config.pause

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.pause:
            time.sleep(self.pause)
        logits = torch.zeros(inputs.shape[0], 2)  # (B, 2)
        logits[:, 1] = self.penalty - 1
        return logits + 0 * self.weight  # (B, 2)


def build_model(config: PlantedConfig, meta: dict) -> nn.Module:
    return Planted(config)


PLANTED = Experiment(
    name="planted",
    help="a planted objective for rnnlab tune's tests",
    config=PlantedConfig,
    train_defaults=dict(epochs=1, lr=0.01),
    load_data=load_data,
    build_model=build_model,
    best_by="val_loss",
    where_fields=(),
    search_space={"x": {"low": 0.0, "high": 1.0}, "kind": list(KINDS)},
)
ALL = (*EXPERIMENTS, PLANTED)

if __name__ == "__main__":  # `python tests/planted.py tune planted ...`: rnnlab with it added
    sys.exit(main(sys.argv[1:], experiments=ALL))
