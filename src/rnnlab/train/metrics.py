"""Writing metrics.jsonl: one JSON line per epoch, appended and fsynced as each epoch ends.

Reading lives in `rnnlab.report` (below this package). The checkpoint carries the records of
the epochs it holds, and on resume `rewrite_metrics` puts exactly those back, dropping lines of
epochs the checkpoint does not hold and any line a kill cut short: the file then reads as an
uninterrupted run's.
"""

from __future__ import annotations

import json
import os

from rnnlab.files import atomic_write


def append_metrics(path: str | os.PathLike, record: dict) -> None:
    """Append `record` (a dict with an 'epoch') as one line and fsync it."""
    if "epoch" not in record:
        raise ValueError(f"a metrics record needs an 'epoch' field, got keys {sorted(record)}")
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def rewrite_metrics(path: str | os.PathLike, records: list[dict]) -> None:
    """Replace the file, atomically, by `records` one per line (empty list: an empty file)."""
    atomic_write(path, "".join(json.dumps(r) + "\n" for r in records).encode())
