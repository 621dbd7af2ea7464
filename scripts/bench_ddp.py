"""Data-parallel speed on this machine: one process against several, threads shared fairly.

Run `python scripts/bench_ddp.py` (with src on PYTHONPATH): it launches each configuration as
fresh processes (torchrun with the c10d rendezvous for several), interleaved over rounds so
that noise from the machine hits all alike, and prints the median of each. Every run trains the
MNIST model shape (RowClassifier: rnnlab.RNN(28, 128, 3) + Linear) through `fit` on random
28x28 inputs at a global batch of 64; the figure is the second epoch's samples/s (the first
warms up). It then times evaluation of 4096 samples two ways: sharded over the processes
(make_eval_loader) and the whole set on every process. Nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

CONFIGS = {  # name: (processes, threads per process, extra worker flags)
    "1 proc x 1 thread": (1, 1, ()),
    "1 proc x 2 threads": (1, 2, ()),
    "2 procs x 1 thread": (2, 1, ()),
    "2 procs x 1 thread, no NaN all-reduce": (2, 1, ("--no-flag",)),
}


def worker(args: argparse.Namespace) -> None:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from rnnlab.experiments.mnist import RowClassifier
    from rnnlab.models import make_rnn
    from rnnlab.train import (
        TrainConfig,
        evaluate,
        fit,
        init_distributed,
        make_eval_loader,
        make_loader,
        wrap_model,
    )

    if args.no_flag:  # the per-step finiteness all-reduce left out, to see what it costs
        import rnnlab.train.loop as loop

        loop._nonfinite_ranks = lambda value, device: []
    with init_distributed("cpu", threads=args.threads) as ctx:
        g = torch.Generator().manual_seed(0)
        n = args.steps * args.batch
        x = torch.rand(n, 28, 28, generator=g)  # (N, rows, cols)
        y = torch.randint(10, (n,), generator=g)  # (N,)
        val = TensorDataset(torch.rand(4096, 28, 28, generator=g), torch.randint(10, (4096,)))
        torch.manual_seed(0)
        model = wrap_model(RowClassifier(make_rnn("rnn", "rnnlab", 28, 128, 3)), ctx)
        train = make_loader(TensorDataset(x, y), args.batch, shuffle=True, seed=0, ctx=ctx)
        config = TrainConfig(
            name="bench", out_dir=args.out_dir, epochs=2, device="cpu", progress=False, plots=False
        )
        history = fit(model, train, None, config).history

        timings = {}
        for name, loader in (
            ("eval_sharded", make_eval_loader(val, 512, ctx=ctx)),
            ("eval_whole_on_each", DataLoader(val, batch_size=512)),
        ):
            evaluate(model, loader, limit_batches=1)  # warm
            start = time.perf_counter()
            evaluate(model, loader)
            timings[name] = len(val) / (time.perf_counter() - start)
        if ctx.is_main:
            result = {
                "train": history[-1]["samples_per_s"],
                "threads": torch.get_num_threads(),
                **timings,
            }
            print("RESULT " + json.dumps(result), flush=True)


def launch(processes: int, threads: int, flags, steps: int, batch: int) -> dict:
    with tempfile.TemporaryDirectory() as out_dir:
        script = [__file__, "--worker", "--steps", str(steps), "--batch", str(batch)]
        script += ["--out-dir", out_dir, *flags]
        if processes == 1:
            command = [sys.executable, *script, "--threads", str(threads)]
        else:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            command = [sys.executable, "-m", "torch.distributed.run"]
            command += ["--nnodes", "1", "--nproc-per-node", str(processes)]
            command += ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"localhost:{port}"]
            command += script  # threads: init_distributed divides the CPUs
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise RuntimeError(f"{command} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(lines[0].removeprefix("RESULT "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--steps", type=int, default=200, help="steps per epoch (default 200)")
    parser.add_argument("--batch", type=int, default=64, help="global batch (default 64)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", help=argparse.SUPPRESS)
    parser.add_argument("--no-flag", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    import torch

    print(
        f"torch {torch.__version__}, {len(os.sched_getaffinity(0))} usable CPUs, load average "
        f"{os.getloadavg()[0]:.1f}; RowClassifier (rnnlab.RNN(28, 128, 3)), global batch "
        f"{args.batch}, {args.steps} steps per epoch, median of {args.rounds} rounds"
    )
    results: dict[str, list[dict]] = {name: [] for name in CONFIGS}
    names = list(CONFIGS)
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            processes, threads, flags = CONFIGS[name]
            results[name].append(launch(processes, threads, flags, args.steps, args.batch))
    header = f"{'configuration':<40} {'train samples/s':>16} {'eval sharded':>13}"
    header += f" {'eval whole':>11}"
    print(header)
    print("-" * len(header))
    base = statistics.median(r["train"] for r in results["1 proc x 2 threads"])
    for name, runs in results.items():
        train = statistics.median(r["train"] for r in runs)
        spread = f"({min(r['train'] for r in runs):,.0f}-{max(r['train'] for r in runs):,.0f})"
        print(
            f"{name:<40} {train:>7,.0f} {spread:>8} "
            f"{statistics.median(r['eval_sharded'] for r in runs):>13,.0f} "
            f"{statistics.median(r['eval_whole_on_each'] for r in runs):>11,.0f}"
            f"   {train / base:.2f}x"
        )
    print(f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
