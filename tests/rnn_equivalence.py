"""Helpers of every equivalence test: a torch module and an rnnlab module of the same cell with
the same weights (`pair`, `rnn_pair`, `cell_pair`), run on the same inputs by `run_rnn` /
`run_cell`, which backpropagate a loss that touches every output, and compared by
`assert_same`. Sizes are tiny on purpose: the whole grid runs in seconds on two CPU cores."""

from __future__ import annotations

import contextlib
import warnings

import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import rnnlab

IMPLS = ("fused", "reference")
DTYPES = (torch.float64, torch.float32)
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}

# Shared tiny sizes: steps, batch, input features, hidden units, an LSTM's projection; all
# different, so that a mixed-up dimension cannot pass by coincidence.
T, B, I, H, P = 6, 4, 3, 5, 2  # noqa: E741 (I is the input size, as in the equations)
# Unsorted, with a tie, and one sequence of the full length: packing with
# enforce_sorted=False must permute the batch (and h0) both ways.
LENGTHS = (3, 6, 1, 3)
SORTED_LENGTHS = (6, 3, 3, 1)

# Every cell the modules offer: (torch's class, rnnlab's class, the arguments that make it).
CELLS = {
    "rnn_tanh": (torch.nn.RNN, rnnlab.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (torch.nn.RNN, rnnlab.RNN, {"nonlinearity": "relu"}),
    "gru": (torch.nn.GRU, rnnlab.GRU, {}),
    "lstm": (torch.nn.LSTM, rnnlab.LSTM, {}),
    "lstm_proj": (torch.nn.LSTM, rnnlab.LSTM, {"proj_size": P}),
}
CELL_CLASSES = {  # the single-step cells: torch's class and rnnlab's
    "rnn": (torch.nn.RNNCell, rnnlab.RNNCell),
    "gru": (torch.nn.GRUCell, rnnlab.GRUCell),
    "lstm": (torch.nn.LSTMCell, rnnlab.LSTMCell),
}


def pair(cell: str, *args, impl: str = "fused", **kwargs):
    """torch's module of `cell` (a key of CELLS) and rnnlab's, built with the same arguments,
    holding the same weights, moved from torch's module to rnnlab's by a strict
    load_state_dict."""
    theirs_cls, ours_cls, cell_kwargs = CELLS[cell]
    reference = theirs_cls(*args, **cell_kwargs, **kwargs)
    ours = ours_cls(*args, **cell_kwargs, **kwargs, impl=impl)
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference, ours


def rnn_pair(*args, impl: str = "fused", **kwargs) -> tuple[torch.nn.RNN, rnnlab.RNN]:
    """torch.nn.RNN(*args, **kwargs) and rnnlab.RNN(*args, **kwargs, impl=impl) holding the
    same weights."""
    reference = torch.nn.RNN(*args, **kwargs)
    ours = rnnlab.RNN(*args, **kwargs, impl=impl)
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference, ours


def cell_pair(*args, cell: str = "rnn", **kwargs):
    """torch's and rnnlab's single-step cell of `cell` (a key of CELL_CLASSES), built with the
    same arguments, holding the same weights."""
    theirs_cls, ours_cls = CELL_CLASSES[cell]
    reference = theirs_cls(*args, **kwargs)
    ours = ours_cls(*args, **kwargs)
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference, ours


def initial_state(module, batch: int | None, dtype=torch.float64, layers: int | None = None):
    """Random h0 for `module` ((D*L, B, H_out), or without B when `batch` is None), and for
    an LSTM (h0, c0)."""
    if layers is None:
        layers = module.num_layers * (2 if module.bidirectional else 1)
    lead = (layers,) if batch is None else (layers, batch)
    h_size = module.proj_size if getattr(module, "proj_size", 0) else module.hidden_size
    h0 = torch.randn(*lead, h_size, dtype=dtype)
    if isinstance(module, (torch.nn.LSTM, rnnlab.LSTM)):
        return h0, torch.randn(*lead, module.hidden_size, dtype=dtype)
    return h0


@contextlib.contextmanager
def native_torch():
    """torch with oneDNN off: its LSTM then runs ATen's own loop (as its GRU and RNN always
    do) instead of oneDNN's fused kernel, whose errors name oneDNN's internals."""
    with warnings.catch_warnings():
        # torch's notice, as the flag is set, that Intel GPUs could use TF32 here
        warnings.filterwarnings("ignore", "TF32 acceleration on top of oneDNN", UserWarning)
        with torch.backends.mkldnn.flags(enabled=False):
            yield


def fixed_weights(shape, dtype) -> torch.Tensor:
    """Random loss weights that depend only on the shape, so both modules see the same loss."""
    generator = torch.Generator().manual_seed(1234 + sum(shape))
    return torch.randn(shape, generator=generator, dtype=dtype)


def weighted_sum(t: torch.Tensor) -> torch.Tensor:
    """A scalar whose gradient with respect to t is a dense random tensor (not all ones, so a
    transposed or permuted gradient cannot pass by symmetry)."""
    return (t * fixed_weights(t.shape, t.dtype)).sum()


def as_tuple(state) -> tuple[torch.Tensor, ...]:
    return state if isinstance(state, tuple) else (state,)


STATE_NAMES = ("h0", "c0")
FINAL_NAMES = ("h_n", "c_n")


def run_rnn(module, x, h0=None, lengths=None, enforce_sorted=False) -> dict[str, object]:
    """Run `module` on fresh leaf copies of x (packed when `lengths` is given) and h0 (a
    tensor, or an LSTM's (h0, c0)), and differentiate (output * r1).sum() + (h_n * r2).sum()
    (+ (c_n * r3).sum()).

    **Returns** a dict: `output` (the PackedSequence's data when packed), `h_n` (and `c_n`),
    `packed` (the PackedSequence or None), `grad_input`, `grad_h0` (and `grad_c0`, when h0 is
    given) and `grad_<name>` for every parameter.
    """
    x = x.detach().clone().requires_grad_()
    leaves = {"input": x}
    if h0 is not None:
        state = tuple(s.detach().clone().requires_grad_() for s in as_tuple(h0))
        leaves.update(zip(STATE_NAMES, state, strict=False))
        h0 = state if isinstance(h0, tuple) else state[0]
    leaves.update(module.named_parameters())
    if lengths is not None:
        batch_first = module.batch_first
        inp = pack_padded_sequence(
            x, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=enforce_sorted
        )
    else:
        inp = x
    out, state_n = module(inp, h0)
    packed = out if isinstance(out, PackedSequence) else None
    output = out.data if packed is not None else out
    finals = dict(zip(FINAL_NAMES, as_tuple(state_n), strict=False))
    loss = weighted_sum(output) + sum(weighted_sum(s) for s in finals.values())
    grads = torch.autograd.grad(loss, list(leaves.values()))
    result = {"output": output, **finals, "packed": packed}
    result.update({f"grad_{name}": g for name, g in zip(leaves, grads, strict=True)})
    return result


def run_cell(cell, x, h=None) -> dict[str, torch.Tensor]:
    """Like `run_rnn` for a cell: `output` (and an LSTM cell's `c`), `grad_input`, `grad_hx`
    (and `grad_cx`, when given), `grad_<name>`."""
    x = x.detach().clone().requires_grad_()
    leaves = {"input": x}
    if h is not None:
        state = tuple(s.detach().clone().requires_grad_() for s in as_tuple(h))
        leaves.update(zip(("hx", "cx"), state, strict=False))
        h = state if isinstance(h, tuple) else state[0]
    leaves.update(cell.named_parameters())
    outs = dict(zip(("output", "c"), as_tuple(cell(x, h)), strict=False))
    grads = torch.autograd.grad(sum(weighted_sum(o) for o in outs.values()), list(leaves.values()))
    result = dict(outs)
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
