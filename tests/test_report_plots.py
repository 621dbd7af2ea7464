"""Plots from a run folder: loss and accuracy curves, and a confusion matrix."""

import json

import numpy as np
import pytest
from matplotlib.image import imread

from rnnlab.report import plot_confusion, plot_curves


def _write_metrics(run_dir, records):
    run_dir.mkdir(exist_ok=True)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def _records(val=True):
    records = []
    for epoch in range(1, 5):
        record = {"epoch": epoch, "train_loss": 1 / epoch, "train_acc": 0.5 + 0.1 * epoch}
        if val:
            record.update(val_loss=1.2 / epoch, val_acc=0.45 + 0.1 * epoch)
        records.append(record)
    return records


def _is_drawn_png(path):
    image = imread(path)  # (H, W, 4) floats
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and image.std() > 0.05


@pytest.mark.parametrize("val", [True, False], ids=["train-and-val", "train-only"])
def test_plot_curves_writes_loss_and_accuracy_pngs(tmp_path, val):
    run = tmp_path / "run"
    _write_metrics(run, _records(val))
    paths = plot_curves(run)
    assert [p.name for p in paths] == ["loss.png", "accuracy.png"]
    assert all(_is_drawn_png(p) for p in paths)


def test_plot_curves_refuses_an_empty_metrics_file(tmp_path):
    _write_metrics(tmp_path / "run", [])
    with pytest.raises(ValueError, match="has no epochs in its metrics file"):
        plot_curves(tmp_path / "run")


def test_plot_confusion_writes_a_png_with_class_names(tmp_path):
    matrix = np.array([[50, 2, 0], [3, 40, 7], [0, 10, 0]])
    path = plot_confusion(matrix, ["zero", "one", "two"], tmp_path / "confusion.png")
    assert _is_drawn_png(path)


def test_plot_confusion_accepts_many_classes_without_names(tmp_path):
    matrix = np.random.default_rng(0).integers(0, 9, size=(30, 30))
    assert _is_drawn_png(plot_confusion(matrix.tolist(), None, tmp_path / "c.png"))


@pytest.mark.parametrize(
    ("matrix", "names", "message"),
    [
        (np.zeros((2, 3)), None, r"square \(C, C\) with C >= 1, got shape \(2, 3\)"),
        (np.zeros((2, 2)), ["a", "b", "c"], "class_names must have 2 entries .* got 3"),
    ],
)
def test_plot_confusion_refuses_bad_shapes(tmp_path, matrix, names, message):
    with pytest.raises(ValueError, match=message):
        plot_confusion(matrix, names, tmp_path / "c.png")
