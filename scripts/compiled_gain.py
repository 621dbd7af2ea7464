"""What the compiled loops (loops.cpp) gain over the same loops in Python (loops.py).

The fused RNN, GRU and LSTM run their serial loops from a C++ file built once per machine
(`rnnlab.nn.fused.compiled`); where it cannot be built they run loops.py, whose steps are torch
ops, with the same results. This script times rnnlab's fused module both ways in one process,
interleaved as `rnnlab bench` times its contenders, forward and forward+backward, and prints
the ratio (Python / compiled: above 1, the compiled loops pay):

    python scripts/compiled_gain.py                          # every cell, both shapes
    python scripts/compiled_gain.py --threads 1 --cell gru --shape lm-char

Nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch

from rnnlab.bench import (
    build_contenders,
    parse_timing_args,
    shape_named,
    step_function,
    time_interleaved,
)
from rnnlab.models import CELLS
from rnnlab.nn.fused import compiled


def in_python(step: Callable[[], None]) -> Callable[[], None]:
    """`step` with layer_loops() choosing loops.py, as it does where no compiler exists."""
    built = compiled.compiled_loops

    def run() -> None:
        compiled.compiled_loops = lambda: None
        try:
            step()
        finally:
            compiled.compiled_loops = built

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", action="append", choices=["mnist-rows", "lm-char"])
    parser.add_argument("--cell", action="append", choices=CELLS)
    args = parse_timing_args(parser, rounds=7)
    if compiled.compiled_loops() is None:
        parser.error("the compiled loops are not built here (no compiler, or RNNLAB_COMPILED=0)")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}"
    )
    print("cell | shape | pass | compiled ms | loops.py ms | loops.py / compiled")
    for cell in args.cell or CELLS:
        for name in args.shape or ["mnist-rows", "lm-char"]:
            shape = shape_named(name)
            module = build_contenders(shape, cell)["rnnlab"]
            x = torch.randn(shape.steps, shape.batch, shape.input_size)  # (T, B, I)
            for backward in (False, True):
                step = step_function(module, x, backward)
                ms = time_interleaved(
                    {"compiled": step, "python": in_python(step)}, args.rounds, 0.1
                )
                compiled_ms, python_ms = ms["compiled"] * 1e3, ms["python"] * 1e3
                print(
                    f"{cell} | {name} | {'fwd+bwd' if backward else 'forward'} | "
                    f"{compiled_ms:.2f} | {python_ms:.2f} | {python_ms / compiled_ms:.2f}x",
                    flush=True,
                )


if __name__ == "__main__":
    main()
