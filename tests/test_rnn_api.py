"""rnnlab.RNN as a drop-in for torch.nn.RNN: constructor, checks and errors, parameters and
their initialisation, dropout, module plumbing (dtype, copies, serialisation, repr), and the
promise that the fused path never calls torch's own RNN kernels."""

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
    IMPLS,
    LENGTHS,
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

# (num_layers, bidirectional, bias) covering every parameter-naming case.
LAYOUTS = [(1, False, True), (2, True, True), (3, True, False), (2, False, False)]


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


def test_rnn_signature_matches_torch():
    (torch_init, _) = typing.get_overloads(torch.nn.RNN.__init__)
    theirs = list(inspect.signature(torch_init).parameters.values())
    ours = list(inspect.signature(rnnlab.RNN.__init__).parameters.values())
    assert [(p.name, p.default, p.kind) for p in ours[: len(theirs)]] == [
        (p.name, p.default, p.kind) for p in theirs
    ]
    extra = ours[len(theirs) :]
    assert [(p.name, p.default, p.kind) for p in extra] == [
        ("impl", "fused", inspect.Parameter.KEYWORD_ONLY),
        ("proj_size", None, inspect.Parameter.KEYWORD_ONLY),  # refused, as torch refuses it
    ]


def test_rnn_positional_arguments_in_torch_order():
    args = (I, H, 2, "relu", False, True, 0.25, True)
    theirs, ours = torch.nn.RNN(*args), rnnlab.RNN(*args)
    for name in (
        "input_size",
        "hidden_size",
        "num_layers",
        "nonlinearity",
        "bias",
        "batch_first",
        "dropout",
        "bidirectional",
        "mode",
        "proj_size",
    ):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert ours.nonlinearity == "relu" and ours.dropout == 0.25 and ours.batch_first


def test_rnn_device_and_dtype_arguments_like_torch():
    # torch.nn.RNN's documented signature has device and dtype at positions 9 and 10, but its
    # *args plumbing hands position 9 to RNNBase's proj_size, so torch only takes them by
    # keyword; rnnlab takes them either way.
    theirs = torch.nn.RNN(
        I, H, 2, "tanh", True, False, 0.0, True, device="cpu", dtype=torch.float64
    )
    ours = rnnlab.RNN(I, H, 2, "tanh", True, False, 0.0, True, "cpu", torch.float64)
    for (name, p), (torch_name, q) in zip(
        ours.named_parameters(), theirs.named_parameters(), strict=True
    ):
        assert name == torch_name
        assert (p.dtype, p.device) == (q.dtype, q.device) == (torch.float64, torch.device("cpu"))


def test_rnn_impl_is_keyword_only_and_checked():
    assert rnnlab.RNN(I, H).impl == "fused"
    assert rnnlab.RNN(I, H, impl="reference").impl == "reference"
    with pytest.raises(TypeError):
        rnnlab.RNN(I, H, 1, "tanh", True, False, 0.0, False, None, None, "reference")
    with pytest.raises(ValueError, match="impl"):
        rnnlab.RNN(I, H, impl="cudnn")


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
    # Two bad arguments at once: the one torch checks first wins.
    "nonlinearity_and_dropout": dict(nonlinearity="sigmoid", dropout=2.0),
    "dropout_and_bias": dict(dropout=2.0, bias="yes"),
    "bias_and_input_size": dict(bias=None, input_size=0),
}


@pytest.mark.parametrize("overrides", BAD_ARGUMENTS.values(), ids=BAD_ARGUMENTS.keys())
def test_rnn_rejects_bad_arguments_like_torch(overrides):
    kwargs = dict(input_size=I, hidden_size=H, num_layers=2) | overrides
    want = outcome(lambda: torch.nn.RNN(**kwargs))
    got = outcome(lambda: rnnlab.RNN(**kwargs))
    assert want[0] != "ok", "the case must be an error for torch"
    assert got[0] is want[0]
    if "nonsense" not in overrides:  # that message names the class: RNNBase.__init__() ...
        assert got[1] == want[1]


def test_rnn_dropout_with_one_layer_warns_like_torch():
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        torch.nn.RNN(I, H, dropout=0.5)
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        rnnlab.RNN(I, H, dropout=0.5)
    assert outcome(lambda: rnnlab.RNN(I, H, dropout=0.5)) == outcome(
        lambda: torch.nn.RNN(I, H, dropout=0.5)
    )


@pytest.mark.parametrize("kwargs", [dict(num_layers=2, dropout=0.5), dict(dropout=0.0)])
def test_rnn_warns_only_when_torch_does(kwargs):
    assert outcome(lambda: rnnlab.RNN(I, H, **kwargs)) == ("ok", [])
    assert outcome(lambda: torch.nn.RNN(I, H, **kwargs)) == ("ok", [])


# ----------------------------------------------------------------------- forward's checks


def packed(x, lengths=LENGTHS):
    return pack_padded_sequence(x, torch.tensor(lengths), enforce_sorted=False)


# Wrong calls of a bidirectional 2-layer RNN(I, H), each as () -> (input, hx).
BAD_CALLS = {
    "input_4d": lambda: (torch.randn(T, B, I, 1), None),
    "input_1d": lambda: (torch.randn(I), None),
    "input_wrong_features": lambda: (torch.randn(T, B, I + 1), None),
    "input_float64": lambda: (torch.randn(T, B, I, dtype=torch.float64), None),
    "input_int64": lambda: (torch.ones(T, B, I, dtype=torch.int64), None),
    "unbatched_input_wrong_features": lambda: (torch.randn(T, I + 2), None),
    "hx_wrong_batch": lambda: (torch.randn(T, B, I), torch.randn(4, B + 1, H)),
    "hx_wrong_hidden": lambda: (torch.randn(T, B, I), torch.randn(4, B, H + 1)),
    "hx_wrong_layers": lambda: (torch.randn(T, B, I), torch.randn(2, B, H)),
    "hx_2d_for_batched": lambda: (torch.randn(T, B, I), torch.randn(4, H)),
    "hx_3d_for_unbatched": lambda: (torch.randn(T, I), torch.randn(4, 1, H)),
    "hx_wrong_hidden_unbatched": lambda: (torch.randn(T, I), torch.randn(4, H + 1)),
    "hx_float64": lambda: (torch.randn(T, B, I), torch.randn(4, B, H, dtype=torch.float64)),
    "packed_wrong_features": lambda: (packed(torch.randn(T, B, I + 1)), None),
    "packed_float64": lambda: (packed(torch.randn(T, B, I, dtype=torch.float64)), None),
    "packed_hx_wrong_hidden": lambda: (packed(torch.randn(T, B, I)), torch.randn(4, B, H + 1)),
    "packed_hx_2d": lambda: (packed(torch.randn(T, B, I)), torch.randn(4, H)),
    "empty_sequence": lambda: (torch.randn(0, B, I), None),
}


@pytest.mark.parametrize("impl_name", IMPLS)
@pytest.mark.parametrize("case", BAD_CALLS)
def test_rnn_forward_rejects_bad_input_like_torch(case, impl_name):
    theirs, ours = rnn_pair(I, H, 2, bidirectional=True, impl=impl_name)
    x, hx = BAD_CALLS[case]()
    want = outcome(lambda: theirs(x, hx))
    got = outcome(lambda: ours(x, hx))
    assert want[0] != "ok", "the case must be an error for torch"
    assert got == want  # same exception type and message


@pytest.mark.parametrize("bidirectional", (False, True), ids=("uni", "bi"))
def test_rnn_accepts_empty_batch_like_torch(impl, bidirectional):
    theirs, ours = rnn_pair(I, H, 2, bidirectional=bidirectional, impl=impl)
    x = torch.randn(T, 0, I)
    want_out, want_h = theirs(x)
    got_out, got_h = ours(x)
    assert got_out.shape == want_out.shape
    assert got_h.shape == want_h.shape


# ------------------------------------------------------------- parameters and initialisation


@pytest.mark.parametrize(("num_layers", "bidirectional", "bias"), LAYOUTS)
def test_rnn_parameters_named_shaped_and_ordered_like_torch(num_layers, bidirectional, bias):
    theirs = torch.nn.RNN(I, H, num_layers, bias=bias, bidirectional=bidirectional)
    ours = rnnlab.RNN(I, H, num_layers, bias=bias, bidirectional=bidirectional)
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [
        (n, p.shape) for n, p in theirs.named_parameters()
    ]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert ours._flat_weights_names == theirs._flat_weights_names
    assert [[p.shape for p in layer] for layer in ours.all_weights] == [
        [p.shape for p in layer] for layer in theirs.all_weights
    ]
    assert len(list(ours.parameters())) == (4 if bias else 2) * num_layers * (1 + bidirectional)
    assert not list(ours.buffers())


@pytest.mark.parametrize(("num_layers", "bidirectional", "bias"), LAYOUTS)
def test_rnn_initial_parameters_equal_torch_under_same_seed(num_layers, bidirectional, bias):
    torch.manual_seed(7)
    theirs = torch.nn.RNN(I, H, num_layers, bias=bias, bidirectional=bidirectional)
    torch.manual_seed(7)
    ours = rnnlab.RNN(I, H, num_layers, bias=bias, bidirectional=bidirectional)
    for (name, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters(), strict=True):
        assert torch.equal(p, q), name
    # ... and the initialisation is not a constant: uniform in [-1/sqrt(H), 1/sqrt(H)].
    everything = torch.cat([p.flatten() for p in ours.parameters()])
    assert everything.abs().max() <= H**-0.5
    assert everything.std() > 0.1


def test_rnn_reset_parameters_redraws_like_torch():
    theirs, ours = rnn_pair(I, H, 2, bidirectional=True)
    torch.manual_seed(3)
    theirs.reset_parameters()
    torch.manual_seed(3)
    ours.reset_parameters()
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize(("num_layers", "bidirectional", "bias"), LAYOUTS)
def test_rnn_state_dict_moves_both_ways_without_renaming(num_layers, bidirectional, bias):
    kwargs = dict(num_layers=num_layers, bias=bias, bidirectional=bidirectional)
    theirs, ours = torch.nn.RNN(I, H, **kwargs), rnnlab.RNN(I, H, **kwargs)
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
    assert ours.proj_size == theirs.proj_size == 0
    assert isinstance(ours.dropout, float)
    assert ours.flatten_parameters() is None
    assert all(p is q for p, q in zip(ours._flat_weights, ours.parameters(), strict=True))


# ---------------------------------------------------------------------------------- dropout


def test_rnn_with_dropout_in_eval_mode_matches_torch(impl):
    theirs, ours = rnn_pair(
        I, H, 3, dropout=0.5, bidirectional=True, dtype=torch.float64, impl=impl
    )
    theirs.eval(), ours.eval()
    x, h0 = random_input(False, torch.float64), torch.randn(6, B, H, dtype=torch.float64)
    for lengths in (None, LENGTHS):
        expected = run_rnn(theirs, x, h0, lengths)
        actual = run_rnn(ours, x, h0, lengths)
        assert_same(expected, actual, TOLERANCE[torch.float64])
        assert_gradients_flow(actual)


def test_rnn_with_zero_dropout_in_train_mode_matches_torch(impl):
    theirs, ours = rnn_pair(I, H, 3, dropout=0.0, dtype=torch.float64, impl=impl)
    assert ours.training and theirs.training
    x, h0 = random_input(False, torch.float64), torch.randn(3, B, H, dtype=torch.float64)
    assert_same(run_rnn(theirs, x, h0), run_rnn(ours, x, h0), TOLERANCE[torch.float64])


def test_rnn_dropout_in_train_mode_changes_the_result(impl):
    _, ours = rnn_pair(I, H, 2, dropout=0.5, dtype=torch.float64, impl=impl)
    x = random_input(False, torch.float64)
    ours.train()
    first, second = ours(x)[0], ours(x)[0]
    ours.eval()
    deterministic = ours(x)[0]
    assert not torch.allclose(first, deterministic)
    assert not torch.allclose(first, second)  # a fresh mask per call
    assert torch.equal(ours(x)[0], deterministic)


@pytest.mark.parametrize("bidirectional", (False, True), ids=("uni", "bi"))
def test_rnn_dropout_falls_between_layers_only(impl, bidirectional):
    """dropout=1 drops everything, so it is deterministic: each layer after the first sees
    zeros, the first layer still sees its input, and the output itself is not dropped; the
    same as torch's."""
    theirs, ours = rnn_pair(
        I, H, 3, dropout=1.0, bidirectional=bidirectional, dtype=torch.float64, impl=impl
    )
    x = random_input(False, torch.float64)
    h0 = torch.randn(3 * (1 + bidirectional), B, H, dtype=torch.float64)
    expected, actual = run_rnn(theirs, x, h0), run_rnn(ours, x, h0)
    assert_same(expected, actual, TOLERANCE[torch.float64])
    assert actual["grad_weight_ih_l1"].abs().sum() == 0
    assert actual["grad_weight_ih_l2"].abs().sum() == 0
    assert actual["grad_weight_ih_l0"].abs().sum() > 0
    assert actual["output"].abs().sum() > 0


# ------------------------------------------------------------------------ module plumbing


def test_rnn_double_and_to_dtype_then_matches_torch(impl):
    theirs, ours = rnn_pair(I, H, 2, bidirectional=True, impl=impl)
    x = random_input(False, torch.float64)
    for convert in (lambda m: m.double(), lambda m: m.to(torch.float64)):
        theirs, ours = convert(theirs), convert(ours)
        assert all(p.dtype == torch.float64 for p in ours.parameters())
        assert_same(run_rnn(theirs, x), run_rnn(ours, x), TOLERANCE[torch.float64])
        theirs, ours = theirs.float(), ours.float()
        assert all(p.dtype == torch.float32 for p in ours.parameters())


def test_rnn_deepcopy_is_equal_and_independent(impl):
    _, ours = rnn_pair(I, H, 2, bidirectional=True, impl=impl)
    clone = copy.deepcopy(ours)
    assert clone.impl == impl
    x = random_input(False, torch.float32)
    assert torch.equal(clone(x)[0], ours(x)[0])
    with torch.no_grad():
        clone.weight_hh_l0.zero_()
    assert not torch.equal(clone(x)[0], ours(x)[0])
    assert ours.weight_hh_l0.abs().sum() > 0


def test_rnn_pickles_through_state_dict_and_whole(impl):
    _, ours = rnn_pair(I, H, 2, bidirectional=True, impl=impl)
    x = random_input(True, torch.float32)
    ours.batch_first = True
    restored = rnnlab.RNN(I, H, 2, batch_first=True, bidirectional=True, impl=impl)
    restored.load_state_dict(pickle.loads(pickle.dumps(ours.state_dict())))
    assert torch.equal(restored(x)[0], ours(x)[0])
    whole = pickle.loads(pickle.dumps(ours))
    assert torch.equal(whole(x)[0], ours(x)[0])


def test_rnn_state_dict_survives_torch_save_and_weights_only_load(impl):
    theirs, ours = rnn_pair(I, H, 2, bidirectional=True, impl=impl)
    buffer = io.BytesIO()
    torch.save(ours.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh_theirs = torch.nn.RNN(I, H, 2, bidirectional=True)
    fresh_ours = rnnlab.RNN(I, H, 2, bidirectional=True, impl=impl)
    fresh_theirs.load_state_dict(state, strict=True)
    fresh_ours.load_state_dict(state, strict=True)
    x = random_input(False, torch.float32)
    assert torch.equal(fresh_ours(x)[0], ours(x)[0])
    torch.testing.assert_close(fresh_theirs(x)[0], theirs(x)[0], atol=0, rtol=0)


def test_rnn_works_with_functional_call(impl):
    theirs, ours = rnn_pair(I, H, 2, dtype=torch.float64, impl=impl)
    params = {k: torch.randn_like(v) for k, v in theirs.named_parameters()}
    x = random_input(False, torch.float64)
    want = torch.func.functional_call(theirs, params, (x,))
    got = torch.func.functional_call(ours, params, (x,))
    for w, g in zip(want, got, strict=True):
        torch.testing.assert_close(g, w, atol=1e-10, rtol=0)
    assert not torch.allclose(ours(x)[0], got[0])  # the swapped-in weights were used


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(num_layers=2),
        dict(nonlinearity="relu"),
        dict(bias=False),
        dict(batch_first=True),
        dict(num_layers=3, dropout=0.25),
        dict(bidirectional=True),
        dict(num_layers=2, nonlinearity="relu", bias=False, batch_first=True, dropout=0.5),
    ],
    ids=lambda kwargs: ",".join(kwargs) or "defaults",
)
def test_rnn_repr_matches_torch(kwargs):
    assert repr(rnnlab.RNN(I, H, **kwargs)) == repr(torch.nn.RNN(I, H, **kwargs))


def test_rnn_repr_names_a_non_default_impl():
    assert repr(rnnlab.RNN(I, H, impl="reference")) == f"RNN({I}, {H}, impl='reference')"


def test_rnn_no_grad_forward_matches_torch(impl):
    theirs, ours = rnn_pair(I, H, 2, bidirectional=True, dtype=torch.float64, impl=impl)
    x = random_input(False, torch.float64)
    with torch.no_grad():
        want, got = theirs(x), ours(x)
    assert not got[0].requires_grad
    for w, g in zip(want, got, strict=True):
        torch.testing.assert_close(g, w, atol=1e-10, rtol=0)


# ------------------------------------------------------------ no torch RNN kernels inside

TORCH_RNN_KERNELS = [
    (torch._VF, "rnn_tanh"),
    (torch._VF, "rnn_relu"),
    (torch._VF, "rnn_tanh_cell"),
    (torch._VF, "rnn_relu_cell"),
    (torch, "rnn_tanh"),
    (torch, "rnn_relu"),
    (torch, "rnn_tanh_cell"),
    (torch, "rnn_relu_cell"),
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


def test_torch_rnn_kernel_detectors_work(monkeypatch):
    """The two detectors below see torch.nn.RNN's own kernel, so their silence means something."""
    x = torch.randn(T, B, I)
    with FunctionNames() as seen:
        torch.nn.RNN(I, H)(x)
    assert "rnn_tanh" in seen.names
    forbid_torch_rnn_kernels(monkeypatch)
    with pytest.raises(AssertionError, match="torch RNN kernel"):
        torch.nn.RNN(I, H, nonlinearity="relu")(x)
    with pytest.raises(AssertionError, match="torch RNN kernel"):
        torch.nn.RNNCell(I, H)(x[0])


@pytest.mark.parametrize("nonlinearity", ("tanh", "relu"))
def test_rnn_fused_never_calls_torch_rnn_kernels(impl, monkeypatch, nonlinearity):
    forbid_torch_rnn_kernels(monkeypatch)
    ours = rnnlab.RNN(I, H, 2, nonlinearity, bidirectional=True, dtype=torch.float64, impl=impl)
    x, h0 = random_input(False, torch.float64), torch.randn(4, B, H, dtype=torch.float64)
    for lengths in (None, LENGTHS):
        with FunctionNames() as seen:
            result = run_rnn(ours, x, h0, lengths)
        assert_gradients_flow(result)
        assert not [name for name in seen.names if "rnn" in name or "lstm" in name or "gru" in name]
        assert any(name.startswith(("addmm", "linear", "mm", "matmul")) for name in seen.names)
