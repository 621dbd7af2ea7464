"""How close any exact RNN can come to torch.nn.RNN on this CPU: the matmul floor of a shape.

An RNN layer's forward does one input projection over all steps, (T*B, I) x (I, H), and then
T - 1 recurrences h_{t-1} W_hh^T, (B, H) x (H, H), one after the other: step t needs h_{t-1}
(the first, from h_0 = 0, is free). Its backward does the same serial chain in reverse
(dh_{t-1} = da_t W_hh) and the large matmuls of the weight gradients (dW_hh, dW_ih) and, above
the first layer, of the input gradient. This script issues exactly those matmuls, with nothing
else: no bias, no tanh, no autograd, no copies. That is a floor no exact implementation on the
same BLAS can go under, and the script prints it beside torch.nn.RNN and rnnlab, timed
interleaved as `rnnlab bench` times them:

    python scripts/matmul_floor.py                       # the MNIST-rows shape, torch's threads
    python scripts/matmul_floor.py --threads 1 --shape lm-char

If `floor / torch` is above a ratio asked of rnnlab, the ratio needs a faster matmul, not a
better RNN kernel. Nothing here asserts a speed.
"""

from __future__ import annotations

import argparse

import torch

from rnnlab.bench import SHAPES, Shape, build_contenders, step_function, time_interleaved


def floor_step(shape: Shape, backward: bool):
    """One call issuing only the matmuls of a forward (and backward) pass at `shape`."""
    t, b, h = shape.steps, shape.batch, shape.hidden_size
    sizes = [shape.input_size] + [h] * (shape.layers - 1)  # each layer's input size
    inputs = [torch.randn(t * b, i) for i in sizes]  # (T*B, I_l)
    w_ih = [torch.randn(h, i) * 0.1 for i in sizes]  # (H, I_l)
    w_hh = torch.randn(h, h) * 0.1  # (H, H)
    state = torch.randn(b, h)  # (B, H)
    projected = torch.empty(t * b, h)  # (T*B, H)
    grads = torch.randn(t * b, h)  # (T*B, H) stands in for every step's da_t
    out = torch.empty(b, h)  # (B, H)

    def run() -> None:
        for layer, (x, w) in enumerate(zip(inputs, w_ih, strict=True)):
            torch.mm(x, w.T, out=projected)  # (T*B, I) x (I, H): the input projection
            for _ in range(t - 1):
                torch.mm(state, w_hh.T, out=out)  # (B, H) x (H, H): the recurrence, serial
            if backward:
                for _ in range(t - 1):
                    torch.mm(state, w_hh, out=out)  # dh_{t-1} = da_t W_hh, serial
                grads[b:].T @ grads[b:]  # dW_hh = sum_{t>1} da_t^T h_{t-1}: (H, (T-1)B) x ...
                grads.T @ x  # dW_ih = sum_t da_t^T x_t: (H, T*B) x (T*B, I)
                if layer:  # the network's own input needs no gradient
                    grads @ w  # dx = da W_ih: (T*B, H) x (H, I)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    names = [s.name for s in SHAPES if not s.packed]
    parser.add_argument("--shape", default="mnist-rows", choices=names, help="a bench shape")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: torch's own")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved timing rounds")
    args = parser.parse_args()
    if args.threads < 0:
        parser.error(f"--threads must be 0 (torch's own) or more, got {args.threads}")
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.threads:
        torch.set_num_threads(args.threads)
    shape = next(s for s in SHAPES if s.name == args.shape)
    print(
        f"{shape}\ntorch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}"
    )
    modules = build_contenders(shape)
    x = torch.randn(shape.steps, shape.batch, shape.input_size)  # (T, B, I)
    for backward in (False, True):
        steps = {
            "torch": step_function(modules["torch"], x, backward),
            "rnnlab": step_function(modules["rnnlab"], x, backward),
            "matmul floor": floor_step(shape, backward),
        }
        ms = {k: v * 1e3 for k, v in time_interleaved(steps, args.rounds, 0.1).items()}
        print(
            f"{'fwd+bwd' if backward else 'fwd':<8} torch {ms['torch']:.3f} ms, rnnlab "
            f"{ms['rnnlab']:.3f} ms ({ms['rnnlab'] / ms['torch']:.2f}x), matmul floor "
            f"{ms['matmul floor']:.3f} ms ({ms['matmul floor'] / ms['torch']:.2f}x of torch)"
        )


if __name__ == "__main__":
    main()
