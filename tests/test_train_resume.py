"""A training process killed with SIGKILL mid-epoch, resumed, ends exactly as one never killed."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import torch

from rnnlab.report import read_metrics
from rnnlab.train import TIMING_KEYS, load_checkpoint

SRC = Path(__file__).resolve().parents[1] / "src"

# Draws from every stream a run can use: the loader's shuffling generator, torch's global RNG
# (dropout), numpy's and python's (noise in the dataset). With STALL_AT > 0 the process hangs
# at that training batch, after epoch 1's checkpoint and a few of epoch 2's updates, waiting
# to be killed.
SCRIPT = textwrap.dedent(
    """
    import random, sys, time
    from pathlib import Path

    import numpy as np
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, Dataset

    from rnnlab.train import TrainConfig, fit

    out_dir, resume, stall_at = sys.argv[1], sys.argv[2] == "resume", int(sys.argv[3])
    torch.set_num_threads(1)


    class Noisy(Dataset):
        def __init__(self, x, y):
            self.x, self.y = x, y

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            noise = np.random.normal(0, 0.1, size=self.x[i].shape).astype("float32")
            scale = 1.0 + 0.1 * random.random()
            return self.x[i] * scale + torch.from_numpy(noise), self.y[i]


    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.RNN(3, 8, batch_first=True)
            self.drop = nn.Dropout(0.2)
            self.out = nn.Linear(8, 3)
            self.calls = 0

        def forward(self, x):
            if self.training:
                self.calls += 1
                if self.calls == stall_at:
                    Path(out_dir, "stalled").touch()
                    time.sleep(120)
            h, _ = self.rnn(x)  # (B, T, H)
            return self.out(self.drop(h[:, -1]))  # (B, C)


    g = torch.Generator().manual_seed(1234)
    x = torch.randn(96, 5, 3, generator=g)  # (N, T, I)
    y = (x[..., 0].sum(1) > 0).long() + (x[..., 1].sum(1) > 1).long()  # (N,)
    torch.manual_seed(0)
    model = Model()
    train = DataLoader(Noisy(x[:64], y[:64]), batch_size=8, shuffle=True,
                       generator=torch.Generator())
    val = DataLoader(Noisy(x[64:], y[64:]), batch_size=16)
    config = TrainConfig(name="run", out_dir=out_dir, epochs=3, optimizer="sgd", lr=0.1,
                         schedule="onecycle", grad_clip=1.0, device="cpu", resume=resume,
                         progress=False, plots=False)
    fit(model, train, val, config)
    """
)


def _start(script: Path, out_dir: Path, mode: str, stall_at: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.Popen(
        [sys.executable, str(script), str(out_dir), mode, str(stall_at)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output
    return output


def test_run_killed_mid_epoch_resumes_to_the_same_final_metrics_and_weights(tmp_path):
    script = tmp_path / "train_tiny.py"
    script.write_text(SCRIPT)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    whole.mkdir()
    killed.mkdir()

    reference = _start(script, whole, "fresh", stall_at=0)
    victim = _start(script, killed, "fresh", stall_at=12)  # epoch 2, batch 4 of 8
    deadline = time.monotonic() + 90
    while not (killed / "stalled").exists():
        assert victim.poll() is None, victim.communicate()[0]
        assert time.monotonic() < deadline, "the training process never reached epoch 2"
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    assert load_checkpoint(killed / "run" / "checkpoint.pt")["epoch"] == 1
    assert [r["epoch"] for r in read_metrics(killed / "run")] == [1]

    output = _finish(_start(script, killed, "resume", stall_at=0))
    assert "resuming" in output and "after epoch 1" in output
    _finish(reference)

    def deterministic(run):
        return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in read_metrics(run)]

    assert deterministic(killed / "run") == deterministic(whole / "run")
    assert [r["epoch"] for r in read_metrics(killed / "run")] == [1, 2, 3]
    for name in ("checkpoint.pt", "best.pt"):
        a = load_checkpoint(whole / "run" / name)
        b = load_checkpoint(killed / "run" / name)
        assert a["epoch"] == b["epoch"]
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
