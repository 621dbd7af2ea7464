"""An option declared once: a dataclass field that carries its default, one line of help and,
where the values are few, its choices.

The configs (`TrainConfig`, each experiment's config) declare their fields with `option`;
`rnnlab.cli` derives the command line, `--config FILE` and `--print-config` from them. This
module imports nothing from rnnlab and knows nothing of argparse.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any


def option(default: Any, help: str, *, choices: tuple | None = None) -> Any:
    """A dataclass field with `default`, a one-line `help` and the valid `choices` (if few)."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


def declared_fields(cls) -> list[tuple[dataclasses.Field, type]]:
    """The fields of `cls` declared with `option`, each with its value type (`X | None` -> X)."""
    hints = typing.get_type_hints(cls)
    fields = []
    for f in dataclasses.fields(cls):
        if "help" not in f.metadata:
            continue
        kind = hints[f.name]
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        fields.append((f, args[0] if args else kind))
    return fields


def check_choice(name: str, value, choices) -> None:
    """Refuse `value` unless it is one of `choices`, naming both."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")


def check_range(name: str, value: float, low: float | None = None, high: float | None = None):
    """Refuse a non-finite `value` or one outside [low, high], naming the bound it breaks."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")


def check_choices(config) -> None:
    """Check every declared field of `config` that lists choices; for a config's __post_init__."""
    for f, _ in declared_fields(type(config)):
        if f.metadata["choices"] is not None:
            check_choice(f.name, getattr(config, f.name), f.metadata["choices"])
