"""rnnlab.init: identity_ (IRNN) and orthogonal_ set every recurrent weight W_hh, on rnnlab's
modules and torch's alike, and leave everything else alone."""

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
}


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
        torch.testing.assert_close(w, gain * torch.eye(*w.shape), atol=0, rtol=0, msg=name)
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
@pytest.mark.parametrize(
    "make", [MODULES[k] for k in ("rnnlab_rnn", "rnnlab_cell", "torch_rnn", "torch_cell", "nested")]
)
def test_orthogonal_makes_weight_hh_orthogonal(make, gain):
    module = make().double()
    untouched = others(module)
    assert rnnlab.init.orthogonal_(module, gain=gain) is module
    weights = recurrent(module)
    assert weights
    for name, w in weights.items():
        eye = torch.eye(H, dtype=torch.float64)
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
