"""rnnlab.init: identity_ (IRNN) and orthogonal_ set each gate block of every recurrent weight
W_hh, forget_bias_ an LSTM's forget-gate biases, on rnnlab's modules and torch's alike (Elman
RNN, GRU, LSTM, cells and stacks), and leave everything else alone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rnnlab
from rnn_equivalence import B, H, I, T

MODULES = {
    "rnnlab_rnn": lambda: rnnlab.RNN(I, H, 2, bidirectional=True),
    "rnnlab_cell": lambda: rnnlab.RNNCell(I, H),
    "torch_rnn": lambda: nn.RNN(I, H, 2, bidirectional=True),
    "torch_cell": lambda: nn.RNNCell(I, H),
    "nested": lambda: nn.Sequential(nn.Linear(I, I), rnnlab.RNN(I, H, 3)),
    "rnnlab_gru": lambda: rnnlab.GRU(I, H, 2, bidirectional=True),
    "rnnlab_lstm": lambda: rnnlab.LSTM(I, H, 2, bidirectional=True),
    "rnnlab_lstm_cell": lambda: rnnlab.LSTMCell(I, H),
    "torch_gru": lambda: nn.GRU(I, H, 2),
    "torch_lstm": lambda: nn.LSTM(I, H, 2),
    "torch_gru_cell": lambda: nn.GRUCell(I, H),
    "nested_lstm": lambda: nn.Sequential(nn.Linear(I, I), rnnlab.LSTM(I, H, 2)),
}


def blocks(w):
    """The gate blocks of a stacked recurrent weight: (G*H, H) -> G of (H, H)."""
    return w.split(H)


def recurrent(module):
    return {n: p for n, p in module.named_parameters() if n.split(".")[-1].startswith("weight_hh")}


def others(module):
    return {
        n: p.detach().clone()
        for n, p in module.named_parameters()
        if not n.split(".")[-1].startswith("weight_hh")
    }


@pytest.mark.parametrize("gain", (1.0, 0.5))
@pytest.mark.parametrize("make", MODULES.values(), ids=MODULES.keys())
def test_identity_sets_every_weight_hh_to_gain_times_identity(make, gain):
    module = make()
    untouched = others(module)
    assert rnnlab.init.identity_(module, gain=gain) is module
    weights = recurrent(module)
    assert weights
    for name, w in weights.items():
        for block in blocks(w):
            torch.testing.assert_close(block, gain * torch.eye(H), atol=0, rtol=0, msg=name)
    for name, p in module.named_parameters():
        if name in untouched:
            assert torch.equal(p, untouched[name]), f"{name} changed"


@pytest.mark.parametrize("make", MODULES.values(), ids=MODULES.keys())
def test_identity_zero_bias_zeroes_every_bias(make):
    module = make()
    weights_ih = {n: p.detach().clone() for n, p in module.named_parameters() if "weight_ih" in n}
    rnnlab.init.identity_(module, zero_bias=True)
    biases = {n: p for n, p in module.named_parameters() if n.split(".")[-1].startswith("bias_")}
    assert biases
    for name, b in biases.items():
        assert torch.count_nonzero(b) == 0, name
    for name, w in weights_ih.items():
        assert torch.equal(dict(module.named_parameters())[name], w), f"{name} changed"


def test_identity_keeps_biases_without_zero_bias():
    rnn = rnnlab.RNN(I, H, 2)
    biases = {n: p.detach().clone() for n, p in rnn.named_parameters() if "bias" in n}
    rnnlab.init.identity_(rnn)
    for name, b in biases.items():
        assert b.abs().sum() > 0
        assert torch.equal(getattr(rnn, name), b)


def test_identity_relu_rnn_carries_its_state_without_input(impl):
    """The point of IRNN: with W_hh = I, zero bias and zero input, a ReLU RNN holds a
    non-negative h0 unchanged at every step."""
    rnn = rnnlab.RNN(I, H, nonlinearity="relu", dtype=torch.float64, impl=impl)
    rnnlab.init.identity_(rnn, zero_bias=True)
    h0 = torch.rand(1, B, H, dtype=torch.float64)
    output, h_n = rnn(torch.zeros(T, B, I, dtype=torch.float64), h0)
    torch.testing.assert_close(output, h0.expand(T, B, H), atol=0, rtol=0)
    torch.testing.assert_close(h_n, h0, atol=0, rtol=0)


@pytest.mark.parametrize("gain", (1.0, 2.0))
@pytest.mark.parametrize("make", MODULES.values(), ids=MODULES.keys())
def test_orthogonal_makes_each_gate_block_of_weight_hh_orthogonal(make, gain):
    module = make().double()
    untouched = others(module)
    assert rnnlab.init.orthogonal_(module, gain=gain) is module
    weights = recurrent(module)
    assert weights
    eye = torch.eye(H, dtype=torch.float64)
    for name, weight in weights.items():
        for w in blocks(weight):
            torch.testing.assert_close(w @ w.T, gain**2 * eye, atol=1e-10, rtol=0, msg=name)
            torch.testing.assert_close(w.T @ w, gain**2 * eye, atol=1e-10, rtol=0, msg=name)
            assert not torch.allclose(w, gain * eye)  # orthogonal, but not the trivial one
    for name, p in module.named_parameters():
        if name in untouched:
            assert torch.equal(p, untouched[name]), f"{name} changed"


def test_orthogonal_draws_differ_between_layers_and_calls():
    rnn = rnnlab.RNN(I, H, 2, dtype=torch.float64)
    rnnlab.init.orthogonal_(rnn)
    first = rnn.weight_hh_l0.detach().clone()
    assert not torch.allclose(first, rnn.weight_hh_l1)
    rnnlab.init.orthogonal_(rnn)
    assert not torch.allclose(first, rnn.weight_hh_l0)


@pytest.mark.parametrize("initialiser", (rnnlab.init.identity_, rnnlab.init.orthogonal_))
@pytest.mark.parametrize(
    "module", [nn.Linear(I, H), nn.Sequential(nn.Linear(I, H), nn.Tanh())], ids=("linear", "seq")
)
def test_initialisers_refuse_module_without_weight_hh(initialiser, module):
    before = [p.detach().clone() for p in module.parameters()]
    with pytest.raises(ValueError, match="weight_hh"):
        initialiser(module)
    for p, q in zip(module.parameters(), before, strict=True):
        assert torch.equal(p, q)


def test_orthogonal_draws_each_gate_block_apart():
    lstm = rnnlab.LSTM(I, H, dtype=torch.float64)
    rnnlab.init.orthogonal_(lstm)
    i, f, g, o = blocks(lstm.weight_hh_l0)
    assert not torch.allclose(i, f) and not torch.allclose(g, o)


@pytest.mark.parametrize(
    "make",
    [
        lambda: rnnlab.LSTM(I, H, 2, bidirectional=True),
        lambda: nn.LSTM(I, H),
        lambda: rnnlab.LSTMCell(I, H),
        lambda: nn.Sequential(nn.Linear(I, I), rnnlab.LSTM(I, H, 2)),
        lambda: rnnlab.LSTM(I, H, proj_size=2),
    ],
    ids=("rnnlab_lstm", "torch_lstm", "rnnlab_lstm_cell", "nested", "projected"),
)
def test_forget_bias_sets_b_if_plus_b_hf_and_nothing_else(make):
    module = make()
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    assert rnnlab.init.forget_bias_(module, 1.5) is module
    found = 0
    for name, p in module.named_parameters():
        leaf = name.split(".")[-1]
        if leaf.startswith(("bias_ih", "bias_hh")):
            i, f, g, o = p.split(H)
            assert torch.equal(f, torch.full((H,), 1.5 if leaf.startswith("bias_ih") else 0.0))
            for old, new in zip(before[name].split(H), (i, f, g, o), strict=True):
                if new is not f:
                    assert torch.equal(old, new)
            found += 1
        else:
            assert torch.equal(p, before[name]), f"{name} changed"
    assert found >= 2


def test_forget_bias_sets_what_the_cell_keeps_each_step():
    """With every other weight and bias zero, g = tanh(0) = 0 and f = sigmoid(b_if + b_hf):
    the cell state shrinks by exactly that factor each step."""
    lstm = rnnlab.LSTM(I, H, dtype=torch.float64)
    with torch.no_grad():
        for p in lstm.parameters():
            p.zero_()
    rnnlab.init.forget_bias_(lstm, 3.0)
    c0 = torch.rand(1, 1, H, dtype=torch.float64)
    x = torch.randn(T, 1, I, dtype=torch.float64)
    _, (_, c_n) = lstm(x, (torch.zeros(1, 1, H, dtype=torch.float64), c0))
    kept = torch.sigmoid(torch.tensor(3.0, dtype=torch.float64)) ** T
    torch.testing.assert_close(c_n, kept * c0, atol=1e-12, rtol=0)


@pytest.mark.parametrize(
    "module", [rnnlab.RNN(I, H), rnnlab.GRU(I, H), nn.Linear(I, H)], ids=("rnn", "gru", "linear")
)
def test_forget_bias_refuses_a_module_without_lstm_biases(module):
    with pytest.raises(ValueError, match="LSTM"):
        rnnlab.init.forget_bias_(module)
