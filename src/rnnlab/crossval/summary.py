"""What a cross-validation reports: mean and std over folds, a per-fold table, the curves plot.

It reads fold results (dicts) and the folds' metrics.jsonl files; it trains nothing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rnnlab.report import read_metrics

# Fold metrics summed up as mean and std; test_* only when the folds were tested.
SUMMARY_METRICS = ("val_acc", "val_loss", "test_acc", "test_loss", "best_epoch", "seconds")


def summarize_folds(folds: Sequence[dict]) -> dict[str, dict[str, float]]:
    """{metric: {"mean": m, "std": s}} over `folds` for each of SUMMARY_METRICS every fold has.

    The std is numpy's default (ddof=0), as `scores.std()` in scikit-learn's examples.
    """
    if not folds:
        raise ValueError("no fold results to summarize")
    summary = {}
    for metric in SUMMARY_METRICS:
        values = [fold.get(metric) for fold in folds]
        if any(v is None for v in values):
            continue
        values = np.asarray(values, dtype=np.float64)  # (k,)
        summary[metric] = {"mean": float(values.mean()), "std": float(values.std())}
    return summary


def format_table(folds: Sequence[dict], summary: dict[str, dict[str, float]]) -> str:
    """A text table: one row per fold, then mean ± std of each metric column."""
    columns = [  # (header, key, decimals or None for a count, shown as a percentage)
        ("fold", "fold", None, False),
        ("train", "train_size", None, False),
        ("val", "val_size", None, False),
        ("best epoch", "best_epoch", None, False),
        ("val loss", "val_loss", 4, False),
        ("val acc", "val_acc", 2, True),
    ]
    if all(fold.get("test_acc") is not None for fold in folds):
        columns += [("test loss", "test_loss", 4, False), ("test acc", "test_acc", 2, True)]
    columns.append(("seconds", "seconds", 1, False))

    def number(value: float, decimals: int, percent: bool) -> str:
        return f"{100 * value if percent else value:.{decimals}f}"

    rows = [[header for header, *_ in columns]]
    for fold in folds:
        rows.append(
            [
                str(fold[key]) if decimals is None else number(fold[key], decimals, pct) + "%" * pct
                for _, key, decimals, pct in columns
            ]
        )
    means = ["mean ± std"]
    for _, key, decimals, pct in columns[1:]:
        if decimals is None or key not in summary:
            means.append("")
        else:
            mean, std = summary[key]["mean"], summary[key]["std"]
            means.append(
                f"{number(mean, decimals, pct)} ± {number(std, decimals, pct)}" + "%" * pct
            )
    widths = [max(len(row[c]) for row in (*rows, means)) for c in range(len(columns))]
    rule = "  ".join("-" * w for w in widths)
    lines = ["  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in rows]
    means_line = "  ".join(v.rjust(w) for v, w in zip(means, widths, strict=True))
    return "\n".join([lines[0], rule, *lines[1:], rule, means_line])


def plot_fold_curves(fold_dirs: Sequence[str | os.PathLike], path: str | os.PathLike) -> Path:
    """Write a PNG of each fold's validation accuracy per epoch (from its metrics.jsonl) and
    their mean over the epochs every fold has."""
    fig = Figure(figsize=(6.0, 4.0), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)  # the Agg canvas, without pyplot's global state
    ax = fig.subplots()
    curves = []
    for folder in map(Path, fold_dirs):
        points = [(r["epoch"], 100 * r["val_acc"]) for r in read_metrics(folder) if "val_acc" in r]
        if not points:
            raise ValueError(f"{folder} has no epochs with val_acc in its metrics to plot")
        curves.append(dict(points))
        epochs, accuracy = zip(*points, strict=True)
        marker = "o" if len(epochs) <= 30 else None
        ax.plot(epochs, accuracy, marker=marker, markersize=4, alpha=0.8, label=folder.name)
    common = sorted(set.intersection(*(set(c) for c in curves)))
    if len(curves) > 1 and common:
        mean = [np.mean([c[e] for c in curves]) for e in common]
        ax.plot(
            common, mean, "k--", marker="s" if len(common) <= 30 else None, label="mean per epoch"
        )
    epochs = sorted(set().union(*curves))
    if len(epochs) <= 15:
        ax.set_xticks(epochs)  # whole epochs only, even for a run of one or two
    else:
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(f"{Path(path).parent.name}: {len(fold_dirs)}-fold cross-validation")
    ax.grid(alpha=0.3)
    ax.legend()
    path = Path(path)
    fig.savefig(path)
    return path
