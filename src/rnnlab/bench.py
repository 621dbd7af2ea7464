"""Timing of rnnlab's RNN, GRU and LSTM against torch.nn's, the way nanoGPT's bench.py times a
step.

Every contender gets the same weights and the same input; the contenders run interleaved,
round after round in rotating order, so that noise from the machine hits all of them alike;
each figure is the median over rounds of the mean time per iteration in that round. Nothing
here asserts a speed: it measures and prints.

torch runs its CPU RNN and GRU as ATen's loop of ops, and its float32 LSTM as oneDNN's fused
kernel (not for packed input, where its own loop runs); for the LSTM the table times torch
both ways, oneDNN on ("torch") and off ("torch native"), and names the path that ran.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_sequence

from rnnlab.models import CELLS, GATES, MODULES


@dataclass(frozen=True)
class Shape:
    """One benchmark shape: batch B, steps T, input size I, hidden size H, layers L; `packed`:
    B sequences of unequal lengths, at most T steps, as one PackedSequence (words of langid)."""

    name: str
    batch: int
    steps: int
    input_size: int
    hidden_size: int
    layers: int
    packed: bool = False

    def lengths(self) -> list[int]:
        """Each sequence's steps: all T, or when packed a fixed spread over [min(5, T), T]."""
        if not self.packed:
            return [self.steps] * self.batch
        low = min(5, self.steps)
        return [low + (7 * i) % (self.steps - low + 1) for i in range(self.batch)]

    def flops(self, backward: bool, gates: int = 1) -> float:
        """Multiply-adds x 2 of the matmuls: input projections and recurrences of every layer,
        `gates` blocks of H each. The backward does twice the forward's (input and weight
        gradients)."""
        rows, h = sum(self.lengths()), self.hidden_size
        forward = sum(2 * rows * h * (self.input_size if k == 0 else h) for k in range(self.layers))
        forward += self.layers * 2 * rows * h * h
        return gates * forward * (3 if backward else 1)


SHAPES = (
    Shape("mnist-rows", batch=64, steps=28, input_size=28, hidden_size=128, layers=3),
    Shape("wide", batch=128, steps=28, input_size=28, hidden_size=256, layers=1),
    Shape("pixel-mnist", batch=16, steps=784, input_size=1, hidden_size=128, layers=1),
    Shape("online", batch=1, steps=100, input_size=32, hidden_size=64, layers=2),
    Shape("lm-char", batch=64, steps=100, input_size=64, hidden_size=512, layers=2),  # rnnlab lm
    # rnnlab langid: 64 words of 5-16 characters (^word$), embedded in 64, one direction of H 256
    Shape(
        "langid-words", batch=64, steps=16, input_size=64, hidden_size=256, layers=1, packed=True
    ),
)


def shape_named(name: str) -> Shape:
    """The bench shape called `name` (one of SHAPES)."""
    return next(s for s in SHAPES if s.name == name)


def parse_timing_args(parser: argparse.ArgumentParser, rounds: int) -> argparse.Namespace:
    """A timing script's arguments: `parser`'s own and --threads (0: torch's own) and --rounds
    (default `rounds`), a bad value one line and status 2; torch's threads set as asked."""
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: torch's own")
    parser.add_argument("--rounds", type=int, default=rounds, help="interleaved timing rounds")
    args = parser.parse_args()
    if args.threads < 0:
        parser.error(f"--threads must be 0 (torch's own) or more, got {args.threads}")
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def contenders(cell: str) -> tuple[str, ...]:
    """The contenders of `cell`'s table: torch's module (and for the LSTM torch's native loop
    beside its oneDNN kernel), rnnlab's reference loop and rnnlab's fused path."""
    native = ("torch native",) if cell == "lstm" else ()
    return ("torch", *native, "rnnlab-reference", "rnnlab")


def build_contenders(shape: Shape, cell: str = "rnn", seed: int = 0) -> dict[str, nn.Module]:
    """torch.nn's module of `cell` and rnnlab's two implementations, all with the same weights
    ("torch native" is torch's own module, run with oneDNN off by `step_function`)."""
    torch.manual_seed(seed)
    ours, theirs = MODULES[cell]
    reference = theirs(shape.input_size, shape.hidden_size, shape.layers)
    modules = {
        "torch": reference,
        "torch native": reference,
        "rnnlab-reference": ours(
            shape.input_size, shape.hidden_size, shape.layers, impl="reference"
        ),
        "rnnlab": ours(shape.input_size, shape.hidden_size, shape.layers),
    }
    for module in modules.values():
        module.load_state_dict(reference.state_dict())
    return {name: modules[name] for name in contenders(cell)}


@contextlib.contextmanager
def without_onednn():
    """torch with oneDNN off, so that its LSTM runs ATen's loop of ops."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "TF32 acceleration on top of oneDNN", UserWarning)
        with torch.backends.mkldnn.flags(enabled=False):
            yield


def step_function(
    module: nn.Module, x: torch.Tensor, backward: bool, native: bool = False
) -> Callable[[], None]:
    """One iteration: forward under no_grad, or forward and backward of a loss on the output
    and the final state; `native`: with oneDNN off."""

    def forward_only() -> None:
        with torch.no_grad():
            module(x)

    def forward_backward() -> None:
        output, state = module(x)  # (T, B, H) or packed (N, H); (L, B, H) or (h_n, c_n)
        steps = output.data if isinstance(output, PackedSequence) else output
        states = state if isinstance(state, tuple) else (state,)
        (steps.sum() + sum(s.sum() for s in states)).backward()

    step = forward_backward if backward else forward_only
    if not native:
        return step

    def natively() -> None:
        with without_onednn():
            step()

    return natively


def torch_path(cell: str, shape: Shape) -> str:
    """Which of torch's CPU implementations its module of `cell` runs at `shape` (float32)."""
    if cell == "lstm" and not shape.packed and torch.backends.mkldnn.is_available():
        return "oneDNN"
    return "ATen loop"


def time_interleaved(
    steps: dict[str, Callable[[], None]], rounds: int, min_seconds: float
) -> dict[str, float]:
    """Median over `rounds` of each step's mean seconds per call, contenders interleaved."""
    per_round = {}
    for name, step in steps.items():  # warm up, and size a round to about min_seconds
        step()
        start = time.perf_counter()
        step()
        per_round[name] = max(1, int(min_seconds / max(time.perf_counter() - start, 1e-9)))
    samples: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            n = per_round[name]
            start = time.perf_counter()
            for _ in range(n):
                steps[name]()
            samples[name].append((time.perf_counter() - start) / n)
    return {name: statistics.median(s) for name, s in samples.items()}


def matmul_gflops(size: int = 1024, trials: int = 5, seconds: float = 0.1) -> float:
    """The machine's large-matmul rate, float32, at the current thread count: the best of
    `trials` short timings, since a ceiling is what the quietest moment shows."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(trials):
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            a @ b
            calls += 1
        best = max(best, 2 * size**3 * calls / (time.perf_counter() - start) / 1e9)
    return best


def make_input(shape: Shape) -> torch.Tensor | PackedSequence:
    """Random steps: (T, B, I), or a PackedSequence of B sequences of `shape.lengths()`."""
    if not shape.packed:
        return torch.randn(shape.steps, shape.batch, shape.input_size)  # (T, B, I)
    sequences = [torch.randn(n, shape.input_size) for n in shape.lengths()]  # (T_i, I) each
    return pack_sequence(sequences, enforce_sorted=False)  # (sum T_i, I) packed


def run_benchmark(
    shapes=SHAPES, cell: str = "rnn", rounds: int = 7, min_seconds: float = 0.1, log=print
) -> list[dict[str, object]]:
    """Time every contender of `cell` at every shape, forward and forward+backward; return the
    rows and print them as a table through `log`."""
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {', '.join(CELLS)}; got {cell!r}")
    names = contenders(cell)
    peak = matmul_gflops()
    log(
        f"{cell}: torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}, large-matmul peak {peak:.1f} GFLOP/s "
        f"(float32, 1024x1024)"
    )
    short = {
        "torch": "torch",
        "torch native": "native",
        "rnnlab-reference": "ref",
        "rnnlab": "rnnlab",
    }
    header = f"{'shape':<12} {'pass':<8} {'torch path':<10} " + " ".join(
        f"{short[n] + ' ms':>10}" for n in names
    )
    header += f" {'vs torch':>9}" + (f" {'vs native':>9}" if cell == "lstm" else "")
    header += f" {'GFLOP/s':>8} {'of peak':>8}"
    log(header)
    log("-" * len(header))
    rows = []
    for shape in shapes:
        modules = build_contenders(shape, cell)
        x = make_input(shape)
        for backward in (False, True):
            steps = {
                name: step_function(module, x, backward, native=name == "torch native")
                for name, module in modules.items()
            }
            seconds = time_interleaved(steps, rounds, min_seconds)
            gflops = shape.flops(backward, GATES[cell]) / seconds["rnnlab"] / 1e9
            row = {
                "cell": cell,
                "shape": shape.name,
                "pass": "fwd+bwd" if backward else "fwd",
                "torch path": torch_path(cell, shape),
                **{f"{name} ms": seconds[name] * 1e3 for name in names},
                "ratio": seconds["rnnlab"] / seconds["torch"],
                "gflops": gflops,
                "share_of_peak": gflops / peak,
            }
            if cell == "lstm":
                row["ratio_native"] = seconds["rnnlab"] / seconds["torch native"]
            rows.append(row)
            line = f"{shape.name:<12} {row['pass']:<8} {row['torch path']:<10} " + " ".join(
                f"{row[name + ' ms']:>10.2f}" for name in names
            )
            line += f" {row['ratio']:>8.2f}x"
            if cell == "lstm":
                line += f" {row['ratio_native']:>8.2f}x"
            log(f"{line} {gflops:>8.1f} {gflops / peak:>7.0%}")
    return rows
