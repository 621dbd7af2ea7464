"""rnnlab.RNN, GRU and LSTM as drop-ins for torch.nn's: constructor, checks and errors,
parameters and their initialisation, dropout, module plumbing (dtype, copies, serialisation,
repr), and the promise that neither path ever calls torch's own recurrent kernels."""

from __future__ import annotations

import copy
import inspect
import io
import pickle
import typing
import warnings

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence
from torch.overrides import TorchFunctionMode

import rnnlab
from rnn_equivalence import (
    CELLS,
    IMPLS,
    LENGTHS,
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
    native_torch,
    pair,
    random_input,
    run_rnn,
)

# (num_layers, bidirectional, bias) covering every parameter-naming case.
LAYOUTS = [(1, False, True), (2, True, True), (3, True, False), (2, False, False)]
# The three modules, each beside torch's: their names, as pytest ids.
MODULES = {"RNN": (torch.nn.RNN, rnnlab.RNN), "GRU": (torch.nn.GRU, rnnlab.GRU),
           "LSTM": (torch.nn.LSTM, rnnlab.LSTM)}  # fmt: skip


def outcome(make):
    """What calling `make()` does: ('ok', warning messages) or (exception type, message)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            make()
        except Exception as error:
            return type(error), str(error)
    return "ok", [str(w.message) for w in caught]


# ---------------------------------------------------------------- constructor and its checks


@pytest.mark.parametrize("name", MODULES)
def test_rnn_signature_matches_torch(name):
    theirs_cls, ours_cls = MODULES[name]
    (torch_init, _) = typing.get_overloads(theirs_cls.__init__)
    theirs = list(inspect.signature(torch_init).parameters.values())
    ours = list(inspect.signature(ours_cls.__init__).parameters.values())
    assert [(p.name, p.default, p.kind) for p in ours[: len(theirs)]] == [
        (p.name, p.default, p.kind) for p in theirs
    ]
    extra = [(p.name, p.default, p.kind) for p in ours[len(theirs) :]]
    keyword = inspect.Parameter.KEYWORD_ONLY
    assert extra[0] == ("impl", "fused", keyword)
    if name != "LSTM":  # refused, as torch refuses it
        assert extra[1:] == [("proj_size", None, keyword)]


POSITIONAL = {  # torch's order: the flags after the sizes and the layers
    "RNN": (I, H, 2, "relu", False, True, 0.25, True),
    "GRU": (I, H, 2, False, True, 0.25, True),
    "LSTM": (I, H, 2, False, True, 0.25, True, 2),
}


@pytest.mark.parametrize("name", MODULES)
def test_rnn_positional_arguments_in_torch_order(name):
    theirs_cls, ours_cls = MODULES[name]
    args = POSITIONAL[name]
    theirs, ours = theirs_cls(*args), ours_cls(*args)
    for attribute in (
        "input_size",
        "hidden_size",
        "num_layers",
        "bias",
        "batch_first",
        "dropout",
        "bidirectional",
        "mode",
        "proj_size",
    ):
        assert getattr(ours, attribute) == getattr(theirs, attribute), attribute
    assert ours.dropout == 0.25 and ours.batch_first and not ours.bias
    if name == "RNN":
        assert ours.nonlinearity == theirs.nonlinearity == "relu"
    if name == "LSTM":
        assert ours.proj_size == 2


@pytest.mark.parametrize("name", MODULES)
def test_rnn_device_and_dtype_arguments_like_torch(name):
    # torch's documented signatures have device and dtype after the flags, but its *args
    # plumbing hands that position to RNNBase's proj_size, so torch only takes them by
    # keyword; rnnlab takes them either way (the LSTM's proj_size comes first, as torch's).
    theirs_cls, ours_cls = MODULES[name]
    flags = {"RNN": ("tanh", True, False, 0.0, True), "LSTM": (True, False, 0.0, True, 0)}
    args = (I, H, 2, *flags.get(name, (True, False, 0.0, True)))
    theirs = theirs_cls(*args, device="cpu", dtype=torch.float64)
    ours = ours_cls(*args, "cpu", torch.float64)
    for (p_name, p), (torch_name, q) in zip(
        ours.named_parameters(), theirs.named_parameters(), strict=True
    ):
        assert p_name == torch_name
        assert (p.dtype, p.device) == (q.dtype, q.device) == (torch.float64, torch.device("cpu"))


@pytest.mark.parametrize("name", MODULES)
def test_rnn_impl_is_keyword_only_and_checked(name):
    _, ours_cls = MODULES[name]
    assert ours_cls(I, H).impl == "fused"
    assert ours_cls(I, H, impl="reference").impl == "reference"
    with pytest.raises(TypeError):
        ours_cls(I, H, 1, True, False, 0.0, False, None, None, "reference", "extra")
    with pytest.raises(ValueError, match="impl"):
        ours_cls(I, H, impl="cudnn")


BAD_ARGUMENTS = {
    "nonlinearity_sigmoid": dict(nonlinearity="sigmoid"),
    "nonlinearity_uppercase": dict(nonlinearity="TANH"),
    "dropout_negative": dict(dropout=-0.1),
    "dropout_above_one": dict(dropout=1.5),
    "dropout_bool": dict(dropout=True),
    "dropout_string": dict(dropout="0.5"),
    "bias_int": dict(bias=1),
    "batch_first_int": dict(batch_first=0),
    "input_size_float": dict(input_size=3.0),
    "input_size_zero": dict(input_size=0),
    "input_size_negative": dict(input_size=-2),
    "hidden_size_float": dict(hidden_size=4.0),
    "hidden_size_zero": dict(hidden_size=0),
    "num_layers_zero": dict(num_layers=0),
    "num_layers_negative": dict(num_layers=-1),
    "num_layers_float": dict(num_layers=1.5),
    "num_layers_string": dict(num_layers="2"),
    "unknown_keyword": dict(nonsense=1),
    "proj_size": dict(proj_size=2),
    "proj_size_zero": dict(proj_size=0),
    "proj_size_negative": dict(proj_size=-1),
    "proj_size_as_large_as_hidden": dict(proj_size=H),
    # Two bad arguments at once: the one torch checks first wins.
    "nonlinearity_and_dropout": dict(nonlinearity="sigmoid", dropout=2.0),
    "dropout_and_bias": dict(dropout=2.0, bias="yes"),
    "bias_and_input_size": dict(bias=None, input_size=0),
    "num_layers_and_proj_size": dict(num_layers=0, proj_size=H + 1),
}


@pytest.mark.parametrize("case", BAD_ARGUMENTS)
@pytest.mark.parametrize("name", MODULES)
def test_rnn_rejects_bad_arguments_like_torch(name, case):
    theirs_cls, ours_cls = MODULES[name]
    kwargs = dict(input_size=I, hidden_size=H, num_layers=2) | BAD_ARGUMENTS[case]
    want = outcome(lambda: theirs_cls(**kwargs))
    got = outcome(lambda: ours_cls(**kwargs))
    if want[0] == "ok":  # a projection is an LSTM's right
        assert got == want
    else:
        assert got[0] is want[0]
    # An unknown keyword's message names the class (RNNBase.__init__() got ...); GRU and
    # LSTM take no nonlinearity.
    if "nonsense" not in kwargs and not ("nonlinearity" in kwargs and name != "RNN"):
        assert got[1] == want[1]


@pytest.mark.parametrize("name", MODULES)
def test_rnn_dropout_with_one_layer_warns_like_torch(name):
    theirs_cls, ours_cls = MODULES[name]
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        theirs_cls(I, H, dropout=0.5)
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        ours_cls(I, H, dropout=0.5)
    assert outcome(lambda: ours_cls(I, H, dropout=0.5)) == outcome(
        lambda: theirs_cls(I, H, dropout=0.5)
    )


@pytest.mark.parametrize("kwargs", [dict(num_layers=2, dropout=0.5), dict(dropout=0.0)])
@pytest.mark.parametrize("name", MODULES)
def test_rnn_warns_only_when_torch_does(name, kwargs):
    theirs_cls, ours_cls = MODULES[name]
    assert outcome(lambda: ours_cls(I, H, **kwargs)) == ("ok", [])
    assert outcome(lambda: theirs_cls(I, H, **kwargs)) == ("ok", [])


# ----------------------------------------------------------------------- forward's checks


def packed(x, lengths=LENGTHS):
    return pack_padded_sequence(x, torch.tensor(lengths), enforce_sorted=False)


def states(name: str, *shape, dtype=torch.float32, c_shape=None):
    """An hx of `shape` for module `name`: a tensor, or for an LSTM a tuple (h, c), c of
    `c_shape` (default: `shape`)."""
    h = (
        torch.randn(*shape, dtype=dtype)
        if dtype.is_floating_point
        else torch.zeros(*shape, dtype=dtype)
    )
    if name != "LSTM":
        return h
    return h, torch.randn(*(c_shape or shape))


# Wrong calls of a bidirectional 2-layer module(I, H), each as (module name) -> (input, hx).
BAD_CALLS = {
    "input_4d": lambda name: (torch.randn(T, B, I, 1), None),
    "input_1d": lambda name: (torch.randn(I), None),
    "input_wrong_features": lambda name: (torch.randn(T, B, I + 1), None),
    "input_float64": lambda name: (torch.randn(T, B, I, dtype=torch.float64), None),
    "input_int64": lambda name: (torch.ones(T, B, I, dtype=torch.int64), None),
    "unbatched_input_wrong_features": lambda name: (torch.randn(T, I + 2), None),
    "hx_wrong_batch": lambda name: (torch.randn(T, B, I), states(name, 4, B + 1, H)),
    "hx_wrong_hidden": lambda name: (torch.randn(T, B, I), states(name, 4, B, H + 1)),
    "hx_wrong_layers": lambda name: (torch.randn(T, B, I), states(name, 2, B, H)),
    "hx_2d_for_batched": lambda name: (torch.randn(T, B, I), states(name, 4, H)),
    "hx_3d_for_unbatched": lambda name: (torch.randn(T, I), states(name, 4, 1, H)),
    "hx_wrong_hidden_unbatched": lambda name: (torch.randn(T, I), states(name, 4, H + 1)),
    "hx_float64": lambda name: (torch.randn(T, B, I), states(name, 4, B, H, dtype=torch.float64)),
    "hx_int64": lambda name: (torch.randn(T, B, I), states(name, 4, B, H, dtype=torch.int64)),
    "packed_wrong_features": lambda name: (packed(torch.randn(T, B, I + 1)), None),
    "packed_float64": lambda name: (packed(torch.randn(T, B, I, dtype=torch.float64)), None),
    "packed_hx_wrong_hidden": lambda name: (
        packed(torch.randn(T, B, I)),
        states(name, 4, B, H + 1),
    ),
    "packed_hx_2d": lambda name: (packed(torch.randn(T, B, I)), states(name, 4, H)),
    "packed_hx_float64": lambda name: (
        packed(torch.randn(T, B, I)),
        states(name, 4, B, H, dtype=torch.float64),
    ),
    "empty_sequence": lambda name: (torch.randn(0, B, I), None),
    # an LSTM's hx: a tensor instead of (h, c), a wrong c, three states, one state
    "lstm_hx_tensor": lambda name: (torch.randn(T, B, I), torch.randn(4, B, H)),
    "lstm_c_wrong_hidden": lambda name: (
        torch.randn(T, B, I),
        states(name, 4, B, H, c_shape=(4, B, H + 1)),
    ),
    "lstm_c_2d": lambda name: (torch.randn(T, B, I), states(name, 4, B, H, c_shape=(4, H))),
    "lstm_three_states": lambda name: (torch.randn(T, B, I), (torch.randn(4, B, H),) * 3),
    "lstm_one_state": lambda name: (torch.randn(T, B, I), (torch.randn(4, B, H),)),
}  # fmt: skip
# Where torch's LSTM leaves the checks of a packed input and its hx to its kernel, which then
# fails on a detail of its own (a matmul's shapes, an index); rnnlab's LSTM checks them as
# torch's RNN and GRU do, and says what they say.
LSTM_PACKED = {
    "packed_wrong_features": (
        RuntimeError,
        "input.size(-1) must be equal to input_size. Expected 3, got 4",
    ),
    "packed_float64": (
        ValueError,
        "RNN input dtype (torch.float64) does not match weight dtype (torch.float32). Convert "
        "input: input.to(torch.float32), or convert model: model.to(torch.float64)",
    ),
    "packed_hx_wrong_hidden": (RuntimeError, "Expected hidden[0] size (4, 4, 5), got [4, 4, 6]"),
    "packed_hx_2d": (RuntimeError, "Expected hidden[0] size (4, 4, 5), got [4, 4]"),
}


@pytest.mark.parametrize("impl_name", IMPLS)
@pytest.mark.parametrize(
    ("name", "case"),
    [
        (name, case)
        for name in MODULES
        for case in BAD_CALLS
        if name == "LSTM" or "lstm" not in case
    ],
)
def test_rnn_forward_rejects_bad_input_like_torch(name, case, impl_name):
    theirs_cls, ours_cls = MODULES[name]
    theirs, ours = (
        theirs_cls(I, H, 2, bidirectional=True),
        ours_cls(I, H, 2, bidirectional=True, impl=impl_name),
    )
    ours.load_state_dict(theirs.state_dict())
    x, hx = BAD_CALLS[case](name)
    with native_torch():  # oneDNN's LSTM names its internals in its errors (see native_torch)
        want = outcome(lambda: theirs(x, hx))
    got = outcome(lambda: ours(x, hx))
    assert want[0] != "ok", "the case must be an error for torch"
    if name == "LSTM" and case in LSTM_PACKED:
        assert got == LSTM_PACKED[case]
    else:
        assert got == want  # same exception type and message


@pytest.mark.parametrize("bidirectional", (False, True), ids=("uni", "bi"))
@pytest.mark.parametrize("cell", CELLS)
def test_rnn_accepts_empty_batch_like_torch(impl, cell, bidirectional):
    theirs, ours = pair(cell, I, H, 2, bidirectional=bidirectional, impl=impl)
    x = torch.randn(T, 0, I)
    want_out, want_state = theirs(x)
    got_out, got_state = ours(x)
    assert got_out.shape == want_out.shape
    assert [s.shape for s in as_tuple(got_state)] == [s.shape for s in as_tuple(want_state)]


# ------------------------------------------------------------- parameters and initialisation


def both(name: str, *args, **kwargs):
    theirs_cls, ours_cls = MODULES[name]
    return theirs_cls(*args, **kwargs), ours_cls(*args, **kwargs)


# (module, proj_size): every parameter-naming case, the LSTM's weight_hr included
NAMINGS = [("RNN", 0), ("GRU", 0), ("LSTM", 0), ("LSTM", P)]
NAMING_IDS = ["RNN", "GRU", "LSTM", "LSTM_proj"]


def projection(name: str, proj_size: int) -> dict:
    return {"proj_size": proj_size} if proj_size else {}


@pytest.mark.parametrize(("name", "proj_size"), NAMINGS, ids=NAMING_IDS)
@pytest.mark.parametrize(("num_layers", "bidirectional", "bias"), LAYOUTS)
def test_rnn_parameters_named_shaped_and_ordered_like_torch(
    name, proj_size, num_layers, bidirectional, bias
):
    kwargs = dict(bias=bias, bidirectional=bidirectional, **projection(name, proj_size))
    theirs, ours = both(name, I, H, num_layers, **kwargs)
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [
        (n, p.shape) for n, p in theirs.named_parameters()
    ]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert ours._flat_weights_names == theirs._flat_weights_names
    assert [[p.shape for p in layer] for layer in ours.all_weights] == [
        [p.shape for p in layer] for layer in theirs.all_weights
    ]
    per_layer = (4 if bias else 2) + (1 if proj_size else 0)
    assert len(list(ours.parameters())) == per_layer * num_layers * (1 + bidirectional)
    assert not list(ours.buffers())


@pytest.mark.parametrize(("name", "proj_size"), NAMINGS, ids=NAMING_IDS)
@pytest.mark.parametrize(("num_layers", "bidirectional", "bias"), LAYOUTS)
def test_rnn_initial_parameters_equal_torch_under_same_seed(
    name, proj_size, num_layers, bidirectional, bias
):
    kwargs = dict(bias=bias, bidirectional=bidirectional, **projection(name, proj_size))
    theirs_cls, ours_cls = MODULES[name]
    torch.manual_seed(7)
    theirs = theirs_cls(I, H, num_layers, **kwargs)
    torch.manual_seed(7)
    ours = ours_cls(I, H, num_layers, **kwargs)
    for (p_name, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters(), strict=True):
        assert torch.equal(p, q), p_name
    # ... and the initialisation is not a constant: uniform in [-1/sqrt(H), 1/sqrt(H)].
    everything = torch.cat([p.flatten() for p in ours.parameters()])
    assert everything.abs().max() <= H**-0.5
    assert everything.std() > 0.1


@pytest.mark.parametrize("cell", CELLS)
def test_rnn_reset_parameters_redraws_like_torch(cell):
    theirs, ours = pair(cell, I, H, 2, bidirectional=True)
    torch.manual_seed(3)
    theirs.reset_parameters()
    torch.manual_seed(3)
    ours.reset_parameters()
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize(("name", "proj_size"), NAMINGS, ids=NAMING_IDS)
@pytest.mark.parametrize(("num_layers", "bidirectional", "bias"), LAYOUTS)
def test_rnn_state_dict_moves_both_ways_without_renaming(
    name, proj_size, num_layers, bidirectional, bias
):
    kwargs = dict(
        num_layers=num_layers, bias=bias, bidirectional=bidirectional, **projection(name, proj_size)
    )
    theirs, ours = both(name, I, H, **kwargs)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(p, q)
    with torch.no_grad():
        for p in ours.parameters():
            p.mul_(-2.0)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(p, q)
    x = torch.randn(T, B, I)
    torch.testing.assert_close(ours(x)[0], theirs(x)[0], atol=1e-5, rtol=0)


def test_rnn_has_torch_attributes():
    ours, theirs = rnnlab.RNN(I, H, 2, "relu"), torch.nn.RNN(I, H, 2, "relu")
    assert ours.mode == theirs.mode == "RNN_RELU"
    assert rnnlab.RNN(I, H).mode == "RNN_TANH"
    assert rnnlab.GRU(I, H).mode == torch.nn.GRU(I, H).mode == "GRU"
    assert rnnlab.LSTM(I, H).mode == torch.nn.LSTM(I, H).mode == "LSTM"
    assert ours.proj_size == theirs.proj_size == 0
    assert rnnlab.LSTM(I, H, proj_size=P).proj_size == P
    assert isinstance(ours.dropout, float)
    assert ours.flatten_parameters() is None
    assert all(p is q for p, q in zip(ours._flat_weights, ours.parameters(), strict=True))


# ---------------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("cell", CELLS)
def test_rnn_with_dropout_in_eval_mode_matches_torch(impl, cell):
    theirs, ours = pair(
        cell, I, H, 3, dropout=0.5, bidirectional=True, dtype=torch.float64, impl=impl
    )
    theirs.eval(), ours.eval()
    x, h0 = random_input(False, torch.float64), initial_state(ours, B)
    for lengths in (None, LENGTHS):
        expected = run_rnn(theirs, x, h0, lengths)
        actual = run_rnn(ours, x, h0, lengths)
        assert_same(expected, actual, TOLERANCE[torch.float64])
        assert_gradients_flow(actual)


@pytest.mark.parametrize("cell", CELLS)
def test_rnn_with_zero_dropout_in_train_mode_matches_torch(impl, cell):
    theirs, ours = pair(cell, I, H, 3, dropout=0.0, dtype=torch.float64, impl=impl)
    assert ours.training and theirs.training
    x, h0 = random_input(False, torch.float64), initial_state(ours, B)
    assert_same(run_rnn(theirs, x, h0), run_rnn(ours, x, h0), TOLERANCE[torch.float64])


@pytest.mark.parametrize("cell", CELLS)
def test_rnn_dropout_in_train_mode_changes_the_result(impl, cell):
    _, ours = pair(cell, I, H, 2, dropout=0.5, dtype=torch.float64, impl=impl)
    x = random_input(False, torch.float64)
    ours.train()
    first, second = ours(x)[0], ours(x)[0]
    ours.eval()
    deterministic = ours(x)[0]
    assert not torch.allclose(first, deterministic)
    assert not torch.allclose(first, second)  # a fresh mask per call
    assert torch.equal(ours(x)[0], deterministic)


@pytest.mark.parametrize("bidirectional", (False, True), ids=("uni", "bi"))
@pytest.mark.parametrize("cell", CELLS)
def test_rnn_dropout_falls_between_layers_only(impl, cell, bidirectional):
    """dropout=1 drops everything, so it is deterministic: each layer after the first sees
    zeros, the first layer still sees its input, and the output itself is not dropped; the
    same as torch's."""
    theirs, ours = pair(
        cell, I, H, 3, dropout=1.0, bidirectional=bidirectional, dtype=torch.float64, impl=impl
    )
    x = random_input(False, torch.float64)
    h0 = initial_state(ours, B)
    expected, actual = run_rnn(theirs, x, h0), run_rnn(ours, x, h0)
    assert_same(expected, actual, TOLERANCE[torch.float64])
    assert actual["grad_weight_ih_l1"].abs().sum() == 0
    assert actual["grad_weight_ih_l2"].abs().sum() == 0
    assert actual["grad_weight_ih_l0"].abs().sum() > 0
    assert actual["output"].abs().sum() > 0


# ------------------------------------------------------------------------ module plumbing


@pytest.mark.parametrize("cell", CELLS)
def test_rnn_double_and_to_dtype_then_matches_torch(impl, cell):
    theirs, ours = pair(cell, I, H, 2, bidirectional=True, impl=impl)
    x = random_input(False, torch.float64)
    for convert in (lambda m: m.double(), lambda m: m.to(torch.float64)):
        theirs, ours = convert(theirs), convert(ours)
        assert all(p.dtype == torch.float64 for p in ours.parameters())
        assert_same(run_rnn(theirs, x), run_rnn(ours, x), TOLERANCE[torch.float64])
        theirs, ours = theirs.float(), ours.float()
        assert all(p.dtype == torch.float32 for p in ours.parameters())


@pytest.mark.parametrize("cell", CELLS)
def test_rnn_deepcopy_is_equal_and_independent(impl, cell):
    _, ours = pair(cell, I, H, 2, bidirectional=True, impl=impl)
    clone = copy.deepcopy(ours)
    assert clone.impl == impl
    x = random_input(False, torch.float32)
    assert torch.equal(clone(x)[0], ours(x)[0])
    with torch.no_grad():
        clone.weight_hh_l0.zero_()
    assert not torch.equal(clone(x)[0], ours(x)[0])
    assert ours.weight_hh_l0.abs().sum() > 0


@pytest.mark.parametrize("cell", CELLS)
def test_rnn_pickles_through_state_dict_and_whole(impl, cell):
    _, ours = pair(cell, I, H, 2, bidirectional=True, impl=impl)
    x = random_input(True, torch.float32)
    ours.batch_first = True
    _, restored = pair(cell, I, H, 2, batch_first=True, bidirectional=True, impl=impl)
    restored.load_state_dict(pickle.loads(pickle.dumps(ours.state_dict())))
    assert torch.equal(restored(x)[0], ours(x)[0])
    whole = pickle.loads(pickle.dumps(ours))
    assert torch.equal(whole(x)[0], ours(x)[0])


@pytest.mark.parametrize("cell", CELLS)
def test_rnn_state_dict_survives_torch_save_and_weights_only_load(impl, cell):
    theirs, ours = pair(cell, I, H, 2, bidirectional=True, impl=impl)
    buffer = io.BytesIO()
    torch.save(ours.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh_theirs, fresh_ours = pair(cell, I, H, 2, bidirectional=True, impl=impl)
    fresh_theirs.load_state_dict(state, strict=True)
    fresh_ours.load_state_dict(state, strict=True)
    x = random_input(False, torch.float32)
    assert torch.equal(fresh_ours(x)[0], ours(x)[0])
    torch.testing.assert_close(fresh_theirs(x)[0], theirs(x)[0], atol=0, rtol=0)


@pytest.mark.parametrize("cell", CELLS)
def test_rnn_works_with_functional_call(impl, cell):
    theirs, ours = pair(cell, I, H, 2, dtype=torch.float64, impl=impl)
    params = {k: torch.randn_like(v) for k, v in theirs.named_parameters()}
    x = random_input(False, torch.float64)
    want = torch.func.functional_call(theirs, params, (x,))
    got = torch.func.functional_call(ours, params, (x,))
    for w, g in zip((want[0], *as_tuple(want[1])), (got[0], *as_tuple(got[1])), strict=True):
        torch.testing.assert_close(g, w, atol=1e-10, rtol=0)
    assert not torch.allclose(ours(x)[0], got[0])  # the swapped-in weights were used


REPR_CASES = [
    dict(),
    dict(num_layers=2),
    dict(nonlinearity="relu"),
    dict(bias=False),
    dict(batch_first=True),
    dict(num_layers=3, dropout=0.25),
    dict(bidirectional=True),
    dict(num_layers=2, nonlinearity="relu", bias=False, batch_first=True, dropout=0.5),
    dict(proj_size=P),
    dict(proj_size=P, num_layers=2, bias=False),
]


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        (name, kwargs)
        for name in MODULES
        for kwargs in REPR_CASES
        # only the Elman RNN has a nonlinearity, only the LSTM projects
        if ("nonlinearity" not in kwargs or name == "RNN")
        and ("proj_size" not in kwargs or name == "LSTM")
    ],
    ids=lambda value: ",".join(value) or "defaults" if isinstance(value, dict) else value,
)
def test_rnn_repr_matches_torch(name, kwargs):
    theirs, ours = both(name, I, H, **kwargs)
    assert repr(ours) == repr(theirs)


@pytest.mark.parametrize("name", MODULES)
def test_rnn_repr_names_a_non_default_impl(name):
    assert repr(MODULES[name][1](I, H, impl="reference")) == f"{name}({I}, {H}, impl='reference')"


@pytest.mark.parametrize("cell", CELLS)
def test_rnn_no_grad_forward_matches_torch(impl, cell):
    theirs, ours = pair(cell, I, H, 2, bidirectional=True, dtype=torch.float64, impl=impl)
    x = random_input(False, torch.float64)
    with torch.no_grad():
        want, got = theirs(x), ours(x)
    assert not got[0].requires_grad
    for w, g in zip((want[0], *as_tuple(want[1])), (got[0], *as_tuple(got[1])), strict=True):
        torch.testing.assert_close(g, w, atol=1e-10, rtol=0)


# ------------------------------------------------------------ no torch RNN kernels inside

# torch's recurrent kernels: the layers, the cells, oneDNN's LSTM layer and the fused cells
KERNEL_NAMES = [
    "rnn_tanh",
    "rnn_relu",
    "rnn_tanh_cell",
    "rnn_relu_cell",
    "gru",
    "gru_cell",
    "lstm",
    "lstm_cell",
    "mkldnn_rnn_layer",
    "_thnn_fused_lstm_cell",
    "_thnn_fused_gru_cell",
]
TORCH_RNN_KERNELS = [
    (owner, name) for owner in (torch._VF, torch) for name in KERNEL_NAMES if hasattr(owner, name)
]


class FunctionNames(TorchFunctionMode):
    """Records the name of every torch function called from Python while active."""

    def __init__(self):
        super().__init__()
        self.names: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.names.append(getattr(func, "__name__", repr(func)))
        return func(*args, **(kwargs or {}))


def forbid_torch_rnn_kernels(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a torch RNN kernel was called")

    for owner, name in TORCH_RNN_KERNELS:
        monkeypatch.setattr(owner, name, forbidden)
    for name in ("mkldnn_rnn_layer", "_thnn_fused_lstm_cell", "_thnn_fused_gru_cell"):
        # the ATen ops behind them, should any path reach them without torch's Python names
        monkeypatch.setattr(torch.ops.aten, name, forbidden, raising=False)


def test_torch_rnn_kernel_detectors_work(monkeypatch):
    """The two detectors below see torch's own modules' kernels, so their silence means
    something."""
    x = torch.randn(T, B, I)
    seen_names = []
    for module in (torch.nn.RNN(I, H), torch.nn.GRU(I, H), torch.nn.LSTM(I, H)):
        with FunctionNames() as seen:
            module(x)
        seen_names += seen.names
    assert {"rnn_tanh", "gru", "lstm"} <= set(seen_names)
    assert {name for _, name in TORCH_RNN_KERNELS} >= {"gru", "lstm", "gru_cell", "lstm_cell"}
    forbid_torch_rnn_kernels(monkeypatch)
    for module in (
        torch.nn.RNN(I, H, nonlinearity="relu"),
        torch.nn.GRU(I, H),
        torch.nn.LSTM(I, H),
        torch.nn.LSTM(I, H, proj_size=P),
    ):
        with pytest.raises(AssertionError, match="torch RNN kernel"):
            module(x)
    for cell in (torch.nn.RNNCell(I, H), torch.nn.GRUCell(I, H), torch.nn.LSTMCell(I, H)):
        with pytest.raises(AssertionError, match="torch RNN kernel"):
            cell(x[0])


@pytest.mark.parametrize("cell", CELLS)
def test_rnn_never_calls_torch_rnn_kernels(impl, monkeypatch, cell):
    forbid_torch_rnn_kernels(monkeypatch)
    _, ours = pair(cell, I, H, 2, bidirectional=True, dtype=torch.float64, impl=impl)
    x, h0 = random_input(False, torch.float64), initial_state(ours, B)
    for lengths in (None, LENGTHS):
        with FunctionNames() as seen:
            result = run_rnn(ours, x, h0, lengths)
        assert_gradients_flow(result)
        assert not [name for name in seen.names if "rnn" in name or "lstm" in name or "gru" in name]
        assert any(name.startswith(("addmm", "linear", "mm", "matmul")) for name in seen.names)
