"""How close any exact RNN, GRU or LSTM can come to torch.nn's on this CPU: the matmul floor.

A layer of a cell with G gate blocks (1 for the Elman RNN, 3 for the GRU, 4 for the LSTM)
does, forwards, one input projection over all steps, (T*B, I) x (I, G*H), and then T - 1
recurrences h_{t-1} W_hh^T, (B, H) x (H, G*H), one after the other: step t needs h_{t-1} (the
first, from h_0 = 0, is free). Its backward does the same serial chain in reverse
(dh_{t-1} = dG_t W_hh) and the large matmuls of the weight gradients (dW_hh, dW_ih) and,
above the first layer, of the input gradient. This script issues exactly those matmuls, with
nothing else: no bias, no gates, no autograd, no copies. That is a floor no exact
implementation on the same BLAS can go under, and the script prints it beside torch.nn's
module (for the LSTM both its oneDNN kernel and its native loop) and rnnlab, timed
interleaved as `rnnlab bench` times them:

    python scripts/matmul_floor.py                       # the MNIST-rows shape, Elman RNN
    python scripts/matmul_floor.py --threads 1 --shape lm-char --cell lstm

If `floor / torch` is above a ratio asked of rnnlab, the ratio needs a faster matmul, not a
better kernel. Nothing here asserts a speed.
"""

from __future__ import annotations

import argparse

import torch

from rnnlab.bench import (
    SHAPES,
    Shape,
    build_contenders,
    contenders,
    parse_timing_args,
    shape_named,
    step_function,
    time_interleaved,
)
from rnnlab.models import CELLS, GATES


def floor_step(shape: Shape, backward: bool, gates: int = 1):
    """One call issuing only the matmuls of a forward (and backward) pass at `shape` of a
    cell with `gates` gate blocks."""
    t, b, h = shape.steps, shape.batch, shape.hidden_size
    g = gates * h  # the rows of every weight
    sizes = [shape.input_size] + [h] * (shape.layers - 1)  # each layer's input size
    inputs = [torch.randn(t * b, i) for i in sizes]  # (T*B, I_l)
    w_ih = [torch.randn(g, i) * 0.1 for i in sizes]  # (G*H, I_l)
    w_hh = torch.randn(g, h) * 0.1  # (G*H, H)
    state = torch.randn(b, h)  # (B, H)
    gate_grads = torch.randn(b, g)  # (B, G*H): one step's dG_t
    projected = torch.empty(t * b, g)  # (T*B, G*H)
    grads = torch.randn(t * b, g)  # (T*B, G*H) stands in for every step's dG_t
    hidden = torch.randn(t * b, h)  # (T*B, H) stands in for every step's h_{t-1}
    out, back = torch.empty(b, g), torch.empty(b, h)  # (B, G*H), (B, H)

    def run() -> None:
        for layer, (x, w) in enumerate(zip(inputs, w_ih, strict=True)):
            torch.mm(x, w.T, out=projected)  # (T*B, I) x (I, G*H): the input projection
            for _ in range(t - 1):
                torch.mm(state, w_hh.T, out=out)  # (B, H) x (H, G*H): the recurrence, serial
            if backward:
                for _ in range(t - 1):
                    torch.mm(gate_grads, w_hh, out=back)  # dh_{t-1} = dG_t W_hh, serial
                grads[b:].T @ hidden[b:]  # dW_hh = sum_{t>1} dG_t^T h_{t-1}: (G*H, (T-1)B) x ...
                grads.T @ x  # dW_ih = sum_t dG_t^T x_t: (G*H, T*B) x (T*B, I)
                if layer:  # the network's own input needs no gradient
                    grads @ w  # dx = dG W_ih: (T*B, G*H) x (G*H, I)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    names = [s.name for s in SHAPES if not s.packed]
    parser.add_argument("--shape", default="mnist-rows", choices=names, help="a bench shape")
    parser.add_argument("--cell", default="rnn", choices=CELLS, help="the recurrent cell")
    args = parse_timing_args(parser, rounds=9)
    shape = shape_named(args.shape)
    print(
        f"{shape}, {args.cell}\ntorch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}"
    )
    modules = build_contenders(shape, args.cell)
    x = torch.randn(shape.steps, shape.batch, shape.input_size)  # (T, B, I)
    timed = [name for name in contenders(args.cell) if name != "rnnlab-reference"]
    for backward in (False, True):
        steps = {
            name: step_function(modules[name], x, backward, native=name == "torch native")
            for name in timed
        }
        steps["matmul floor"] = floor_step(shape, backward, GATES[args.cell])
        ms = {k: v * 1e3 for k, v in time_interleaved(steps, args.rounds, 0.1).items()}
        others = ", ".join(
            f"{name} {ms[name]:.3f} ms ({ms['rnnlab'] / ms[name]:.2f}x)" for name in timed[:-1]
        )
        print(
            f"{'fwd+bwd' if backward else 'fwd':<8} rnnlab {ms['rnnlab']:.3f} ms, vs {others}; "
            f"matmul floor {ms['matmul floor']:.3f} ms: rnnlab at "
            f"{ms['rnnlab'] / ms['matmul floor']:.2f}x of it, torch at "
            f"{ms['torch'] / ms['matmul floor']:.2f}x"
        )


if __name__ == "__main__":
    main()
