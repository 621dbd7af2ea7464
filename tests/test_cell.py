"""rnnlab.RNNCell against torch.nn.RNNCell: signature, parameters, initialisation, values,
gradients and errors; plus the tutorial's observation that the cell's two linear maps are one."""

from __future__ import annotations

import copy
import inspect

import pytest
import torch

import rnnlab
from rnn_equivalence import (
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


def test_cell_signature_matches_torch():
    theirs = inspect.signature(torch.nn.RNNCell.__init__).parameters.values()
    ours = inspect.signature(rnnlab.RNNCell.__init__).parameters.values()
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


@pytest.mark.parametrize("bias", (True, False), ids=("bias", "no_bias"))
def test_cell_parameters_and_initialisation_equal_torch(bias):
    torch.manual_seed(11)
    theirs = torch.nn.RNNCell(I, H, bias)
    torch.manual_seed(11)
    ours = rnnlab.RNNCell(I, H, bias)
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


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("nonlinearity", ("tanh", "relu"))
@pytest.mark.parametrize("bias", (True, False), ids=("bias", "no_bias"))
@pytest.mark.parametrize("with_hx", (True, False), ids=("hx", "no_hx"))
@pytest.mark.parametrize("batched", (True, False), ids=("batched", "unbatched"))
def test_cell_matches_torch(batched, with_hx, bias, nonlinearity, dtype):
    theirs, ours = cell_pair(I, H, bias, nonlinearity, dtype=dtype)
    x = torch.randn((B, I) if batched else (I,), dtype=dtype)
    hx = torch.randn((B, H) if batched else (H,), dtype=dtype) if with_hx else None
    expected, actual = run_cell(theirs, x, hx), run_cell(ours, x, hx)
    assert_same(expected, actual, TOLERANCE[dtype])
    # Every parameter, the input and hx (when given) were compared.
    grads = {k: v for k, v in actual.items() if k.startswith("grad_")}
    wanted = {"grad_input"} | {f"grad_{name}" for name, _ in ours.named_parameters()}
    assert grads.keys() == wanted | ({"grad_hx"} if with_hx else set())
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


@pytest.mark.parametrize("case", CELL_BAD_CALLS.values(), ids=CELL_BAD_CALLS.keys())
def test_cell_rejects_bad_input_like_torch(case):
    theirs, ours = cell_pair(I, H)
    x, hx = case
    with pytest.raises(Exception) as want:
        theirs(x, hx)
    with pytest.raises(Exception) as got:
        ours(x, hx)
    assert got.type is want.type, f"torch: {want.value!r}, rnnlab: {got.value!r}"


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
    "kwargs",
    [dict(), dict(bias=False), dict(nonlinearity="relu"), dict(bias=False, nonlinearity="relu")],
    ids=lambda kwargs: ",".join(kwargs) or "defaults",
)
def test_cell_repr_matches_torch(kwargs):
    assert repr(rnnlab.RNNCell(I, H, **kwargs)) == repr(torch.nn.RNNCell(I, H, **kwargs))


def test_cell_double_and_deepcopy():
    theirs, ours = cell_pair(I, H)
    theirs, ours = theirs.double(), ours.double()
    x = torch.randn(B, I, dtype=torch.float64)
    assert_same(run_cell(theirs, x), run_cell(ours, x), TOLERANCE[torch.float64])
    clone = copy.deepcopy(ours)
    assert torch.equal(clone(x), ours(x))
    with torch.no_grad():
        clone.weight_ih.zero_()
    assert not torch.equal(clone(x), ours(x))


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


def test_cell_unrolled_over_time_equals_rnn_layer():
    """The RNN is the cell applied step after step with the layer's weights."""
    rnn = rnnlab.RNN(I, H, dtype=torch.float64)
    cell = rnnlab.RNNCell(I, H, dtype=torch.float64)
    cell.load_state_dict({name[: -len("_l0")]: p for name, p in rnn.state_dict().items()})
    x = torch.randn(T, B, I, dtype=torch.float64)
    h = torch.randn(B, H, dtype=torch.float64)
    output, h_n = rnn(x, h.unsqueeze(0))
    for t in range(T):
        h = cell(x[t], h)
        torch.testing.assert_close(output[t], h, atol=1e-12, rtol=0)
    torch.testing.assert_close(h_n[0], h, atol=1e-12, rtol=0)


def test_cell_never_calls_torch_rnn_cell_kernels(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a torch RNN kernel was called")

    for name in ("rnn_tanh_cell", "rnn_relu_cell"):
        monkeypatch.setattr(torch._VF, name, forbidden)
        monkeypatch.setattr(torch, name, forbidden)
    with pytest.raises(AssertionError, match="torch RNN kernel"):
        torch.nn.RNNCell(I, H)(torch.randn(B, I))  # the patch bites
    for nonlinearity in ("tanh", "relu"):
        result = run_cell(
            rnnlab.RNNCell(I, H, nonlinearity=nonlinearity), torch.randn(B, I), torch.randn(B, H)
        )
        assert_gradients_flow(result)
