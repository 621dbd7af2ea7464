"""rnnlab.RNNCell, GRUCell and LSTMCell against torch.nn's: signature, parameters,
initialisation, values, gradients and errors; each cell unrolled equals its multi-layer module;
plus the tutorial's observation that the Elman cell's two linear maps are one."""

from __future__ import annotations

import copy
import inspect

import pytest
import torch

import rnnlab
from rnn_equivalence import (
    CELL_CLASSES,
    DTYPES,
    TOLERANCE,
    B,
    H,
    I,
    T,
    assert_gradients_flow,
    assert_same,
    cell_pair,
    run_cell,
)


@pytest.mark.parametrize("cell", CELL_CLASSES)
def test_cell_signature_matches_torch(cell):
    theirs_cls, ours_cls = CELL_CLASSES[cell]
    theirs = inspect.signature(theirs_cls.__init__).parameters.values()
    ours = inspect.signature(ours_cls.__init__).parameters.values()
    assert [(p.name, p.default, p.kind) for p in ours] == [
        (p.name, p.default, p.kind) for p in theirs
    ]


def test_cell_positional_arguments_in_torch_order():
    theirs = torch.nn.RNNCell(I, H, False, "relu", "cpu", torch.float64)
    ours = rnnlab.RNNCell(I, H, False, "relu", "cpu", torch.float64)
    for name in ("input_size", "hidden_size", "bias", "nonlinearity"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert ours.weight_ih.dtype == torch.float64
    assert ours.bias_ih is None and ours.bias_hh is None
    for cell in ("gru", "lstm"):
        theirs_cls, ours_cls = CELL_CLASSES[cell]
        theirs, ours = (
            theirs_cls(I, H, False, "cpu", torch.float64),
            ours_cls(I, H, False, "cpu", torch.float64),
        )
        assert (ours.input_size, ours.hidden_size, ours.bias) == (
            theirs.input_size,
            theirs.hidden_size,
            False,
        )
        assert ours.weight_hh.dtype == torch.float64 and ours.bias_hh is None


@pytest.mark.parametrize("bias", (True, False), ids=("bias", "no_bias"))
@pytest.mark.parametrize("cell", CELL_CLASSES)
def test_cell_parameters_and_initialisation_equal_torch(cell, bias):
    theirs_cls, ours_cls = CELL_CLASSES[cell]
    torch.manual_seed(11)
    theirs = theirs_cls(I, H, bias)
    torch.manual_seed(11)
    ours = ours_cls(I, H, bias)
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [
        (n, p.shape) for n, p in theirs.named_parameters()
    ]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(p, q)
    assert torch.cat([p.flatten() for p in ours.parameters()]).std() > 0.1
    # and back: torch's cell loads rnnlab's weights under the same names
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(1.0)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(p, q)


CELL_KINDS = {  # the cells with their arguments: the Elman cell's two activations, GRU, LSTM
    "rnn_tanh": ("rnn", {"nonlinearity": "tanh"}),
    "rnn_relu": ("rnn", {"nonlinearity": "relu"}),
    "gru": ("gru", {}),
    "lstm": ("lstm", {}),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind", CELL_KINDS)
@pytest.mark.parametrize("bias", (True, False), ids=("bias", "no_bias"))
@pytest.mark.parametrize("with_hx", (True, False), ids=("hx", "no_hx"))
@pytest.mark.parametrize("batched", (True, False), ids=("batched", "unbatched"))
def test_cell_matches_torch(batched, with_hx, bias, kind, dtype):
    cell, kwargs = CELL_KINDS[kind]
    theirs, ours = cell_pair(I, H, bias, cell=cell, dtype=dtype, **kwargs)
    x = torch.randn((B, I) if batched else (I,), dtype=dtype)
    hx = None
    if with_hx:
        states = [torch.randn((B, H) if batched else (H,), dtype=dtype) for _ in range(2)]
        hx = tuple(states) if cell == "lstm" else states[0]
    expected, actual = run_cell(theirs, x, hx), run_cell(ours, x, hx)
    assert_same(expected, actual, TOLERANCE[dtype])
    # Every parameter, the input and hx (when given) were compared.
    grads = {k: v for k, v in actual.items() if k.startswith("grad_")}
    wanted = {"grad_input"} | {f"grad_{name}" for name, _ in ours.named_parameters()}
    given = {"grad_hx", "grad_cx"} if cell == "lstm" else {"grad_hx"}
    assert grads.keys() == wanted | (given if with_hx else set())
    if not with_hx:  # from hx = 0, W_hh gets no gradient, as in torch; everything else must
        assert grads.pop("grad_weight_hh").abs().sum() == 0
    assert_gradients_flow(grads)
    assert actual["output"].shape == ((B, H) if batched else (H,))


CELL_BAD_CALLS = {
    "input_wrong_features": (torch.randn(B, I + 1), None),
    "unbatched_input_wrong_features": (torch.randn(I + 1), None),
    "hx_wrong_batch": (torch.randn(B, I), torch.randn(B + 1, H)),
    "hx_wrong_hidden": (torch.randn(B, I), torch.randn(B, H + 1)),
    "hx_1d_for_batched": (torch.randn(B, I), torch.randn(H)),
    "hx_2d_for_unbatched": (torch.randn(I), torch.randn(2, H)),
    "hx_wrong_hidden_unbatched": (torch.randn(I), torch.randn(H + 1)),
    "input_3d": (torch.randn(B, I, 1), None),
    "input_0d": (torch.tensor(1.0), None),
    "hx_3d": (torch.randn(B, I), torch.randn(1, B, H)),
    "input_float64": (torch.randn(B, I, dtype=torch.float64), None),
    "hx_float64": (torch.randn(B, I), torch.randn(B, H, dtype=torch.float64)),
}


LSTM_CELL_BAD_CALLS = {
    "c_wrong_hidden": (torch.randn(B, I), (torch.randn(B, H), torch.randn(B, H + 1))),
    "c_wrong_batch": (torch.randn(B, I), (torch.randn(B, H), torch.randn(B + 1, H))),
    "hx_a_tensor": (torch.randn(B, I), torch.randn(B, H)),
    "one_state": (torch.randn(B, I), (torch.randn(B, H),)),
    "three_states": (torch.randn(B, I), (torch.randn(B, H),) * 3),
    "c_3d": (torch.randn(B, I), (torch.randn(B, H), torch.randn(1, B, H))),
}


def as_cell_state(cell: str, hx):
    """A bad call's hx for `cell`: the LSTM cell gets (hx, a matching c) for a tensor."""
    if cell != "lstm" or hx is None:
        return hx
    return hx, torch.randn(hx.shape, dtype=hx.dtype)


@pytest.mark.parametrize(
    ("cell", "case"),
    [(cell, case) for cell in CELL_CLASSES for case in CELL_BAD_CALLS]
    + [("lstm", case) for case in LSTM_CELL_BAD_CALLS],
)
def test_cell_rejects_bad_input_like_torch(cell, case):
    theirs, ours = cell_pair(I, H, cell=cell)
    if case in LSTM_CELL_BAD_CALLS:
        x, hx = LSTM_CELL_BAD_CALLS[case]
    else:
        x, hx = CELL_BAD_CALLS[case]
        hx = as_cell_state(cell, hx)
    with pytest.raises(Exception) as want:
        theirs(x, hx)
    with pytest.raises(Exception) as got:
        ours(x, hx)
    assert got.type is want.type, f"torch: {want.value!r}, rnnlab: {got.value!r}"
    assert str(got.value) == str(want.value)


def test_cell_refuses_unknown_nonlinearity_when_called_like_torch():
    theirs = torch.nn.RNNCell(I, H, nonlinearity="sigmoid")  # accepted, as by torch
    ours = rnnlab.RNNCell(I, H, nonlinearity="sigmoid")
    x = torch.randn(B, I)
    with pytest.raises(RuntimeError) as want:
        theirs(x)
    with pytest.raises(RuntimeError) as got:
        ours(x)
    assert str(got.value) == str(want.value)


@pytest.mark.parametrize(
    ("cell", "kwargs"),
    [
        ("rnn", dict()),
        ("rnn", dict(bias=False)),
        ("rnn", dict(nonlinearity="relu")),
        ("rnn", dict(bias=False, nonlinearity="relu")),
        ("gru", dict()),
        ("gru", dict(bias=False)),
        ("lstm", dict()),
        ("lstm", dict(bias=False)),
    ],
    ids=lambda value: (",".join(value) or "defaults") if isinstance(value, dict) else value,
)
def test_cell_repr_matches_torch(cell, kwargs):
    theirs_cls, ours_cls = CELL_CLASSES[cell]
    assert repr(ours_cls(I, H, **kwargs)) == repr(theirs_cls(I, H, **kwargs))


@pytest.mark.parametrize("cell", CELL_CLASSES)
def test_cell_double_and_deepcopy(cell):
    theirs, ours = cell_pair(I, H, cell=cell)
    theirs, ours = theirs.double(), ours.double()
    x = torch.randn(B, I, dtype=torch.float64)
    assert_same(run_cell(theirs, x), run_cell(ours, x), TOLERANCE[torch.float64])
    clone = copy.deepcopy(ours)
    first = lambda out: out[0] if isinstance(out, tuple) else out  # noqa: E731
    assert torch.equal(first(clone(x)), first(ours(x)))
    with torch.no_grad():
        clone.weight_ih.zero_()
    assert not torch.equal(first(clone(x)), first(ours(x)))


@pytest.mark.parametrize("nonlinearity", ("tanh", "relu"))
def test_cell_two_linear_maps_are_one(nonlinearity):
    """W_hh h + W_ih x = [W_hh W_ih] [h; x]: one matmul with the concatenated weights gives the
    cell's next hidden state."""
    cell = rnnlab.RNNCell(I, H, nonlinearity=nonlinearity, dtype=torch.float64)
    x = torch.randn(B, I, dtype=torch.float64)
    h = torch.randn(B, H, dtype=torch.float64)
    act = torch.tanh if nonlinearity == "tanh" else torch.relu
    W = torch.cat([cell.weight_hh, cell.weight_ih], dim=1)  # (H, H + I)
    hx = torch.cat([h, x], dim=1)  # (B, H + I)
    h_next = act(hx @ W.T + cell.bias_ih + cell.bias_hh)  # (B, H)
    assert W.shape == (H, H + I)
    torch.testing.assert_close(h_next, cell(x, h), atol=1e-12, rtol=0)
    # Column by column, the same thing: [W_hh W_ih] [h; x] is one vector per example.
    for b in range(B):
        column = W @ torch.cat([h[b], x[b]])  # (H,)
        torch.testing.assert_close(
            act(column + cell.bias_ih + cell.bias_hh), cell(x[b], h[b]), atol=1e-12, rtol=0
        )
    assert not torch.allclose(h_next, act(x @ cell.weight_ih.T))  # h really contributed


@pytest.mark.parametrize(
    ("module", "cell"), [(rnnlab.RNN, "rnn"), (rnnlab.GRU, "gru"), (rnnlab.LSTM, "lstm")]
)
def test_cell_unrolled_over_time_equals_rnn_layer(module, cell):
    """The module is the cell applied step after step with the layer's weights."""
    rnn = module(I, H, dtype=torch.float64)
    step = CELL_CLASSES[cell][1](I, H, dtype=torch.float64)
    step.load_state_dict({name[: -len("_l0")]: p for name, p in rnn.state_dict().items()})
    x = torch.randn(T, B, I, dtype=torch.float64)
    state = tuple(torch.randn(B, H, dtype=torch.float64) for _ in range(2 if cell == "lstm" else 1))
    output, state_n = rnn(
        x, tuple(s.unsqueeze(0) for s in state) if cell == "lstm" else state[0].unsqueeze(0)
    )
    for t in range(T):
        out = step(x[t], state if cell == "lstm" else state[0])
        state = out if cell == "lstm" else (out,)
        torch.testing.assert_close(output[t], state[0], atol=1e-12, rtol=0)
    for got, want in zip(state_n if cell == "lstm" else (state_n,), state, strict=True):
        torch.testing.assert_close(got[0], want, atol=1e-12, rtol=0)


def test_cell_never_calls_torch_rnn_cell_kernels(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a torch RNN kernel was called")

    for name in ("rnn_tanh_cell", "rnn_relu_cell", "gru_cell", "lstm_cell"):
        monkeypatch.setattr(torch._VF, name, forbidden)
        monkeypatch.setattr(torch, name, forbidden)
    for theirs_cls, _ in CELL_CLASSES.values():  # the patch bites
        with pytest.raises(AssertionError, match="torch RNN kernel"):
            theirs_cls(I, H)(torch.randn(B, I))
    states = (torch.randn(B, H), torch.randn(B, H))
    for cell, hx in (
        (rnnlab.RNNCell(I, H), states[0]),
        (rnnlab.RNNCell(I, H, nonlinearity="relu"), states[0]),
        (rnnlab.GRUCell(I, H), states[0]),
        (rnnlab.LSTMCell(I, H), states),
    ):
        assert_gradients_flow(run_cell(cell, torch.randn(B, I), hx))
