"""A search space: which options `rnnlab tune` varies and over what, written as plain data.

An experiment declares one beside its config (`Experiment.search_space`) and a user changes it
with a YAML file of the same shape; both name options (the experiment's or the training ones)
and become Optuna's distributions here, each checked against the option it names:

    hidden: [64, 128, 256]                          # a list: one of these values
    lr: {low: 1.0e-4, high: 1.0e-2, log: true}      # a number in [low, high], log-uniform
    dropout: {low: 0.0, high: 0.5}                   # uniform
    layers: {low: 1, high: 3}                        # an int option draws ints (step: 1)

Nothing here trains or opens a study.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
)
from optuna.trial import Trial

from rnnlab.options import declared_fields

RANGE_KEYS = ("low", "high", "log", "step")


def merge(declared: Mapping, changes: Mapping) -> dict:
    """The declared entries with `changes` on top, name by name; a change of None removes the
    entry, so the option keeps the value the command line gives it."""
    entries = dict(declared)
    for name, entry in changes.items():
        if entry is None:
            entries.pop(name, None)
        else:
            entries[name] = entry
    return entries


def search_space(
    entries: Mapping, settings: Sequence[object], where: str
) -> dict[str, BaseDistribution]:
    """Optuna's distribution for each entry, by option name.

    `settings` are the config dataclasses a trial starts from (the experiment's, TrainConfig);
    an entry must name an `option` field of one of them, and every choice and both ends of
    every range must make valid settings on their own (the dataclass's own checks run), so a
    bad space is refused before the first trial. Errors are one line, prefixed with `where`.
    """
    fields = {f.name: (obj, f, kind) for obj in settings for f, kind in declared_fields(type(obj))}
    space = {}
    for name, entry in entries.items():
        key = str(name).replace("-", "_")
        if key not in fields:
            raise ValueError(
                f"{where}: unknown option {name!r}; expected some of {', '.join(sorted(fields))}"
            )
        obj, f, kind = fields[key]
        here = f"{where}: {key}"
        distribution = _distribution(entry, kind, f.metadata["choices"], here)
        ends = (
            distribution.choices
            if isinstance(distribution, CategoricalDistribution)
            else (distribution.low, distribution.high)
        )
        for value in ends:
            try:
                dataclasses.replace(obj, **{key: value})
            except (ValueError, TypeError) as e:
                raise ValueError(f"{here}: {value!r} is refused: {e}") from None
        space[key] = distribution
    return space


def _distribution(entry, kind: type, choices, where: str) -> BaseDistribution:
    if isinstance(entry, (list, tuple)):
        if not entry:
            raise ValueError(f"{where}: an empty list of choices")
        return CategoricalDistribution([_value(v, kind, choices, where) for v in entry])
    if not isinstance(entry, Mapping):
        raise ValueError(
            f"{where}: expected a list of choices or a range {{low: ..., high: ...}}, got {entry!r}"
        )
    unknown = sorted(set(map(str, entry)) - set(RANGE_KEYS))
    if unknown:
        keys = ", ".join(RANGE_KEYS)
        raise ValueError(f"{where}: unknown key {unknown[0]!r}; a range has {keys}")
    if kind not in (int, float):
        raise ValueError(f"{where}: a {kind.__name__} option takes a list of choices, not a range")
    if "low" not in entry or "high" not in entry:
        raise ValueError(f"{where}: a range needs both low and high")
    low, high = (_value(entry[k], kind, None, f"{where}: {k}") for k in ("low", "high"))
    log = entry.get("log", False)
    if not isinstance(log, bool):
        raise ValueError(f"{where}: log must be true or false, got {log!r}")
    step = entry.get("step")
    if step is not None:
        step = _value(step, kind, None, f"{where}: step")
    if low > high:
        raise ValueError(f"{where}: the range is empty: low {low} > high {high}")
    if log and not low > 0:
        raise ValueError(f"{where}: a log range needs low > 0, got {low}")
    try:
        if kind is int:
            return IntDistribution(low, high, log=log, step=1 if step is None else step)
        return FloatDistribution(low, high, log=log, step=step)
    except ValueError as e:  # Optuna's own checks: a step that does not fit, log with a step
        raise ValueError(f"{where}: {e}") from None


def _value(value, kind: type, choices, where: str):
    """`value` as an option of type `kind` takes it (an int where a float is expected is
    widened), or one line saying why not."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        hint = ""
        if isinstance(value, str) and kind in (int, float) and _reads_as_number(value):
            hint = " (YAML reads 1e-4 as text: write 1.0e-4)"
        raise ValueError(f"{where}: expected {kind.__name__}, got {value!r}{hint}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: expected a finite number, got {value}")
    if choices is not None and value not in choices:
        raise ValueError(f"{where}: {value!r} is not one of {', '.join(map(str, choices))}")
    return value


def _reads_as_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def describe(distribution: BaseDistribution) -> str:
    """A distribution as a user reads it: 'one of 4, 8, 16', 'log-uniform in [0.01, 0.3]'."""
    if isinstance(distribution, CategoricalDistribution):
        return "one of " + ", ".join(map(str, distribution.choices))
    kind = "int" if isinstance(distribution, IntDistribution) else "float"
    shape = "log-uniform" if distribution.log else "uniform"
    step = f", step {distribution.step}" if distribution.step not in (None, 1) else ""
    return f"{shape} {kind} in [{distribution.low}, {distribution.high}]{step}"


def as_json(space: Mapping[str, BaseDistribution]) -> dict:
    """The space as JSON-ready data (Optuna's own form of each distribution): what a study
    remembers, so that a later run with another space is told so."""
    return {name: json.loads(distribution_to_json(d)) for name, d in space.items()}


def sample(trial: Trial, space: Mapping[str, BaseDistribution]) -> dict:
    """The trial's value of every option in the space, drawn by the study's sampler."""
    params = {}
    for name, d in space.items():
        if isinstance(d, CategoricalDistribution):
            params[name] = trial.suggest_categorical(name, d.choices)
        elif isinstance(d, IntDistribution):
            params[name] = trial.suggest_int(name, d.low, d.high, step=d.step, log=d.log)
        else:
            params[name] = trial.suggest_float(name, d.low, d.high, step=d.step, log=d.log)
    return params
