"""Every experiment trains with every cell: `rnnlab EXPERIMENT --cell rnn|gru|lstm --dry-run`
for mnist, seq2seq, lm, langid and postag, on the tiny data the other tests make, from
training to the end of the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from rnnlab.cli import main
from rnnlab.models import CELLS

QUIET = ["--no-progress", "--no-plots", "--threads", "1"]


def play(folder: Path) -> Path:
    """A little text in the corpus's layout: speaker, colon, a line of speech, blank line."""
    words = [
        "to",
        "be",
        "or",
        "not",
        "that",
        "is",
        "the",
        "question",
        "whether",
        "tis",
        "nobler",
        "in",
        "the",
        "mind",
    ]
    lines = []
    for i in range(60):
        lines += ["HAMLET:" if i % 2 else "OPHELIA:", " ".join(words[i % 5 : i % 5 + 7]) + ".", ""]
    path = folder / "play.txt"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def arguments(experiment: str, request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    """The experiment's smallest command on the tiny data, without --cell."""
    if experiment == "mnist":
        data = request.getfixturevalue("tiny_mnist")
        return ["mnist", "--data-dir", str(data), "--val-size", "5", "--hidden", "8"]
    if experiment == "seq2seq":
        return ["seq2seq"]
    if experiment == "lm":
        sizes = ["--hidden", "12", "--embedding", "6", "--bptt", "10", "--batch-size", "4"]
        return ["lm", "--text-file", str(play(tmp_path)), *sizes, "--sample-length", "20"]
    if experiment == "langid":
        data = request.getfixturevalue("lists")
        sizes = ["--words", "20", "--hidden", "8", "--embedding", "6", "--batch-size", "16"]
        return ["langid", "--data-dir", str(data), *sizes]
    data = request.getfixturevalue("corpus")
    return ["postag", "--data-dir", str(data), "--hidden", "8", "--embedding", "6"]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("experiment", ["mnist", "seq2seq", "lm", "langid", "postag"])
def test_every_experiment_dry_runs_with_every_cell(experiment, cell, request, tmp_path, capsys):
    command = [*arguments(experiment, request, tmp_path), "--cell", cell, *QUIET]
    assert main([*command, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "epoch 1/1" in out
    folder = next(line for line in out.splitlines() if line.startswith("run folder: "))
    # a run names the cell when it is not the experiment's default (the Elman RNN)
    assert folder.endswith(f"{experiment}-{cell}") == (cell != "rnn")
