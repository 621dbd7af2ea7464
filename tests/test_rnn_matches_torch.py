"""rnnlab.RNN against torch.nn.RNN: output, h_n and every gradient, for both implementations,
over the product of layers, directions, layouts, bias, nonlinearity, input kind and dtype."""

from __future__ import annotations

import itertools

import pytest
import torch

import rnnlab
from conftest import (
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
    reference, ours = rnn_pair(
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
    expected = run_rnn(reference, x, h0, lengths, enforce_sorted)
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
    reference, ours = rnn_pair(
        I, H, num_layers, bidirectional=bidirectional, dtype=torch.float64, impl=impl
    )
    num_states = num_layers * (2 if bidirectional else 1)
    x, h0, lengths, enforce_sorted = make_inputs(
        kind, False, torch.float64, num_states, with_h0=False
    )
    assert h0 is None
    expected = run_rnn(reference, x, None, lengths, enforce_sorted)
    actual = run_rnn(ours, x, None, lengths, enforce_sorted)
    assert_same(expected, actual, TOLERANCE[torch.float64])
    assert_gradients_flow(actual)


@pytest.mark.parametrize("batch_first", (False, True), ids=("seq_first", "batch_first"))
def test_rnn_output_shapes_match_torch(impl, batch_first):
    shapes = []
    for num_layers, bidirectional, kind in itertools.product((1, 2), (False, True), INPUT_KINDS):
        reference, ours = rnn_pair(
            I, H, num_layers, batch_first=batch_first, bidirectional=bidirectional, impl=impl
        )
        num_states = num_layers * (2 if bidirectional else 1)
        x, h0, lengths, enforce_sorted = make_inputs(kind, batch_first, torch.float32, num_states)
        want = run_rnn(reference, x, h0, lengths, enforce_sorted)
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
    from torch.nn.utils.rnn import pad_packed_sequence

    reference, ours = rnn_pair(
        I, H, 2, batch_first=True, bidirectional=bidirectional, dtype=torch.float64, impl=impl
    )
    x = random_input(True, torch.float64)
    h0 = torch.randn(2 * (2 if bidirectional else 1), B, H, dtype=torch.float64)
    want = run_rnn(reference, x, h0, LENGTHS, enforce_sorted=False)
    got = run_rnn(ours, x, h0, LENGTHS, enforce_sorted=False)
    padded_want, lengths_want = pad_packed_sequence(want["packed"], batch_first=True)
    padded_got, lengths_got = pad_packed_sequence(got["packed"], batch_first=True)
    assert torch.equal(lengths_got, lengths_want)
    torch.testing.assert_close(padded_got, padded_want, atol=1e-10, rtol=0)
    # The sequence of length 1 (batch index 2) is padding after its first step.
    assert padded_got[2, 1:].abs().sum() == 0
    # h0 really was permuted: running without it gives a different h_n.
    without_h0 = run_rnn(ours, x, None, LENGTHS, enforce_sorted=False)
    assert not torch.allclose(without_h0["h_n"], got["h_n"])


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
