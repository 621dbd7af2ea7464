"""The experiment commands themselves under torchrun: two gloo processes on localhost run
`rnnlab seq2seq`, `rnnlab mnist` and `rnnlab lm` to the end, rank 0 alone prints and writes,
and the result is a single process's."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
DEADLINE_S = 240


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--nnodes", "1"),
        *("--nproc-per-node", str(nproc), "--rdzv-backend", "c10d"),
        *("--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--rdzv-id", "test"),
        *args,
    ]
    # OMP_NUM_THREADS set, as torchrun would, keeps it from printing its warning about it.
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=DEADLINE_S, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_seq2seq_under_torchrun_learns_hello_and_equals_one_process(tmp_path):
    args = ["--no-progress", "--no-plots", "--threads", "1"]
    done = torchrun("-m", "rnnlab", "seq2seq", "--out-dir", str(tmp_path / "two"), *args)
    assert done.stdout.count("epoch 15/15 |") == 1  # rank 0 alone logs
    assert done.stdout.count("pair(s), vocabulary of 4") == 1
    one = subprocess.run(
        [sys.executable, "-m", "rnnlab", "seq2seq", "--out-dir", str(tmp_path / "one"), *args],
        env={**os.environ, "PYTHONPATH": str(SRC)},
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        check=True,
    )
    assert "epoch 15/15 |" in one.stdout
    two_runs, one_run = metrics(tmp_path / "two" / "seq2seq"), metrics(tmp_path / "one" / "seq2seq")
    assert two_runs[-1]["predicted"] == one_run[-1]["predicted"] == "ohlol"
    for a, b in zip(two_runs, one_run, strict=True):
        assert abs(a["train_loss"] - b["train_loss"]) <= 1e-5 * max(1.0, abs(b["train_loss"]))


# `rnnlab mnist` under torchrun on the tests' tiny release: the script stands in for
# `python -m rnnlab`, with the tiny release accepted as 'mnist' by the data checks.
TINY_MNIST_MAIN = textwrap.dedent(
    """
    import sys

    sys.path.insert(0, {tests!r})
    from fake_mnist import make_tiny_release

    from rnnlab.cli import main
    from rnnlab.data import mnist

    mnist.SPECS["mnist"] = make_tiny_release().spec
    raise SystemExit(main(sys.argv[1:]))
    """
)


def test_mnist_under_torchrun_trains_and_tests_once(tiny_release, cache_root, tmp_path):
    idx = tiny_release.write(tmp_path / "idx")
    script = tmp_path / "tiny_mnist_main.py"
    script.write_text(TINY_MNIST_MAIN.format(tests=str(Path(__file__).parent)))
    args = [
        "mnist",
        "--data-dir",
        str(idx),
        "--val-size",
        "4",
        "--hidden",
        "8",
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--out-dir",
        str(tmp_path / "runs"),
        "--no-progress",
        "--no-plots",
    ]
    done = torchrun(str(script), *args)
    assert done.stdout.count("test accuracy") == 1
    assert done.stdout.count("epoch 2/2 |") == 1
    run_dir = tmp_path / "runs" / "mnist"
    test = json.loads((run_dir / "test.json").read_text())
    assert test["count"] == 10  # the two shards together score every test image once
    assert [r["epoch"] for r in metrics(run_dir)] == [1, 2]


def test_lm_under_torchrun_shares_the_streams_and_equals_one_process(tmp_path):
    """Two processes each read half of the streams, carrying their state: the same losses as
    one process reading them all, one sample per epoch, one samples.txt."""
    play = tmp_path / "play.txt"
    play.write_text("".join(f"ROMEO:\nSpeech number {i} of the night.\n\n" for i in range(60)))
    args = ["--text-file", str(play), "--hidden", "16", "--embedding", "8", "--bptt", "20"]
    args += ["--batch-size", "4", "--sample-length", "20", "--epochs", "2"]
    args += ["--no-progress", "--no-plots", "--threads", "1"]
    done = torchrun("-m", "rnnlab", "lm", "--out-dir", str(tmp_path / "two"), *args)
    assert done.stdout.count("--- sample after epoch 2 ---") == 1  # rank 0 alone samples
    subprocess.run(
        [sys.executable, "-m", "rnnlab", "lm", "--out-dir", str(tmp_path / "one"), *args],
        env={**os.environ, "PYTHONPATH": str(SRC)},
        capture_output=True,
        timeout=DEADLINE_S,
        check=True,
    )
    two_runs, one_run = metrics(tmp_path / "two" / "lm"), metrics(tmp_path / "one" / "lm")
    for a, b in zip(two_runs, one_run, strict=True):
        for key in ("train_loss", "val_loss"):
            assert abs(a[key] - b[key]) <= 1e-5 * max(1.0, abs(b[key]))
    assert (tmp_path / "two" / "lm" / "samples.txt").read_text().count("--- epoch") == 2
