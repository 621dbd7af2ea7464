"""torch.autograd.gradcheck of both implementations in float64: the hand-written backward of
the fused path (and autograd through the reference loop) against finite differences, with
respect to the input, h0 and every parameter, for padded, packed and unbatched input."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck
from torch.func import functional_call
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import rnnlab
from rnnlab.nn import fused_layer, reference_layer

# Smaller than the shared sizes: gradcheck costs a forward per input element.
T, B, I, H = 4, 3, 2, 3  # noqa: E741 (I is the input size, as in the equations)
LENGTHS = (2, 4, 1)  # unsorted: the packed case permutes the batch and h0


def rnn_function(rnn, packing=None):
    """The module as a function of (input, h0, *parameters) returning (output, h_n); with
    `packing` (batch_sizes, sorted_indices, unsorted_indices) the input is packed data."""
    names = [name for name, _ in rnn.named_parameters()]

    def f(x, h0, *params):
        inp = x if packing is None else PackedSequence(x, *packing)
        out, h_n = functional_call(rnn, dict(zip(names, params, strict=True)), (inp, h0))
        return (out.data if packing is not None else out), h_n

    return f


def leaves(*tensors):
    return tuple(t.detach().clone().double().requires_grad_() for t in tensors)


@pytest.mark.parametrize("nonlinearity", ("tanh", "relu"))
@pytest.mark.parametrize("bidirectional", (False, True), ids=("uni", "bi"))
def test_rnn_gradcheck_padded(impl, bidirectional, nonlinearity):
    rnn = rnnlab.RNN(
        I, H, 2, nonlinearity, bidirectional=bidirectional, dtype=torch.float64, impl=impl
    )
    x = torch.randn(T, B, I)
    h0 = torch.randn(2 * (1 + bidirectional), B, H)
    assert gradcheck(rnn_function(rnn), leaves(x, h0, *rnn.parameters()))


@pytest.mark.parametrize("bidirectional", (False, True), ids=("uni", "bi"))
def test_rnn_gradcheck_packed_unsorted(impl, bidirectional):
    rnn = rnnlab.RNN(
        I, H, 2, batch_first=True, bidirectional=bidirectional, dtype=torch.float64, impl=impl
    )
    padded = torch.randn(B, T, I)
    packed = pack_padded_sequence(
        padded, torch.tensor(LENGTHS), batch_first=True, enforce_sorted=False
    )
    assert packed.sorted_indices is not None
    packing = (packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
    h0 = torch.randn(2 * (1 + bidirectional), B, H)
    assert gradcheck(rnn_function(rnn, packing), leaves(packed.data, h0, *rnn.parameters()))


def test_rnn_gradcheck_unbatched_batch_first_no_bias(impl):
    rnn = rnnlab.RNN(
        I, H, 2, bias=False, batch_first=True, bidirectional=True, dtype=torch.float64, impl=impl
    )
    x, h0 = torch.randn(T, I), torch.randn(4, H)
    assert gradcheck(rnn_function(rnn), leaves(x, h0, *rnn.parameters()))


@pytest.mark.parametrize("layer", (fused_layer, reference_layer), ids=("fused", "reference"))
@pytest.mark.parametrize("reverse", (False, True), ids=("forward", "reverse"))
def test_layer_gradcheck_on_packed_batch_sizes(layer, reverse):
    """One layer and direction on a packed layout where sequences end (forward) or start
    (reverse) at several steps, including one of length 1."""
    batch_sizes = [4, 3, 3, 1]
    x = torch.randn(sum(batch_sizes), I)
    h0 = torch.randn(batch_sizes[0], H)
    weights = (torch.randn(H, I), torch.randn(H, H) / 2, torch.randn(H), torch.randn(H))

    def f(*args):
        return layer(args[0], batch_sizes, *args[1:], "tanh", reverse=reverse)

    assert gradcheck(f, leaves(x, h0, *weights))


def test_cell_gradcheck():
    cell = rnnlab.RNNCell(I, H, nonlinearity="relu", dtype=torch.float64)
    names = [name for name, _ in cell.named_parameters()]

    def f(x, h, *params):
        return functional_call(cell, dict(zip(names, params, strict=True)), (x, h))

    assert gradcheck(f, leaves(torch.randn(B, I), torch.randn(B, H), *cell.parameters()))


@pytest.mark.parametrize("bidirectional", (False, True), ids=("uni", "bi"))
@pytest.mark.parametrize("packed", (False, True), ids=("padded", "packed"))
def test_rnn_gradgradcheck_second_derivatives(impl, bidirectional, packed):
    """backward(create_graph=True) gives a differentiable graph: gradient penalties work."""
    torch.manual_seed(0)
    rnn = rnnlab.RNN(I, H, 2, bidirectional=bidirectional, impl=impl).double()
    x, h0 = leaves(torch.randn(T, B, I), torch.randn(2 * (1 + bidirectional), B, H))
    packing = None
    if packed:
        sequence = pack_padded_sequence(x, LENGTHS, enforce_sorted=False)
        x = leaves(sequence.data)[0]
        packing = (sequence.batch_sizes, sequence.sorted_indices, sequence.unsorted_indices)
    params = leaves(*rnn.parameters())
    assert torch.autograd.gradgradcheck(rnn_function(rnn, packing), (x, h0, *params))


def test_gradient_penalty_through_the_fused_path_matches_torch():
    torch.manual_seed(0)
    theirs = torch.nn.RNN(I, H, 2).double()
    ours = rnnlab.RNN(I, H, 2).double()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    grads = []
    for rnn in (theirs, ours):
        output, _ = rnn(x)
        (dx,) = torch.autograd.grad(output.pow(2).sum(), x, create_graph=True)
        dx.pow(2).sum().backward()  # the penalty's gradient reaches every parameter
        grads.append([p.grad for p in rnn.parameters()])
    for a, b in zip(*grads, strict=True):
        assert a.abs().sum() > 0
        torch.testing.assert_close(b, a, rtol=0, atol=1e-10)
