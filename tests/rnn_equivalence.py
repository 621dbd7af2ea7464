"""Helpers of every equivalence test: a torch module and an rnnlab module with the same
weights (`rnn_pair`, `cell_pair`), run on the same inputs by `run_rnn` / `run_cell`, which
backpropagate a loss that touches every output, and compared by `assert_same`. Sizes are tiny
on purpose: the whole grid runs in seconds on two CPU cores."""

from __future__ import annotations

import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import rnnlab

IMPLS = ("fused", "reference")
DTYPES = (torch.float64, torch.float32)
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}

# Shared tiny sizes: steps, batch, input features, hidden units; all different, so that a
# mixed-up dimension cannot pass by coincidence.
T, B, I, H = 6, 4, 3, 5  # noqa: E741 (I is the input size, as in the equations)
# Unsorted, with a tie, and one sequence of the full length: packing with
# enforce_sorted=False must permute the batch (and h0) both ways.
LENGTHS = (3, 6, 1, 3)
SORTED_LENGTHS = (6, 3, 3, 1)


def rnn_pair(*args, impl: str = "fused", **kwargs) -> tuple[torch.nn.RNN, rnnlab.RNN]:
    """torch.nn.RNN(*args, **kwargs) and rnnlab.RNN(*args, **kwargs, impl=impl) holding the
    same weights, moved from torch's module to rnnlab's by a strict load_state_dict."""
    reference = torch.nn.RNN(*args, **kwargs)
    ours = rnnlab.RNN(*args, **kwargs, impl=impl)
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference, ours


def cell_pair(*args, **kwargs) -> tuple[torch.nn.RNNCell, rnnlab.RNNCell]:
    """torch.nn.RNNCell and rnnlab.RNNCell with the same weights."""
    reference = torch.nn.RNNCell(*args, **kwargs)
    ours = rnnlab.RNNCell(*args, **kwargs)
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference, ours


def fixed_weights(shape, dtype) -> torch.Tensor:
    """Random loss weights that depend only on the shape, so both modules see the same loss."""
    generator = torch.Generator().manual_seed(1234 + sum(shape))
    return torch.randn(shape, generator=generator, dtype=dtype)


def weighted_sum(t: torch.Tensor) -> torch.Tensor:
    """A scalar whose gradient with respect to t is a dense random tensor (not all ones, so a
    transposed or permuted gradient cannot pass by symmetry)."""
    return (t * fixed_weights(t.shape, t.dtype)).sum()


def run_rnn(module, x, h0=None, lengths=None, enforce_sorted=False) -> dict[str, object]:
    """Run `module` on fresh leaf copies of x (packed when `lengths` is given) and h0, and
    differentiate (output * r1).sum() + (h_n * r2).sum().

    **Returns** a dict: `output` (the PackedSequence's data when packed), `h_n`, `packed` (the
    PackedSequence or None), `grad_input`, `grad_h0` (when h0 is given) and `grad_<name>` for
    every parameter.
    """
    x = x.detach().clone().requires_grad_()
    leaves = {"input": x}
    if h0 is not None:
        h0 = h0.detach().clone().requires_grad_()
        leaves["h0"] = h0
    leaves.update(module.named_parameters())
    if lengths is not None:
        batch_first = module.batch_first
        inp = pack_padded_sequence(
            x, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=enforce_sorted
        )
    else:
        inp = x
    out, h_n = module(inp, h0)
    packed = out if isinstance(out, PackedSequence) else None
    output = out.data if packed is not None else out
    grads = torch.autograd.grad(weighted_sum(output) + weighted_sum(h_n), list(leaves.values()))
    result = {"output": output, "h_n": h_n, "packed": packed}
    result.update({f"grad_{name}": g for name, g in zip(leaves, grads, strict=True)})
    return result


def run_cell(cell, x, h=None) -> dict[str, torch.Tensor]:
    """Like `run_rnn` for a cell: `output`, `grad_input`, `grad_hx` (when given), `grad_<name>`."""
    x = x.detach().clone().requires_grad_()
    leaves = {"input": x}
    if h is not None:
        h = h.detach().clone().requires_grad_()
        leaves["hx"] = h
    leaves.update(cell.named_parameters())
    out = cell(x, h)
    grads = torch.autograd.grad(weighted_sum(out), list(leaves.values()))
    result = {"output": out}
    result.update({f"grad_{name}": g for name, g in zip(leaves, grads, strict=True)})
    return result


def assert_same(expected: dict, actual: dict, tol: float) -> None:
    """Every tensor of `actual` equals `expected`'s within `tol` (absolute); the same keys;
    packed outputs carry the same batch_sizes and permutations."""
    assert expected.keys() == actual.keys()
    for key, want in expected.items():
        got = actual[key]
        if key == "packed":
            assert (want is None) == (got is None)
            if want is not None:
                assert_same_packing(want, got)
            continue
        assert got.shape == want.shape, key
        assert got.dtype == want.dtype, key
        torch.testing.assert_close(got, want, atol=tol, rtol=0, msg=lambda m, k=key: f"{k}: {m}")


def assert_same_packing(want: PackedSequence, got: PackedSequence) -> None:
    assert isinstance(got, PackedSequence)
    assert torch.equal(got.batch_sizes, want.batch_sizes)
    for name in ("sorted_indices", "unsorted_indices"):
        w, g = getattr(want, name), getattr(got, name)
        assert (w is None) == (g is None), name
        if w is not None:
            assert torch.equal(g, w), name


def assert_gradients_flow(result: dict) -> None:
    """Guard against vacuous equality: every gradient has a non-zero entry."""
    grads = {k: v for k, v in result.items() if k.startswith("grad_")}
    assert grads
    for key, g in grads.items():
        assert g is not None, key
        assert g.abs().sum() > 0, f"{key} is all zero"


def random_input(batch_first: bool, dtype, steps=T, batch=B, features=I) -> torch.Tensor:
    """A padded batch, (B, T, F) when batch_first else (T, B, F)."""
    shape = (batch, steps, features) if batch_first else (steps, batch, features)
    return torch.randn(shape, dtype=dtype)
