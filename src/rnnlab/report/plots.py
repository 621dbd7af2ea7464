"""PNG plots of a finished (or running) run: loss and accuracy curves, a confusion matrix.

Figures are built with matplotlib's object API on the Agg canvas, never pyplot, so plotting
touches no global state and needs no display.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rnnlab.report.summary import read_metrics

# Past this many classes the cells are too small to read a count in.
ANNOTATE_MAX_CLASSES = 20


def _figure(width: float = 6.0, height: float = 4.0) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _plot_pair(records: list[dict], key: str, ylabel: str, title: str, path: Path, scale=1.0):
    fig = _figure()
    ax = fig.subplots()
    marker = "o" if len(records) <= 30 else None
    for split in ("train", "val"):
        points = [
            (r["epoch"], r[f"{split}_{key}"] * scale) for r in records if f"{split}_{key}" in r
        ]
        if points:
            epochs, values = zip(*points, strict=True)
            ax.plot(epochs, values, marker=marker, markersize=4, label=split)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend()
    fig.savefig(path)


def plot_curves(run_dir: str | os.PathLike) -> list[Path]:
    """Write run_dir/loss.png and run_dir/accuracy.png (train and val per epoch) from metrics.jsonl.

    **Returns:** the paths written.
    """
    run_dir = Path(run_dir)
    records = read_metrics(run_dir)
    if not records:
        raise ValueError(f"{run_dir} has no epochs in its metrics file to plot")
    loss, accuracy = run_dir / "loss.png", run_dir / "accuracy.png"
    _plot_pair(records, "loss", "cross-entropy loss", f"{run_dir.name}: loss", loss)
    _plot_pair(records, "acc", "accuracy (%)", f"{run_dir.name}: accuracy", accuracy, scale=100)
    return [loss, accuracy]


def plot_confusion(
    matrix,
    class_names: Sequence[str] | None,
    path: str | os.PathLike,
    title: str = "confusion matrix",
) -> Path:
    """Write a confusion matrix (rows: true class, columns: predicted) as a PNG.

    Cells are coloured by the fraction of their row (recall per class) and, up to
    ANNOTATE_MAX_CLASSES classes, show their count.

    **Arguments:** `matrix` (C, C) counts (tensor, array or nested lists), `class_names` C
    labels or None for 0..C-1, `path` the PNG to write.
    """
    counts = np.asarray(matrix.tolist() if hasattr(matrix, "tolist") else matrix)  # (C, C)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] == 0:
        raise ValueError(f"matrix must be square (C, C) with C >= 1, got shape {counts.shape}")
    n = counts.shape[0]
    names = [str(i) for i in range(n)] if class_names is None else [str(c) for c in class_names]
    if len(names) != n:
        raise ValueError(
            f"class_names must have {n} entries for a {n}x{n} matrix, got {len(names)}"
        )
    rows = counts.sum(axis=1, keepdims=True)  # (C, 1)
    fraction = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)  # (C, C)

    side = min(12.0, 3.0 + 0.45 * n)
    fig = _figure(side + 1.0, side)
    ax = fig.subplots()
    image = ax.imshow(fraction, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="fraction of the true class", shrink=0.8)
    ticks = np.arange(n)
    if max(map(len, names)) > 2:  # long names would overlap side by side
        ax.set_xticks(ticks, names, rotation=45, ha="right", rotation_mode="anchor")
    else:
        ax.set_xticks(ticks, names)
    ax.set_yticks(ticks, names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    ax.set_title(f"{title} (accuracy {100 * accuracy:.2f}%)")
    if n <= ANNOTATE_MAX_CLASSES:
        for i in range(n):
            for j in range(n):
                dark = fraction[i, j] > 0.5
                ax.text(
                    j,
                    i,
                    f"{counts[i, j]:g}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if dark else "black",
                )
    path = Path(path)
    fig.savefig(path)
    return path
