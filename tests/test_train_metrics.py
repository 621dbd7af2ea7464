"""metrics.jsonl: one line per epoch, appended, and rewritten whole on resume."""

import pytest

from rnnlab.report import read_metrics
from rnnlab.train.metrics import append_metrics, rewrite_metrics


def test_appended_records_read_back_in_order(tmp_path):
    path = tmp_path / "metrics.jsonl"
    records = [{"epoch": 1, "train_loss": 0.5, "note": "ohlol"}, {"epoch": 2, "train_loss": 0.25}]
    for record in records:
        append_metrics(path, record)
    assert read_metrics(path) == records
    assert read_metrics(tmp_path) == records  # a run folder works too


def test_rewrite_drops_later_epochs_and_a_torn_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    append_metrics(path, {"epoch": 1, "train_loss": 0.5})
    append_metrics(path, {"epoch": 2, "train_loss": 0.4})
    with open(path, "a") as f:
        f.write('{"epoch": 3, "train_lo')  # a kill mid-write
    rewrite_metrics(path, [{"epoch": 1, "train_loss": 0.5}])
    assert read_metrics(path) == [{"epoch": 1, "train_loss": 0.5}]


def test_record_without_epoch_is_refused(tmp_path):
    with pytest.raises(ValueError, match="needs an 'epoch' field, got keys \\['loss'\\]"):
        append_metrics(tmp_path / "m.jsonl", {"loss": 1.0})


def test_unreadable_line_names_file_and_line_number(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 1}\nnot json\n')
    with pytest.raises(ValueError, match=r"metrics\.jsonl:2 is not a JSON object"):
        read_metrics(path)
