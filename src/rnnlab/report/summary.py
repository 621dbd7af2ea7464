"""Reading a run's metrics.jsonl and summing it up in summary.json.

A metrics file holds one JSON object per line, one line per epoch, each with at least "epoch";
the training loop writes "train_loss", "train_acc", "val_loss", "val_acc", "lr",
"samples_per_s" (an lm's "tokens_per_s") and "seconds", and a caller's hook may add more.
Nothing here trains anything.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from rnnlab.files import METRICS_FILE, SUMMARY_FILE, atomic_write


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The records of a metrics.jsonl file (or of the one inside a run folder), in order."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    records = []
    with open(path) as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{number} is not a JSON object: {line[:80]!r}") from e
            if not isinstance(record, dict) or "epoch" not in record:
                raise ValueError(f"{path}:{number} has no 'epoch' field: {line[:80]!r}")
            records.append(record)
    return records


def monitored_metric(records: list[dict], best_by: str = "val_acc") -> str:
    """The metric that picks the best epoch: `best_by` (validation accuracy, or loss) when
    the run had a validation set, else the training pass's."""
    return best_by if any(best_by in r for r in records) else best_by.replace("val_", "train_")


def summarize(run_dir: str | os.PathLike, best_by: str = "val_acc") -> dict:
    """Best epoch by `best_by` (a loss is minimised), its scores, the final epoch's metrics
    and the total time of a run."""
    run_dir = Path(run_dir)
    records = read_metrics(run_dir)
    if not records:
        raise ValueError(f"{run_dir / METRICS_FILE} holds no epochs to summarize")
    metric = monitored_metric(records, best_by)
    sign = -1.0 if metric.endswith("loss") else 1.0  # a loss is minimised
    # max() keeps the first of equal scores, as the training loop does when it saves best.pt.
    best = max(records, key=lambda r: sign * r[metric] if metric in r else -math.inf)
    return {
        "run": run_dir.name,
        "epochs": len(records),
        "best_epoch": best["epoch"],
        "best_metric": metric,
        "best": best,
        "final": records[-1],
        "total_seconds": sum(r.get("seconds", 0.0) for r in records),
    }


def write_summary(run_dir: str | os.PathLike, best_by: str = "val_acc") -> dict:
    """Write summarize(run_dir, best_by) to run_dir/summary.json and return it."""
    summary = summarize(run_dir, best_by)
    atomic_write(Path(run_dir) / SUMMARY_FILE, (json.dumps(summary, indent=2) + "\n").encode())
    return summary
