"""A short, prepared check of rnnlab's fused path against torch.nn.RNN (cuDNN) on a GPU.

For a session that is lent a device: `python scripts/gpu_check.py` (src on PYTHONPATH, or
rnnlab installed) prints, per shape, the largest difference of output, h_n and every
gradient between rnnlab and torch with the same weights (relative to each tensor's largest
value), and the milliseconds per iteration
of both, forward and forward+backward, timed with CUDA events. Without a GPU it runs the same
on the CPU (a smoke test of the script; the CPU figures belong to `rnnlab bench`).
"""

from __future__ import annotations

import argparse
import time

import torch

import rnnlab
from rnnlab.bench import step_function

SHAPES = (  # (B, T, I, H, L)
    (64, 28, 28, 128, 3),
    (128, 28, 28, 256, 1),
    (16, 784, 1, 128, 1),
    (256, 100, 64, 512, 2),
)


def pair(shape, device):
    """torch.nn.RNN and rnnlab.RNN with the same weights, on `device`."""
    _, _, i, h, layers = shape
    torch.manual_seed(0)
    theirs = torch.nn.RNN(i, h, layers).to(device)
    ours = rnnlab.RNN(i, h, layers).to(device)
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


def results(rnn, x):
    """Output, h_n and the gradients of input and parameters, for one weighted loss."""
    x = x.detach().requires_grad_()
    output, h_n = rnn(x)  # (T, B, H), (L, B, H)
    weights = torch.linspace(-1, 1, output.numel(), device=x.device).view_as(output)
    ((output * weights).sum() + h_n.pow(2).sum()).backward()
    grads = [x.grad] + [p.grad for p in rnn.parameters()]
    rnn.zero_grad(set_to_none=True)
    return [output.detach(), h_n.detach(), *grads]


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
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (no GPU: smoke test)"
    print(f"torch {torch.__version__}, {name}, cuDNN {torch.backends.cudnn.version()}")
    print(
        f"{'B, T, I, H, L':<22} {'max rel diff':>12} {'pass':<8} {'torch ms':>9} {'rnnlab ms':>10}"
    )
    for shape in SHAPES:
        b, t, i, _, _ = shape
        theirs, ours = pair(shape, device)
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
            print(f"{shape!s:<22} {diff:>12.2e} {label:<8} {times[0]:>9.3f} {times[1]:>10.3f}")


if __name__ == "__main__":
    main()
