"""rnnlab.RNN, GRU and LSTM against torch.nn's: output, final state and every gradient, for both
implementations, over the product of cell (Elman tanh and relu, GRU, LSTM with and without a
projection), layers, directions, layouts, bias, input kind and dtype."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnn_equivalence import (
    CELLS,
    DTYPES,
    LENGTHS,
    SORTED_LENGTHS,
    TOLERANCE,
    B,
    H,
    I,
    P,
    T,
    as_tuple,
    assert_gradients_flow,
    assert_same,
    initial_state,
    pair,
    random_input,
    run_rnn,
    weighted_sum,
)

INPUT_KINDS = ("padded", "packed_unsorted", "packed_sorted", "unbatched")


def make_inputs(kind: str, module, dtype, with_h0: bool = True):
    """(x, h0, lengths, enforce_sorted) for one input kind; h0 is (D*L, B, H_out), or
    (D*L, H_out) for unbatched input ((h0, c0) for an LSTM), or None."""
    batch_first = module.batch_first
    if kind == "unbatched":
        x = random_input(batch_first, dtype, batch=1).squeeze(0 if batch_first else 1)  # (T, I)
        h0 = initial_state(module, None, dtype)
    else:
        x = random_input(batch_first, dtype)  # (T, B, I) or (B, T, I)
        h0 = initial_state(module, B, dtype)
    lengths = {"packed_unsorted": LENGTHS, "packed_sorted": SORTED_LENGTHS}.get(kind)
    return x, h0 if with_h0 else None, lengths, kind != "packed_unsorted"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind", INPUT_KINDS)
@pytest.mark.parametrize("bias", (True, False), ids=("bias", "no_bias"))
@pytest.mark.parametrize("batch_first", (False, True), ids=("seq_first", "batch_first"))
@pytest.mark.parametrize("bidirectional", (False, True), ids=("uni", "bi"))
@pytest.mark.parametrize("num_layers", (1, 2, 3))
@pytest.mark.parametrize("cell", CELLS)
def test_rnn_matches_torch(impl, cell, num_layers, bidirectional, batch_first, bias, kind, dtype):
    theirs, ours = pair(
        cell,
        I,
        H,
        num_layers=num_layers,
        bias=bias,
        batch_first=batch_first,
        bidirectional=bidirectional,
        dtype=dtype,
        impl=impl,
    )
    x, h0, lengths, enforce_sorted = make_inputs(kind, ours, dtype)
    expected = run_rnn(theirs, x, h0, lengths, enforce_sorted)
    actual = run_rnn(ours, x, h0, lengths, enforce_sorted)
    assert_same(expected, actual, TOLERANCE[dtype])
    assert_gradients_flow(actual)
    # Every parameter, the initial state and the input were compared (not just the ones both
    # happened to have).
    num_states = num_layers * (2 if bidirectional else 1)
    weights = 3 if cell == "lstm_proj" else 2  # weight_ih, weight_hh (and weight_hr)
    assert sum(k.startswith("grad_weight") for k in actual) == weights * num_states
    assert sum(k.startswith("grad_bias") for k in actual) == (2 * num_states if bias else 0)
    states = {f"grad_{name}" for name in ("h0", "c0")[: len(as_tuple(h0))]}
    assert {"grad_input", *states} <= actual.keys()


@pytest.mark.parametrize("kind", INPUT_KINDS)
@pytest.mark.parametrize("bidirectional", (False, True), ids=("uni", "bi"))
@pytest.mark.parametrize("num_layers", (1, 2))
@pytest.mark.parametrize("cell", CELLS)
def test_rnn_matches_torch_without_h0(impl, cell, num_layers, bidirectional, kind):
    theirs, ours = pair(
        cell, I, H, num_layers, bidirectional=bidirectional, dtype=torch.float64, impl=impl
    )
    x, h0, lengths, enforce_sorted = make_inputs(kind, ours, torch.float64, with_h0=False)
    assert h0 is None
    expected = run_rnn(theirs, x, None, lengths, enforce_sorted)
    actual = run_rnn(ours, x, None, lengths, enforce_sorted)
    assert_same(expected, actual, TOLERANCE[torch.float64])
    assert_gradients_flow(actual)


@pytest.mark.parametrize("batch_first", (False, True), ids=("seq_first", "batch_first"))
@pytest.mark.parametrize("cell", CELLS)
def test_rnn_output_shapes_match_torch(impl, cell, batch_first):
    shapes = []
    for num_layers, bidirectional, kind in itertools.product((1, 2), (False, True), INPUT_KINDS):
        theirs, ours = pair(
            cell, I, H, num_layers, batch_first=batch_first, bidirectional=bidirectional, impl=impl
        )
        x, h0, lengths, enforce_sorted = make_inputs(kind, ours, torch.float32)
        want = run_rnn(theirs, x, h0, lengths, enforce_sorted)
        got = run_rnn(ours, x, h0, lengths, enforce_sorted)
        for key in ("output", "h_n", "c_n"):
            assert (key in got) == (key in want)
            if key in got:
                assert got[key].shape == want[key].shape, key
        shapes.append(got["output"].shape)
    D = 2 * (P if cell == "lstm_proj" else H)
    assert (T, D) in shapes  # unbatched, bidirectional: (T, D*H_out)
    assert ((B, T, D) if batch_first else (T, B, D)) in shapes


@pytest.mark.parametrize("bidirectional", (False, True), ids=("uni", "bi"))
@pytest.mark.parametrize("cell", CELLS)
def test_rnn_packed_output_unpacks_like_torch(impl, cell, bidirectional):
    """Padding positions of the unpacked output are zero and the final state is in the
    caller's batch order, with lengths unsorted and enforce_sorted=False."""
    theirs, ours = pair(
        cell, I, H, 2, batch_first=True, bidirectional=bidirectional, dtype=torch.float64, impl=impl
    )
    x = random_input(True, torch.float64)
    h0 = initial_state(ours, B)
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
    h0_changed = tuple(s.clone() for s in as_tuple(h0))
    h0_changed[0][:, 2] += 1.0
    h0_changed = h0_changed if isinstance(h0, tuple) else h0_changed[0]
    changed = run_rnn(ours, x, h0_changed, LENGTHS, enforce_sorted=False)["h_n"]
    others = [0, 1, 3]
    assert torch.equal(changed[:, others], got["h_n"][:, others])
    assert (changed[:, 2] - got["h_n"][:, 2]).abs().sum() > 0


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("cell", CELLS)
def test_rnn_fused_matches_reference(cell, dtype):
    """The two implementations agree with each other, not only each with torch."""
    _, fused = pair(cell, I, H, 2, bidirectional=True, dtype=dtype, impl="fused")
    _, reference = pair(cell, I, H, 2, bidirectional=True, dtype=dtype, impl="reference")
    reference.load_state_dict(fused.state_dict())
    x = random_input(False, dtype)
    h0 = initial_state(fused, B, dtype)
    for lengths in (None, LENGTHS):
        assert_same(
            run_rnn(reference, x, h0, lengths), run_rnn(fused, x, h0, lengths), TOLERANCE[dtype]
        )


ONE_OUTPUT = [
    (cell, use)
    for cell in CELLS
    for use in ("output_only", "h_n_only", "c_n_only")
    if use != "c_n_only" or cell.startswith("lstm")  # only an LSTM has c_n
]


@pytest.mark.parametrize("packed", (False, True), ids=("padded", "packed"))
@pytest.mark.parametrize(("cell", "use"), ONE_OUTPUT)
def test_rnn_gradients_from_one_output_match_torch(impl, cell, use, packed):
    """A loss that ignores the other outputs: the backward gets no gradient for them."""
    theirs, ours = pair(cell, I, H, 2, bidirectional=True, dtype=torch.float64, impl=impl)
    x = random_input(False, torch.float64)
    h0 = as_tuple(initial_state(ours, B))
    grads = []
    for module in (theirs, ours):
        state = [s.clone().requires_grad_() for s in h0]
        leaves = [x.clone().requires_grad_(), *state, *module.parameters()]
        inp = leaves[0]
        if packed:
            inp = pack_padded_sequence(inp, torch.tensor(LENGTHS), enforce_sorted=False)
        out, state_n = module(inp, tuple(state) if len(state) > 1 else state[0])
        used = {
            "output_only": out.data if packed else out,
            "h_n_only": as_tuple(state_n)[0],
            "c_n_only": as_tuple(state_n)[-1],
        }[use]
        grads.append(torch.autograd.grad(weighted_sum(used), leaves, allow_unused=True))
    for want, got in zip(*grads, strict=True):
        assert (want is None) == (got is None)
        if want is not None:
            torch.testing.assert_close(got, want, atol=1e-10, rtol=0)
    assert all(g is not None and g.abs().sum() > 0 for g in grads[1])


@pytest.mark.parametrize("cell", CELLS)
def test_rnn_non_contiguous_input_and_h0_match_torch(impl, cell):
    theirs, ours = pair(cell, I, H, 2, bidirectional=True, dtype=torch.float64, impl=impl)
    x = torch.randn(B, T, I, dtype=torch.float64).transpose(0, 1)  # (T, B, I), a view
    h0 = tuple(
        s.transpose(0, 1).contiguous().transpose(0, 1) for s in as_tuple(initial_state(ours, B))
    )
    assert not x.is_contiguous() and not any(s.is_contiguous() for s in h0)
    h0 = h0 if len(h0) > 1 else h0[0]
    expected = run_rnn(theirs, x, h0)
    actual = run_rnn(ours, x, h0)
    assert_same(expected, actual, TOLERANCE[torch.float64])


@pytest.mark.parametrize("cell", CELLS)
def test_rnn_frozen_parameters_match_torch(impl, cell):
    """Backward for only some inputs: a frozen first layer, input and h0 without grad."""
    theirs, ours = pair(cell, I, H, 2, bidirectional=True, dtype=torch.float64, impl=impl)
    for module in (theirs, ours):
        for name, p in module.named_parameters():
            p.requires_grad_("_l0" not in name and name != "bias_hh_l1")
    x = random_input(False, torch.float64)
    h0 = initial_state(ours, B)
    grads = []
    for module in (theirs, ours):
        trainable = [p for p in module.parameters() if p.requires_grad]
        out, state_n = module(x, h0)
        loss = weighted_sum(out) + sum(weighted_sum(s) for s in as_tuple(state_n))
        grads.append(torch.autograd.grad(loss, trainable))
    assert len(grads[1]) == (9 if cell == "lstm_proj" else 7)
    for want, got in zip(*grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=0)
        assert got.abs().sum() > 0
