"""Two gloo processes on localhost: DDP gradients, fit's reduced metrics, rank-0 writes, resume,
and a NaN on one rank stopping both. Workers run in spawned processes with a deadline each."""

import contextlib
import math
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from rnnlab.nn import RNN
from rnnlab.report import read_metrics
from rnnlab.train import (
    TIMING_KEYS,
    NonFiniteLossError,
    TrainConfig,
    broadcast_from_main,
    evaluate,
    fit,
    init_distributed,
    load_checkpoint,
    make_eval_loader,
    make_loader,
    wrap_model,
)

SRC = Path(__file__).resolve().parents[1] / "src"
DEADLINE_S = 90  # generous for a loaded 2-core machine; a hang fails the test, never blocks CI


class Classifier(nn.Module):
    """The fused fast path under DDP: rnnlab.RNN(8, 16, 2) -> last h_T -> Linear: (B, T, 8) ->
    (B, 3)."""

    def __init__(self, dtype=torch.float32):
        super().__init__()
        self.rnn = RNN(8, 16, 2, batch_first=True, dtype=dtype)
        self.out = nn.Linear(16, 3, dtype=dtype)

    def forward(self, x):
        h, _ = self.rnn(x)  # (B, T, 16)
        return self.out(h[:, -1])  # (B, 3)


class NaNOnRank(nn.Module):
    """Classifier whose logits turn NaN at its `at`-th training call, on process `rank` only."""

    def __init__(self, rank, at):
        super().__init__()
        self.inner, self.rank, self.at, self.calls = Classifier(), rank, at, 0

    def forward(self, x):
        logits = self.inner(x)  # (B, 3)
        if self.training:
            self.calls += 1
            if self.calls == self.at and torch.distributed.get_rank() == self.rank:
                return logits * math.nan
        return logits


class Interrupted(Exception):
    """Raised by an epoch hook on every process to stop a run as a kill would."""


def dataset(n, seed, dtype=torch.float32):
    """(n, 6, 8) sequences labelled 0, 1 or 2 by two sums: learnable in a few epochs."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, 8, generator=g, dtype=dtype)  # (N, T, I)
    y = (x[..., 0].sum(1) > 0).long() + (x[..., 1].sum(1) > 1).long()  # (N,)
    return TensorDataset(x, y)


TRAIN, VAL, TEST = dataset(96, 1), dataset(45, 2), dataset(31, 3)  # odd: uneven shards


def make_config(out_dir, **overrides):
    settings = dict(name="run", out_dir=str(out_dir), epochs=3, lr=0.02, device="cpu")
    return TrainConfig(**{**settings, "progress": False, "plots": False, **overrides})


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(worker, *args, world_size=2):
    """Run worker(rank, world_size, port, *args) in `world_size` processes; fail on a hang."""
    context = mp.spawn(worker, args=(world_size, free_port(), *args), nprocs=world_size, join=False)
    deadline = time.monotonic() + DEADLINE_S
    try:
        while not context.join(timeout=1):
            if time.monotonic() > deadline:
                pytest.fail(f"{worker.__name__} still running after {DEADLINE_S} s: a hang")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()


def join_as(rank, world_size, port):
    """Set the variables torchrun would set for this process, one machine, then join."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world_size),
    )
    return init_distributed("cpu")


def gradients_worker(rank, world_size, port, out_dir):
    with join_as(rank, world_size, port) as ctx:
        assert torch.get_num_threads() == max(1, len(os.sched_getaffinity(0)) // world_size)
        grads = {}
        for dtype in (torch.float64, torch.float32):
            torch.manual_seed(100 + rank)  # different starts: wrap_model copies rank 0's
            model = Classifier(dtype)
            ddp = wrap_model(model, ctx)
            loader = make_loader(dataset(64, 3, dtype), 32, shuffle=True, seed=5, ctx=ctx)
            loader.sampler.set_epoch(1)
            x, y = next(iter(loader))  # (16, 6, 8), (16,): this process's half
            F.cross_entropy(ddp(x), y).backward()
            grads[str(dtype)] = {k: p.grad for k, p in model.named_parameters()}
        torch.save(grads, out_dir / f"rank{rank}.pt")


def test_ddp_gradients_through_the_fused_backward_equal_one_process_over_the_global_batch(
    tmp_path,
):
    spawn(gradients_worker, tmp_path)
    per_rank = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for dtype, tolerance in ((torch.float64, 1e-12), (torch.float32, 1e-6)):
        torch.manual_seed(100)
        model = Classifier(dtype)
        loader = make_loader(dataset(64, 3, dtype), 32, shuffle=True, seed=5)
        loader.sampler.set_epoch(1)
        x, y = next(iter(loader))  # (32, 6, 8), (32,): the whole global batch
        F.cross_entropy(model(x), y).backward()
        for name, p in model.named_parameters():
            for rank, grads in enumerate(per_rank):
                got = grads[str(dtype)][name]
                assert torch.allclose(got, p.grad, rtol=tolerance, atol=tolerance), (
                    f"{dtype} {name} on rank {rank}: max error {(got - p.grad).abs().max():.2e}"
                )


def stop_at_epoch_3(epoch, model, metrics):
    # The hook runs before the epoch's checkpoint is written: stopping here leaves epoch 2's.
    if epoch == 3:
        raise Interrupted


def fit_worker(rank, world_size, port, root):
    # Each process gets a folder of its own, as on machines without a shared file system:
    # rank 1's must stay empty, and rank 0 alone must carry the run.
    out_dir = root / f"rank{rank}"
    with join_as(rank, world_size, port) as ctx:
        torch.manual_seed(0)
        inner = Classifier()
        model = wrap_model(inner, ctx)
        train = make_loader(TRAIN, 16, shuffle=True, seed=0, ctx=ctx)
        val = make_eval_loader(VAL, 16, ctx=ctx)
        with contextlib.suppress(Interrupted):
            fit(model, train, val, make_config(out_dir), on_epoch_end=stop_at_epoch_3)
        # A run's end: rank 0 alone can read best.pt; every process then scores a shard.
        if ctx.is_main:
            inner.load_state_dict(load_checkpoint(out_dir / "run" / "best.pt")["model"])
        broadcast_from_main(inner, ctx)
        test = evaluate(model, make_eval_loader(TEST, 10, ctx=ctx))
        torch.save((test.accuracy, test.loss, test.count), root / f"test-rank{rank}.pt")


def without_timing(records):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


def assert_close_records(got, expected):
    assert [r["epoch"] for r in got] == [r["epoch"] for r in expected]
    for a, b in zip(without_timing(got), without_timing(expected), strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-5), (a["epoch"], key)


def test_two_process_fit_writes_on_rank_0_reduces_metrics_and_resumes_on_one_process(
    tmp_path, capfd
):
    spawn(fit_worker, tmp_path)
    logged = capfd.readouterr().out
    assert logged.count("epoch 1/3 |") == 1 and logged.count("epoch 2/3 |") == 1
    assert not (tmp_path / "rank1").exists()
    run = tmp_path / "rank0" / "run"
    assert {p.name for p in run.iterdir()} == {
        "config.json",
        "metrics.jsonl",
        "checkpoint.pt",
        "best.pt",
        ".lock",
    }
    two = read_metrics(run)
    assert [r["epoch"] for r in two] == [1, 2]

    # The reported validation metrics are the whole validation set's, as one process sees it.
    model = Classifier()
    model.load_state_dict(load_checkpoint(run / "checkpoint.pt")["model"])
    whole = evaluate(model, DataLoader(VAL, batch_size=45))
    assert whole.count == 45
    assert two[-1]["val_acc"] == whole.accuracy
    assert two[-1]["val_loss"] == pytest.approx(whole.loss, rel=1e-6)

    model.load_state_dict(load_checkpoint(run / "best.pt")["model"])
    test = evaluate(model, DataLoader(TEST, batch_size=31))
    for rank in range(2):
        accuracy, loss, count = torch.load(tmp_path / f"test-rank{rank}.pt", weights_only=True)
        assert (accuracy, count) == (test.accuracy, 31)
        assert loss == pytest.approx(test.loss, rel=1e-6)

    # One process over the same global batches computes the same run, up to float rounding.
    torch.manual_seed(0)
    single = fit(
        Classifier(),
        make_loader(TRAIN, 16, shuffle=True, seed=0),
        make_eval_loader(VAL, 16),
        make_config(tmp_path / "single"),
    ).history
    assert_close_records(two, single[:2])

    # The two-process run, resumed in one process, finishes as the one-process run did.
    resumed = fit(
        Classifier(),
        make_loader(TRAIN, 16, shuffle=True, seed=0),
        make_eval_loader(VAL, 16),
        make_config(tmp_path / "rank0", resume=True),
    ).history
    assert "resuming" in capfd.readouterr().out
    assert resumed[:2] == two
    assert_close_records(resumed, single)


def nan_worker(rank, world_size, port, root):
    with join_as(rank, world_size, port) as ctx:
        torch.manual_seed(0)
        model = wrap_model(NaNOnRank(rank=1, at=3), ctx)
        train = make_loader(TRAIN, 16, shuffle=True, seed=0, ctx=ctx)
        try:
            fit(model, train, None, make_config(root / f"rank{rank}"))
        except NonFiniteLossError as e:
            (root / f"rank{rank}.txt").write_text(str(e))


def test_nan_loss_on_one_rank_stops_every_rank_with_nonfinite_loss_error(tmp_path):
    spawn(nan_worker, tmp_path)
    messages = [(tmp_path / f"rank{r}.txt").read_text() for r in range(2)]
    assert "training loss is not finite on rank 1 at epoch 1, batch 3/6" in messages[0]
    assert "training loss is nan on rank 1 at epoch 1, batch 3/6" in messages[1]
    assert all("stopped before the update, no checkpoint was written yet" in m for m in messages)
    assert not (tmp_path / "rank0" / "run" / "checkpoint.pt").exists()


def uneven_worker(rank, world_size, port, root):
    with join_as(rank, world_size, port) as ctx:
        model = wrap_model(Classifier(), ctx)
        # One validation sample over two processes: rank 1's shard is empty.
        result = evaluate(model, make_eval_loader(dataset(1, 4), 2, ctx=ctx), confusion=True)
        torch.save({"count": result.count, "confusion": result.confusion}, root / f"{rank}.pt")
        # A plain loader under DDP: every process trains on the whole of its own data.
        plain = DataLoader(dataset(32 * (rank + 1), 5), batch_size=16)
        try:
            fit(model, plain, None, make_config(root / f"rank{rank}"))
        except ValueError as e:
            (root / f"rank{rank}.txt").write_text(str(e))


def test_uneven_shards_are_scored_once_and_uneven_training_loaders_are_refused(tmp_path):
    spawn(uneven_worker, tmp_path)
    for rank in range(2):
        result = torch.load(tmp_path / f"{rank}.pt", weights_only=True)
        assert result["count"] == 1 and result["confusion"].sum() == 1
        message = (tmp_path / f"rank{rank}.txt").read_text()
        assert "the processes have between 2 and 4 training batches per epoch" in message


# A whole run under torchrun with the multi-machine rendezvous flags, on this one machine.
TORCHRUN_SCRIPT = textwrap.dedent(
    """
    import sys

    import torch
    from torch import nn
    from torch.utils.data import TensorDataset

    from rnnlab.nn import RNN
    from rnnlab.train import (TrainConfig, evaluate, fit, init_distributed, make_eval_loader,
                              make_loader, wrap_model)


    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = RNN(8, 16, 1, batch_first=True)
            self.out = nn.Linear(16, 3)

        def forward(self, x):
            h, _ = self.rnn(x)  # (B, T, H)
            return self.out(h[:, -1])  # (B, C)


    g = torch.Generator().manual_seed(0)
    x = torch.randn(80, 6, 8, generator=g)  # (N, T, I)
    y = (x[..., 0].sum(1) > 0).long() + (x[..., 1].sum(1) > 1).long()  # (N,)
    with init_distributed("cpu") as ctx:
        torch.manual_seed(0)
        model = wrap_model(Classifier(), ctx)
        train = make_loader(TensorDataset(x[:48], y[:48]), 16, shuffle=True, seed=0, ctx=ctx)
        val = make_eval_loader(TensorDataset(x[48:64], y[48:64]), 16, ctx=ctx)
        config = TrainConfig(out_dir=sys.argv[1], epochs=2, device="cpu", progress=False,
                             plots=False)
        fit(model, train, val, config)
        test = evaluate(model, make_eval_loader(TensorDataset(x[64:], y[64:]), 16, ctx=ctx))
        if ctx.is_main:
            print(f"world {ctx.world_size} threads {torch.get_num_threads()} test {test.count}")
    """
)


def test_torchrun_with_c10d_rendezvous_trains_two_processes_to_the_end(tmp_path):
    script = tmp_path / "tiny.py"
    script.write_text(TORCHRUN_SCRIPT)
    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--nnodes", "1"),
        *("--nproc-per-node", "2", "--rdzv-backend", "c10d"),
        *("--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--rdzv-id", "test"),
        *(str(script), str(tmp_path / "runs")),
    ]
    # OMP_NUM_THREADS set, as torchrun would, keeps it from printing its warning about it.
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=DEADLINE_S, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    threads = max(1, len(os.sched_getaffinity(0)) // 2)
    assert done.stdout.count(f"world 2 threads {threads} test 16") == 1, output
    assert done.stdout.count("epoch 2/2 |") == 1, output
    assert (tmp_path / "runs" / "run" / "summary.json").is_file()
