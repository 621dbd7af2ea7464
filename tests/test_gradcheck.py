"""torch.autograd.gradcheck of both implementations of every cell in float64: the hand-written
backward of the fused path (and autograd through the reference loop) against finite
differences, with respect to the input, the initial state and every parameter, for padded,
packed and unbatched input; and second derivatives (gradgradcheck)."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck
from torch.func import functional_call
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import rnnlab
from rnn_equivalence import CELLS
from rnnlab.nn import SPECS, LayerWeights, fused_layer, reference_layer

# Smaller than the shared sizes: gradcheck costs a forward per input element.
T, B, I, H, P = 4, 3, 2, 3, 2  # noqa: E741 (I is the input size, as in the equations)
LENGTHS = (2, 4, 1)  # unsorted: the packed case permutes the batch and h0


def module(cell: str, *args, **kwargs):
    """rnnlab's module of `cell` (a key of CELLS) in float64; an LSTM projects to P."""
    _, ours_cls, cell_kwargs = CELLS[cell]
    if "proj_size" in cell_kwargs:
        cell_kwargs = {"proj_size": P}
    return ours_cls(*args, **cell_kwargs, **kwargs, dtype=torch.float64)


def states(rnn, *lead) -> tuple[torch.Tensor, ...]:
    """Random initial states of `rnn` with leading dimensions `lead`: (h0,) or (h0, c0)."""
    h_size = rnn.proj_size or rnn.hidden_size
    h0 = torch.randn(*lead, h_size)
    return (h0, torch.randn(*lead, rnn.hidden_size)) if rnn.mode == "LSTM" else (h0,)


def rnn_function(rnn, packing=None):
    """The module as a function of (input, *state0, *parameters) returning (output, *state_n);
    with `packing` (batch_sizes, sorted_indices, unsorted_indices) the input is packed data."""
    names = [name for name, _ in rnn.named_parameters()]
    states = 2 if rnn.mode == "LSTM" else 1

    def f(x, *rest):
        state0, params = rest[:states], rest[states:]
        inp = x if packing is None else PackedSequence(x, *packing)
        hx = state0 if states == 2 else state0[0]
        out, state_n = functional_call(rnn, dict(zip(names, params, strict=True)), (inp, hx))
        state_n = state_n if states == 2 else (state_n,)
        return (out.data if packing is not None else out), *state_n

    return f


def leaves(*tensors):
    return tuple(t.detach().clone().double().requires_grad_() for t in tensors)


@pytest.mark.parametrize("bidirectional", (False, True), ids=("uni", "bi"))
@pytest.mark.parametrize("cell", CELLS)
def test_rnn_gradcheck_padded(impl, cell, bidirectional):
    rnn = module(cell, I, H, 2, bidirectional=bidirectional, impl=impl)
    x = torch.randn(T, B, I)
    state0 = states(rnn, 2 * (1 + bidirectional), B)
    assert gradcheck(rnn_function(rnn), leaves(x, *state0, *rnn.parameters()))


@pytest.mark.parametrize("bidirectional", (False, True), ids=("uni", "bi"))
@pytest.mark.parametrize("cell", CELLS)
def test_rnn_gradcheck_packed_unsorted(impl, cell, bidirectional):
    rnn = module(cell, I, H, 2, batch_first=True, bidirectional=bidirectional, impl=impl)
    padded = torch.randn(B, T, I)
    packed = pack_padded_sequence(
        padded, torch.tensor(LENGTHS), batch_first=True, enforce_sorted=False
    )
    assert packed.sorted_indices is not None
    packing = (packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
    state0 = states(rnn, 2 * (1 + bidirectional), B)
    assert gradcheck(rnn_function(rnn, packing), leaves(packed.data, *state0, *rnn.parameters()))


@pytest.mark.parametrize("cell", CELLS)
def test_rnn_gradcheck_unbatched_batch_first_no_bias(impl, cell):
    rnn = module(cell, I, H, 2, bias=False, batch_first=True, bidirectional=True, impl=impl)
    x, state0 = torch.randn(T, I), states(rnn, 4)
    assert gradcheck(rnn_function(rnn), leaves(x, *state0, *rnn.parameters()))


@pytest.mark.parametrize("layer", (fused_layer, reference_layer), ids=("fused", "reference"))
@pytest.mark.parametrize("reverse", (False, True), ids=("forward", "reverse"))
@pytest.mark.parametrize("mode", SPECS)
def test_layer_gradcheck_on_packed_batch_sizes(layer, reverse, mode):
    """One layer and direction on a packed layout where sequences end (forward) or start
    (reverse) at several steps, including one of length 1."""
    spec = SPECS[mode]
    batch_sizes = [4, 3, 3, 1]
    x = torch.randn(sum(batch_sizes), I)
    state0 = [torch.randn(batch_sizes[0], H) for _ in range(spec.states)]
    gates = spec.gates * H
    weights = (
        torch.randn(gates, I),
        torch.randn(gates, H) / 2,
        torch.randn(gates),
        torch.randn(gates),
    )

    def f(x, *rest):
        state, params = rest[: spec.states], rest[spec.states :]
        out, state_n = layer(spec, x, batch_sizes, state, LayerWeights(*params), reverse)
        return out, *state_n

    assert gradcheck(f, leaves(x, *state0, *weights))


@pytest.mark.parametrize("cell", ("rnn", "gru", "lstm"))
def test_cell_gradcheck(cell):
    kinds = {"rnn": rnnlab.RNNCell, "gru": rnnlab.GRUCell, "lstm": rnnlab.LSTMCell}
    extra = {"nonlinearity": "relu"} if cell == "rnn" else {}
    step = kinds[cell](I, H, **extra, dtype=torch.float64)
    names = [name for name, _ in step.named_parameters()]
    state0 = [torch.randn(B, H) for _ in range(2 if cell == "lstm" else 1)]

    def f(x, *rest):
        state, params = rest[: len(state0)], rest[len(state0) :]
        hx = tuple(state) if cell == "lstm" else state[0]
        return functional_call(step, dict(zip(names, params, strict=True)), (x, hx))

    assert gradcheck(f, leaves(torch.randn(B, I), *state0, *step.parameters()))


@pytest.mark.parametrize("bidirectional", (False, True), ids=("uni", "bi"))
@pytest.mark.parametrize("packed", (False, True), ids=("padded", "packed"))
@pytest.mark.parametrize("cell", CELLS)
def test_rnn_gradgradcheck_second_derivatives(impl, cell, bidirectional, packed):
    """backward(create_graph=True) gives a differentiable graph: gradient penalties work.
    (Two layers for the Elman cell; one for the gated cells, whose second derivatives cost
    gradgradcheck several times as many evaluations.)"""
    torch.manual_seed(0)
    layers = 2 if cell.startswith("rnn") else 1
    rnn = module(cell, I, H, layers, bidirectional=bidirectional, impl=impl)
    x, *state0 = leaves(torch.randn(T, B, I), *states(rnn, layers * (1 + bidirectional), B))
    packing = None
    if packed:
        sequence = pack_padded_sequence(x, LENGTHS, enforce_sorted=False)
        x = leaves(sequence.data)[0]
        packing = (sequence.batch_sizes, sequence.sorted_indices, sequence.unsorted_indices)
    params = leaves(*rnn.parameters())
    assert torch.autograd.gradgradcheck(rnn_function(rnn, packing), (x, *state0, *params))


@pytest.mark.parametrize("cell", CELLS)
def test_gradient_penalty_through_the_fused_path_matches_torch(cell):
    torch.manual_seed(0)
    theirs_cls, ours_cls, cell_kwargs = CELLS[cell]
    theirs = theirs_cls(I, H, 2, **cell_kwargs).double()
    ours = ours_cls(I, H, 2, **cell_kwargs).double()
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
