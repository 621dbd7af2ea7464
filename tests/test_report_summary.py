"""summary.json: the best epoch, the final metrics and the total time of a run."""

import json

from rnnlab.report import summarize, write_summary


def _write(run_dir, records):
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_summary_takes_the_first_best_validation_epoch_and_sums_the_time(tmp_path):
    records = [
        {"epoch": 1, "train_acc": 0.5, "val_acc": 0.6, "seconds": 1.5},
        {"epoch": 2, "train_acc": 0.7, "val_acc": 0.8, "seconds": 2.0},
        {"epoch": 3, "train_acc": 0.9, "val_acc": 0.8, "seconds": 2.5},
    ]
    _write(tmp_path / "run", records)
    summary = write_summary(tmp_path / "run")
    assert summary == json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["best_epoch"], summary["best_metric"]) == (2, "val_acc")
    assert summary["best"] == records[1]
    assert summary["final"] == records[2]
    assert (summary["epochs"], summary["total_seconds"], summary["run"]) == (3, 6.0, "run")


def test_summary_without_validation_ranks_by_training_accuracy(tmp_path):
    _write(tmp_path / "run", [{"epoch": 1, "train_acc": 0.9}, {"epoch": 2, "train_acc": 0.7}])
    summary = summarize(tmp_path / "run")
    assert (summary["best_epoch"], summary["best_metric"]) == (1, "train_acc")
