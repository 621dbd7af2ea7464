"""rnnlab.RNN against torch.nn.RNN: output, h_n and every gradient, for both implementations,
over the product of layers, directions, layouts, bias, nonlinearity, input kind and dtype."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnlab
from rnn_equivalence import (
    DTYPES,
    LENGTHS,
    SORTED_LENGTHS,
    TOLERANCE,
    B,
    H,
    I,
    T,
    assert_gradients_flow,
    assert_same,
    random_input,
    rnn_pair,
    run_rnn,
    weighted_sum,
)

INPUT_KINDS = ("padded", "packed_unsorted", "packed_sorted", "unbatched")


def make_inputs(kind: str, batch_first: bool, dtype, num_states: int, with_h0: bool = True):
    """(x, h0, lengths, enforce_sorted) for one input kind; h0 is (D*L, B, H), or (D*L, H)
    for unbatched input, or None."""
    if kind == "unbatched":
        x = random_input(batch_first, dtype, batch=1).squeeze(0 if batch_first else 1)  # (T, I)
        h0 = torch.randn(num_states, H, dtype=dtype)
    else:
        x = random_input(batch_first, dtype)  # (T, B, I) or (B, T, I)
        h0 = torch.randn(num_states, B, H, dtype=dtype)
    lengths = {"packed_unsorted": LENGTHS, "packed_sorted": SORTED_LENGTHS}.get(kind)
    return x, h0 if with_h0 else None, lengths, kind != "packed_unsorted"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind", INPUT_KINDS)
@pytest.mark.parametrize("nonlinearity", ("tanh", "relu"))
@pytest.mark.parametrize("bias", (True, False), ids=("bias", "no_bias"))
@pytest.mark.parametrize("batch_first", (False, True), ids=("seq_first", "batch_first"))
@pytest.mark.parametrize("bidirectional", (False, True), ids=("uni", "bi"))
@pytest.mark.parametrize("num_layers", (1, 2, 3))
def test_rnn_matches_torch(
    impl, num_layers, bidirectional, batch_first, bias, nonlinearity, kind, dtype
):
    theirs, ours = rnn_pair(
        I,
        H,
        num_layers=num_layers,
        nonlinearity=nonlinearity,
        bias=bias,
        batch_first=batch_first,
        bidirectional=bidirectional,
        dtype=dtype,
        impl=impl,
    )
    num_states = num_layers * (2 if bidirectional else 1)
    x, h0, lengths, enforce_sorted = make_inputs(kind, batch_first, dtype, num_states)
    expected = run_rnn(theirs, x, h0, lengths, enforce_sorted)
    actual = run_rnn(ours, x, h0, lengths, enforce_sorted)
    assert_same(expected, actual, TOLERANCE[dtype])
    assert_gradients_flow(actual)
    # Every parameter, h0 and the input were compared (not just the ones both happened to have).
    assert sum(k.startswith("grad_weight") for k in actual) == 2 * num_states
    assert sum(k.startswith("grad_bias") for k in actual) == (2 * num_states if bias else 0)
    assert {"grad_input", "grad_h0"} <= actual.keys()


@pytest.mark.parametrize("kind", INPUT_KINDS)
@pytest.mark.parametrize("bidirectional", (False, True), ids=("uni", "bi"))
@pytest.mark.parametrize("num_layers", (1, 2))
def test_rnn_matches_torch_without_h0(impl, num_layers, bidirectional, kind):
    theirs, ours = rnn_pair(
        I, H, num_layers, bidirectional=bidirectional, dtype=torch.float64, impl=impl
    )
    num_states = num_layers * (2 if bidirectional else 1)
    x, h0, lengths, enforce_sorted = make_inputs(
        kind, False, torch.float64, num_states, with_h0=False
    )
    assert h0 is None
    expected = run_rnn(theirs, x, None, lengths, enforce_sorted)
    actual = run_rnn(ours, x, None, lengths, enforce_sorted)
    assert_same(expected, actual, TOLERANCE[torch.float64])
    assert_gradients_flow(actual)


@pytest.mark.parametrize("batch_first", (False, True), ids=("seq_first", "batch_first"))
def test_rnn_output_shapes_match_torch(impl, batch_first):
    shapes = []
    for num_layers, bidirectional, kind in itertools.product((1, 2), (False, True), INPUT_KINDS):
        theirs, ours = rnn_pair(
            I, H, num_layers, batch_first=batch_first, bidirectional=bidirectional, impl=impl
        )
        num_states = num_layers * (2 if bidirectional else 1)
        x, h0, lengths, enforce_sorted = make_inputs(kind, batch_first, torch.float32, num_states)
        want = run_rnn(theirs, x, h0, lengths, enforce_sorted)
        got = run_rnn(ours, x, h0, lengths, enforce_sorted)
        assert got["output"].shape == want["output"].shape
        assert got["h_n"].shape == want["h_n"].shape
        shapes.append(got["output"].shape)
    D = 2 * H
    assert (T, D) in shapes  # unbatched, bidirectional: (T, D*H)
    assert ((B, T, D) if batch_first else (T, B, D)) in shapes


@pytest.mark.parametrize("bidirectional", (False, True), ids=("uni", "bi"))
def test_rnn_packed_output_unpacks_like_torch(impl, bidirectional):
    """Padding positions of the unpacked output are zero and h_n is in the caller's batch
    order, with lengths unsorted and enforce_sorted=False."""
    theirs, ours = rnn_pair(
        I, H, 2, batch_first=True, bidirectional=bidirectional, dtype=torch.float64, impl=impl
    )
    x = random_input(True, torch.float64)
    h0 = torch.randn(2 * (2 if bidirectional else 1), B, H, dtype=torch.float64)
    want = run_rnn(theirs, x, h0, LENGTHS, enforce_sorted=False)
    got = run_rnn(ours, x, h0, LENGTHS, enforce_sorted=False)
    padded_want, lengths_want = pad_packed_sequence(want["packed"], batch_first=True)
    padded_got, lengths_got = pad_packed_sequence(got["packed"], batch_first=True)
    assert torch.equal(lengths_got, lengths_want)
    torch.testing.assert_close(padded_got, padded_want, atol=1e-10, rtol=0)
    # The sequence of length 1 (batch index 2) is padding after its first step.
    assert padded_got[2, 1:].abs().sum() == 0
    # Each sequence starts from its own row of h0: changing h0 for batch index 2 changes
    # h_n for that sequence alone.
    h0_changed = h0.clone()
    h0_changed[:, 2] += 1.0
    changed = run_rnn(ours, x, h0_changed, LENGTHS, enforce_sorted=False)["h_n"]
    others = [0, 1, 3]
    assert torch.equal(changed[:, others], got["h_n"][:, others])
    assert (changed[:, 2] - got["h_n"][:, 2]).abs().min() > 0


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_rnn_fused_matches_reference(dtype):
    """The two implementations agree with each other, not only each with torch."""
    fused = rnnlab.RNN(I, H, 2, bidirectional=True, dtype=dtype, impl="fused")
    reference = rnnlab.RNN(I, H, 2, bidirectional=True, dtype=dtype, impl="reference")
    reference.load_state_dict(fused.state_dict())
    x = random_input(False, dtype)
    h0 = torch.randn(4, B, H, dtype=dtype)
    for lengths in (None, LENGTHS):
        assert_same(
            run_rnn(reference, x, h0, lengths), run_rnn(fused, x, h0, lengths), TOLERANCE[dtype]
        )


@pytest.mark.parametrize("use", ("output_only", "h_n_only"))
@pytest.mark.parametrize("packed", (False, True), ids=("padded", "packed"))
def test_rnn_gradients_from_one_output_match_torch(impl, use, packed):
    """A loss that ignores one of the two outputs: the backward gets no gradient for it."""
    theirs, ours = rnn_pair(I, H, 2, bidirectional=True, dtype=torch.float64, impl=impl)
    x = random_input(False, torch.float64)
    h0 = torch.randn(4, B, H, dtype=torch.float64)
    grads = []
    for module in (theirs, ours):
        leaves = [x.clone().requires_grad_(), h0.clone().requires_grad_(), *module.parameters()]
        inp = leaves[0]
        if packed:
            inp = pack_padded_sequence(inp, torch.tensor(LENGTHS), enforce_sorted=False)
        out, h_n = module(inp, leaves[1])
        used = (out.data if packed else out) if use == "output_only" else h_n
        grads.append(torch.autograd.grad(weighted_sum(used), leaves))
    for want, got in zip(*grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=0)
    assert all(g.abs().sum() > 0 for g in grads[1])


def test_rnn_non_contiguous_input_and_h0_match_torch(impl):
    theirs, ours = rnn_pair(I, H, 2, bidirectional=True, dtype=torch.float64, impl=impl)
    x = torch.randn(B, T, I, dtype=torch.float64).transpose(0, 1)  # (T, B, I), a view
    h0 = torch.randn(B, 4, H, dtype=torch.float64).transpose(0, 1)  # (4, B, H), a view
    assert not x.is_contiguous() and not h0.is_contiguous()
    expected = run_rnn(theirs, x, h0)
    actual = run_rnn(ours, x, h0)
    assert_same(expected, actual, TOLERANCE[torch.float64])


def test_rnn_frozen_parameters_match_torch(impl):
    """Backward for only some inputs: a frozen first layer, input and h0 without grad."""
    theirs, ours = rnn_pair(I, H, 2, bidirectional=True, dtype=torch.float64, impl=impl)
    for module in (theirs, ours):
        for name, p in module.named_parameters():
            p.requires_grad_("_l0" not in name and name != "bias_hh_l1")
    x = random_input(False, torch.float64)
    h0 = torch.randn(4, B, H, dtype=torch.float64)
    grads = []
    for module in (theirs, ours):
        trainable = [p for p in module.parameters() if p.requires_grad]
        out, h_n = module(x, h0)
        grads.append(torch.autograd.grad(weighted_sum(out) + weighted_sum(h_n), trainable))
    assert len(grads[1]) == 7
    for want, got in zip(*grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=0)
        assert got.abs().sum() > 0
