"""A short, prepared check of rnnlab's fused RNN, GRU and LSTM against torch.nn's (cuDNN) on a
GPU.

For a session that is lent a device: `python scripts/gpu_check.py` (src on PYTHONPATH, or
rnnlab installed) prints, per cell and shape, the largest difference of output, final state
and every gradient between rnnlab and torch with the same weights (relative to each tensor's
largest value), and the milliseconds per iteration of both, forward and forward+backward,
timed with CUDA events. Without a GPU it runs the same on the CPU (a smoke test of the script;
the CPU figures belong to `rnnlab bench`). `--cell gru` checks one cell only.
"""

from __future__ import annotations

import argparse
import time

import torch

from rnnlab.bench import step_function
from rnnlab.models import CELLS, MODULES

SHAPES = (  # (B, T, I, H, L)
    (64, 28, 28, 128, 3),
    (128, 28, 28, 256, 1),
    (16, 784, 1, 128, 1),
    (256, 100, 64, 512, 2),
)


def pair(cell: str, shape, device):
    """torch.nn's module of `cell` and rnnlab's with the same weights, on `device`."""
    _, _, i, h, layers = shape
    ours_cls, theirs_cls = MODULES[cell]
    torch.manual_seed(0)
    theirs = theirs_cls(i, h, layers).to(device)
    ours = ours_cls(i, h, layers).to(device)
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


def results(rnn, x):
    """Output, final state and the gradients of input and parameters, for one weighted loss."""
    x = x.detach().requires_grad_()
    output, state = rnn(x)  # (T, B, H), (L, B, H) or an LSTM's pair of them
    state = state if isinstance(state, tuple) else (state,)
    weights = torch.linspace(-1, 1, output.numel(), device=x.device).view_as(output)
    ((output * weights).sum() + sum(s.pow(2).sum() for s in state)).backward()
    grads = [x.grad] + [p.grad for p in rnn.parameters()]
    rnn.zero_grad(set_to_none=True)
    return [output.detach(), *(s.detach() for s in state), *grads]


def milliseconds(step, device, iterations=20) -> float:
    for _ in range(3):
        step()
    if device.type != "cuda":
        start = time.perf_counter()
        for _ in range(iterations):
            step()
        return (time.perf_counter() - start) / iterations * 1e3
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    begin.record()
    for _ in range(iterations):
        step()
    end.record()
    torch.cuda.synchronize()
    return begin.elapsed_time(end) / iterations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20, help="timed iterations (default 20)")
    parser.add_argument(
        "--cell", action="append", choices=CELLS, help="check this cell (repeatable); default all"
    )
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (no GPU: smoke test)"
    print(f"torch {torch.__version__}, {name}, cuDNN {torch.backends.cudnn.version()}")
    print(
        f"{'cell':<5} {'B, T, I, H, L':<22} {'max rel diff':>12} {'pass':<8} {'torch ms':>9} "
        f"{'rnnlab ms':>10}"
    )
    for cell, shape in ((c, s) for c in args.cell or CELLS for s in SHAPES):
        b, t, i, _, _ = shape
        theirs, ours = pair(cell, shape, device)
        x = torch.randn(t, b, i, device=device)  # (T, B, I)
        reference, candidate = results(theirs, x), results(ours, x)
        diff = max(  # relative to the largest value of each tensor
            ((a - c).abs().max() / a.abs().max().clamp_min(1e-30)).item()
            for a, c in zip(reference, candidate, strict=True)
        )
        for backward in (False, True):
            times = [
                milliseconds(step_function(rnn, x, backward), device, args.iterations)
                for rnn in (theirs, ours)
            ]
            label = "fwd+bwd" if backward else "fwd"
            print(
                f"{cell:<5} {shape!s:<22} {diff:>12.2e} {label:<8} {times[0]:>9.3f} "
                f"{times[1]:>10.3f}"
            )


if __name__ == "__main__":
    main()
