"""`rnnlab cv mnist` on a tiny MNIST-shaped release and `rnnlab cv seq2seq` on a few pairs."""

from __future__ import annotations

import contextlib
import json
import re
import tempfile

import pytest

from rnnlab.cli import build_parser, main
from rnnlab.crossval import CURVES_FILE, CV_FILE, FOLD_FILE

pytestmark = pytest.mark.usefixtures("no_network", "one_thread")

TINY_MODEL = ["--hidden", "4", "--layers", "1", "--no-progress"]


@pytest.fixture
def dry_run_dir(tmp_path, monkeypatch):
    """--dry-run writes to a fresh temporary folder, removed at the end: here, one under
    tmp_path that is kept for the test to read."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(
        tempfile,
        "TemporaryDirectory",
        lambda prefix: contextlib.nullcontext(tempfile.mkdtemp(prefix=prefix)),
    )
    return tmp_path


@pytest.fixture
def pairs_file(tmp_path):
    path = tmp_path / "pairs.tsv"
    pairs = ["hello\tohlol", "hell\tohlo", "lo\tol", "he\toh", "ell\thlo", "oh\tlo"]
    path.write_text("\n".join(pairs) + "\n")
    return path


def test_cv_is_a_command_with_an_mnist_and_a_seq2seq_subcommand(capsys):
    assert "cv" in build_parser().format_help()
    with pytest.raises(SystemExit):
        main(["cv", "--help"])
    out = capsys.readouterr().out
    assert "mnist" in out and "seq2seq" in out


@pytest.mark.parametrize("experiment", ["mnist", "seq2seq"])
def test_every_cv_flag_states_its_default(experiment, capsys):
    with pytest.raises(SystemExit):
        main(["cv", experiment, "--help"])
    out = capsys.readouterr().out
    # An option's entry runs from its "  --flag" line to the next option or group heading.
    entries = re.findall(r"^  (-.*?)(?=^  -|^\S|\Z)", out, re.MULTILINE | re.DOTALL)
    flags = {entry.split()[0].rstrip(",") for entry in entries}
    assert {"--folds", "--workers", "--shuffle", "--epochs", "--dry-run"} <= flags
    for entry in entries:
        assert entry.startswith("-h") or "(default" in entry, entry


def test_cv_mnist_dry_run_folds_a_tiny_release(tiny_mnist, dry_run_dir, capsys):
    argv = ["cv", "mnist", "--data-dir", str(tiny_mnist), "--folds", "2", "--test", "--dry-run"]
    assert main(argv + TINY_MODEL) == 0
    out = capsys.readouterr().out
    assert "20 training samples in 2 stratified folds, 10 test samples" in out
    assert re.search(r"^ +0 +10 +10 +1 ", out, re.MULTILINE)  # fold, train, val, best epoch
    assert re.search(r"^ +1 +10 +10 +1 ", out, re.MULTILINE)
    assert "mean ± std" in out
    (run_dir,) = dry_run_dir.glob("rnnlab-dry-run-*/cv-mnist")
    cv = json.loads((run_dir / CV_FILE).read_text())
    assert cv["run"]["experiment"] == "mnist" and cv["run"]["config"]["val_size"] == 0
    assert cv["train"]["limit_batches"] == 2 and cv["train"]["epochs"] == 1
    assert all(fold["test_acc"] is not None for fold in cv["per_fold"])


def test_cv_mnist_writes_fold_runs_that_evaluate_accepts_and_a_rerun_skips(
    tiny_mnist, tmp_path, capsys
):
    argv = ["cv", "mnist", "--data-dir", str(tiny_mnist), "--folds", "2", "--test"]
    argv += ["--epochs", "2", "--batch-size", "5", "--out-dir", str(tmp_path / "runs")]
    assert main(argv + TINY_MODEL) == 0
    first = capsys.readouterr().out
    run_dir = tmp_path / "runs" / "cv-mnist"
    assert (run_dir / CV_FILE).is_file() and (run_dir / CURVES_FILE).is_file()
    for fold in ("fold-0", "fold-1"):
        for name in ("config.json", "best.pt", "metrics.jsonl", FOLD_FILE, "accuracy.png"):
            assert (run_dir / fold / name).is_file(), f"{fold}/{name}"

    assert main(["evaluate", str(run_dir / "fold-1"), "--data-dir", str(tiny_mnist)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    fold1 = json.loads((run_dir / "fold-1" / FOLD_FILE).read_text())
    assert evaluated["accuracy"] == pytest.approx(fold1["test_acc"])

    assert main(argv + TINY_MODEL) == 0
    again = capsys.readouterr().out
    assert "fold 0: finished earlier" in again and "fold 1: finished earlier" in again
    assert "| epoch" not in again  # nothing trained
    table = first[first.index("      fold") :]
    assert again.endswith(table)


def test_cv_mnist_refuses_a_validation_size(tiny_mnist, tmp_path, capsys):
    assert main(["cv", "mnist", "--data-dir", str(tiny_mnist), "--val-size", "5", "--dry-run"]) == 2
    assert re.search(r"--val-size must be 0 under cv.*got 5", capsys.readouterr().err)


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--folds", "1"], "--folds must be at least 2, got 1"), (["--workers", "0"], "got 0")],
)
def test_cv_names_a_bad_fold_or_worker_count(flags, message, pairs_file, capsys):
    assert main(["cv", "seq2seq", "--pairs", str(pairs_file), "--dry-run", *flags]) == 2
    assert message in capsys.readouterr().err


def test_cv_seq2seq_dry_run_folds_the_pairs(pairs_file, dry_run_dir, capsys):
    argv = ["cv", "seq2seq", "--pairs", str(pairs_file), "--folds", "3", "--dry-run"]
    assert main([*argv, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "6 training samples in 3 folds; 6 pair(s), vocabulary of 4" in out
    (run_dir,) = dry_run_dir.glob("rnnlab-dry-run-*/cv-seq2seq")
    cv = json.loads((run_dir / CV_FILE).read_text())
    assert cv["run"]["experiment"] == "seq2seq" and cv["stratified"] is False
    assert [(f["train_size"], f["val_size"]) for f in cv["per_fold"]] == [(4, 2)] * 3
    fold = json.loads((run_dir / "fold-0" / "config.json").read_text())
    assert fold["meta"]["vocabulary"]["tokens"] == ["e", "h", "l", "o"]


def test_cv_seq2seq_needs_at_least_as_many_pairs_as_folds(capsys):
    assert main(["cv", "seq2seq", "--dry-run"]) == 2  # the tutorial's single pair
    assert "--folds 5 needs at least 5 samples to fold, got 1" in capsys.readouterr().err


def test_cv_seq2seq_rerun_with_other_settings_is_refused(pairs_file, tmp_path, capsys):
    argv = ["cv", "seq2seq", "--pairs", str(pairs_file), "--folds", "2", "--no-progress"]
    argv += ["--out-dir", str(tmp_path), "--no-plots"]
    assert main([*argv, "--epochs", "1"]) == 0
    capsys.readouterr()
    assert main([*argv, "--epochs", "2"]) == 2
    assert "holds a cross-validation with other settings" in capsys.readouterr().err
