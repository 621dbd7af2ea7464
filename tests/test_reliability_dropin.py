"""rnnlab.RNN, GRU and LSTM go wherever torch.nn's go: torch.jit.trace, torch.export, both ONNX
exporters (run back with onnxruntime), torch.compile, CPU autocast in bfloat16 and float16, and
the refusal of an h0 whose dtype is not the input's. Each test runs torch's module through the
same tool with the same weights and compares.

The fused path hands its layers to the reference loop while traced, exported or under
autocast (rnn.py, `_layer_for_this_call`); the last test pins that it does so only there.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import rnnlab
from rnn_equivalence import CELLS, as_tuple, initial_state, native_torch
from rnnlab.nn import rnn as rnn_module

I, H = 3, 5  # noqa: E741 (input features, hidden units: the equations' names)
T, B, OTHER_B = 6, 4, 7  # steps, batch, and a second batch size the recorded module must take
LENGTHS = (3, 6, 1, 3)  # unsorted, with a tie, for packed input
IMPLS = ("fused", "reference")
# (num_layers, bidirectional, batch_first): one layout per case that changes the recorded
# graph (depth, the reverse direction, the transposes); each for every cell of CELLS.
LAYOUTS = [(1, False, False), (2, True, False), (2, False, True)]
LAYOUT_IDS = ["one_layer", "bidirectional", "batch_first"]

# torch.jit.trace (and the classic ONNX exporter, built on it) warns, for torch.nn.RNN as for
# rnnlab.RNN, that it is deprecated and that Python control flow is frozen into the trace.
ignore_trace_deprecation = pytest.mark.filterwarnings("ignore:`torch.jit.trace:DeprecationWarning")
ignore_tracer_warnings = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")


def same_weights(*args, cell="rnn_tanh", impl="fused", dtype=torch.float32, **kwargs):
    """torch's module of `cell` (a key of CELLS) and rnnlab's, with the same weights."""
    theirs_cls, ours_cls, cell_kwargs = CELLS[cell]
    theirs = theirs_cls(*args, dtype=dtype, **cell_kwargs, **kwargs)
    ours = ours_cls(*args, dtype=dtype, impl=impl, **cell_kwargs, **kwargs)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return theirs, ours


def flat(result) -> list[torch.Tensor]:
    """A module's (output, state) as a flat list: output, h_n (and c_n)."""
    return [result[0], *as_tuple(result[1])]


def padded(batch_first: bool, batch: int = B, dtype=torch.float32) -> torch.Tensor:
    shape = (batch, T, I) if batch_first else (T, batch, I)
    return torch.randn(shape, dtype=dtype)  # (B, T, I) or (T, B, I)


def assert_outputs_equal(got, want, tol: float) -> None:
    got, want = (
        flat(got) if isinstance(got, tuple) else got,
        flat(want) if isinstance(want, tuple) else want,
    )
    for name, g, w in zip(("output", "h_n", "c_n"), got, want, strict=False):
        assert len(got) == len(want)
        assert g.shape == w.shape, name
        assert g.dtype == w.dtype, name
        torch.testing.assert_close(g, w, atol=tol, rtol=0, msg=lambda m, n=name: f"{n}: {m}")


# ------------------------------------------------------------------------- torch.jit.trace


@pytest.mark.parametrize(("num_layers", "bidirectional", "batch_first"), LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("cell", CELLS)
@ignore_trace_deprecation
@ignore_tracer_warnings
def test_traced_rnn_matches_torch_and_takes_another_batch_size(
    cell, impl, num_layers, bidirectional, batch_first
):
    theirs, ours = same_weights(
        I,
        H,
        num_layers,
        cell=cell,
        batch_first=batch_first,
        bidirectional=bidirectional,
        impl=impl,
        dtype=torch.float64,
    )
    x = padded(batch_first, dtype=torch.float64)
    h0 = initial_state(ours, B)
    traced_theirs = torch.jit.trace(theirs, (x, h0))
    traced_ours = torch.jit.trace(ours, (x, h0))
    assert_outputs_equal(traced_ours(x, h0), theirs(x, h0), 1e-10)

    other = padded(batch_first, OTHER_B, dtype=torch.float64)
    other_h0 = initial_state(ours, OTHER_B)
    want = traced_theirs(other, other_h0)  # torch's trace takes another batch size: so must ours
    assert_outputs_equal(want, theirs(other, other_h0), 1e-10)
    assert_outputs_equal(traced_ours(other, other_h0), want, 1e-10)


# ---------------------------------------------------------------------------- torch.export


@pytest.mark.parametrize(("num_layers", "bidirectional", "batch_first"), LAYOUTS, ids=LAYOUT_IDS)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("cell", CELLS)
# torch.nn's modules reassign their own _flat_weights list in forward; export warns about that.
@pytest.mark.filterwarnings("ignore:The tensor attributes self._flat_weights:UserWarning")
def test_exported_rnn_matches_torch_with_a_dynamic_batch(
    cell, impl, num_layers, bidirectional, batch_first
):
    theirs, ours = same_weights(
        I,
        H,
        num_layers,
        cell=cell,
        batch_first=batch_first,
        bidirectional=bidirectional,
        impl=impl,
        dtype=torch.float64,
    )
    assert all(p.requires_grad for p in ours.parameters())  # the case that failed
    x = padded(batch_first, dtype=torch.float64)
    batch = torch.export.Dim("batch")
    dynamic = ({0 if batch_first else 1: batch},)  # torch.nn.RNN exports this way too
    exported_theirs = torch.export.export(theirs, (x,), dynamic_shapes=dynamic).module()
    exported_ours = torch.export.export(ours, (x,), dynamic_shapes=dynamic).module()
    for inp in (x, padded(batch_first, OTHER_B, dtype=torch.float64)):
        want = theirs(inp)
        assert_outputs_equal(exported_theirs(inp), want, 1e-10)
        assert_outputs_equal(exported_ours(inp), want, 1e-10)


# --------------------------------------------------------------------- ONNX, onnxruntime


def run_onnx(path, x: torch.Tensor) -> list[torch.Tensor]:
    """The exported file run by onnxruntime on x: output, h_n (and c_n)."""
    onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [torch.from_numpy(a) for a in session.run(None, {"input": x.numpy()})]


@pytest.mark.parametrize("bidirectional", (False, True), ids=("uni", "bi"))
@pytest.mark.parametrize("dynamo", (False, True), ids=("classic_exporter", "dynamo_exporter"))
@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export")
@pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning")
# The dynamo exporter's own use of torch's pytree API, in torch 2.13 with onnxscript 0.7.
@pytest.mark.filterwarnings(
    r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning"
)
@ignore_trace_deprecation
@ignore_tracer_warnings
@pytest.mark.parametrize("cell", ("rnn_tanh", "gru", "lstm"))
def test_onnx_export_of_fused_rnn_runs_in_onnxruntime_like_torch(
    cell, dynamo, bidirectional, tmp_path
):
    pytest.importorskip("onnx", reason="the ONNX exporters need the onnx package")
    if dynamo:
        pytest.importorskip("onnxscript", reason="the dynamo ONNX exporter needs onnxscript")
    theirs, ours = same_weights(I, H, 2, cell=cell, bidirectional=bidirectional)
    ours.eval()
    x = padded(batch_first=False)
    path = tmp_path / "rnn.onnx"
    names = ["output", "h_n", "c_n"] if cell == "lstm" else ["output", "h_n"]
    torch.onnx.export(
        ours, (x,), path, dynamo=dynamo, input_names=["input"], output_names=names, verbose=False
    )
    # float32 through two different sets of matmul kernels: the project's float32 tolerance.
    assert_outputs_equal(run_onnx(path, x), [t.detach() for t in flat(theirs(x))], 1e-5)


# --------------------------------------------------------------------------- torch.compile


# The fused path only: inductor compiles for seconds per graph, and it is the path users get.
# Raised by torch's own internals while compiling: inductor for any module, and dynamo when it
# builds the ctx of an autograd.Function it traces (the fused path calls .apply, as it should).
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:.*Function'> should not be instantiated:DeprecationWarning")
# ... and when dynamo meets the `out=` tensors of the GRU's and LSTM's steps while it traces.
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning")
@pytest.mark.parametrize("cell", ("rnn_tanh", "gru", "lstm"))
def test_compiled_fused_rnn_equals_eager_forward_and_backward(cell):
    torch._dynamo.reset()
    _, ours = same_weights(I, H, 1, cell=cell, bidirectional=True)
    compiled = torch.compile(ours)
    x = padded(batch_first=False)
    results = []
    # Compile in this process: no pool of compile workers left spinning on a shared machine.
    with torch._inductor.config.patch(compile_threads=1):
        for module in (ours, compiled):
            leaf = x.clone().requires_grad_()
            output, *state = flat(module(leaf))
            loss = (output * torch.linspace(-1, 1, output.size(-1))).sum()
            loss = loss + sum(s.square().sum() for s in state)
            grads = torch.autograd.grad(loss, [leaf, *ours.parameters()])
            results.append([output, *state, *grads])
    eager, compiled_results = results
    for got, want in zip(compiled_results, eager, strict=True):
        # float32; inductor may fuse and reorder the pointwise work: the float32 tolerance.
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------- autocast


def autocast_inputs(kind: str, module):
    """(input, h0) of one kind: padded with h0, padded without, packed, unbatched."""
    x = padded(batch_first=False)  # (T, B, I)
    if kind == "packed":
        return pack_padded_sequence(x, torch.tensor(LENGTHS), enforce_sorted=False), None
    if kind == "unbatched":
        return x[:, 0], initial_state(module, None, torch.float32)  # (T, I), (D*L, H)
    return x, initial_state(module, B, torch.float32) if kind == "padded_with_h0" else None


# What torch's modules return under CPU autocast: the matmuls run in the lower precision; the
# RNN's state stays in it, while the GRU's and LSTM's mix it with their float32 state (the
# zeros of a missing h0, c0) and so come out in float32. rnnlab's modules are the same
# composition of ops and return the same. Compared with torch's native loop: its LSTM's
# oneDNN kernel (float32 padded input, oneDNN on) returns bfloat16 and has no float16 kernel.
AUTOCAST_DTYPES = {"rnn_tanh": "lower", "gru": "float32", "lstm": "float32"}


@pytest.mark.parametrize("kind", ("padded", "padded_with_h0", "packed", "unbatched"))
@pytest.mark.parametrize("dtype", (torch.bfloat16, torch.float16), ids=str)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("cell", ("rnn_tanh", "gru", "lstm"))
def test_rnn_under_cpu_autocast_matches_torch(cell, impl, dtype, kind):
    theirs, ours = same_weights(I, H, 2, cell=cell, bidirectional=True, impl=impl)
    x, h0 = autocast_inputs(kind, ours)
    with torch.autocast("cpu", dtype=dtype), native_torch():
        want = flat(theirs(x, h0))
        got = flat(ours(x, h0))
    if kind == "packed":
        want, got = [want[0].data, *want[1:]], [got[0].data, *got[1:]]
    # The dtypes torch returns (pinned, so that a change in torch shows here); ours agrees.
    returned = dtype if AUTOCAST_DTYPES[cell] == "lower" else torch.float32
    assert [t.dtype for t in want] == [returned] * len(want)
    # Both run every op in `dtype`, rounding to it after each; they can differ only by the
    # order in which a few roundings happen, so one unit of `dtype`'s precision (its eps,
    # relative, and absolute for the hidden states near 0) bounds the difference.
    eps = torch.finfo(dtype).eps
    for name, g, w in zip(("output", "h_n", "c_n")[: len(want)], got, want, strict=True):
        assert g.dtype == w.dtype, name
        torch.testing.assert_close(g, w, atol=eps, rtol=eps, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("dtype", (torch.bfloat16, torch.float16), ids=str)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("cell", ("rnn_tanh", "gru", "lstm"))
def test_rnn_under_cpu_autocast_trains_like_torch(cell, impl, dtype):
    theirs, ours = same_weights(I, H, 2, cell=cell, impl=impl)
    x = padded(batch_first=False)
    grads = []
    for module in (theirs, ours):
        with torch.autocast("cpu", dtype=dtype), native_torch():
            output, *state = flat(module(x))
        loss = output.float().square().sum() + sum(s.float().sum() for s in state)
        grads.append(torch.autograd.grad(loss, list(module.parameters())))
    for got, want in zip(*reversed(grads), strict=True):
        assert got.dtype == want.dtype == torch.float32  # the weights' own dtype, as torch's
        # A sum over T*B products of `dtype`-rounded values: a few units of eps, relative to
        # the gradient's scale.
        scale = want.abs().max().item()
        eps = torch.finfo(dtype).eps
        torch.testing.assert_close(got, want, atol=4 * eps * scale, rtol=4 * eps)


# ------------------------------------------------------------------ h0 of the wrong dtype


@pytest.mark.parametrize("kind", ("padded", "packed", "unbatched"))
@pytest.mark.parametrize("h0_dtype", (torch.int64, torch.float64, torch.bool), ids=str)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("cell", ("rnn_tanh", "gru", "lstm"))
def test_rnn_refuses_h0_of_another_dtype_like_torch(cell, impl, h0_dtype, kind):
    theirs, ours = same_weights(I, H, 2, cell=cell, impl=impl)
    x, _ = autocast_inputs(kind, ours)
    h0 = torch.zeros((2, H) if kind == "unbatched" else (2, B, H), dtype=h0_dtype)
    h0 = (h0, h0) if cell == "lstm" else h0
    # oneDNN's LSTM names its internals in this error (see native_torch)
    with native_torch(), pytest.raises(RuntimeError) as want:
        theirs(x, h0)
    with pytest.raises(RuntimeError) as got:
        ours(x, h0)
    assert str(got.value) == str(want.value)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("cell", ("rnn_tanh", "gru", "lstm"))
def test_rnn_refuses_int64_h0_under_autocast_like_torch(cell, impl):
    theirs, ours = same_weights(I, H, 2, cell=cell, impl=impl)
    x, h0 = padded(batch_first=False), torch.zeros(2, B, H, dtype=torch.int64)
    h0 = (h0, h0) if cell == "lstm" else h0
    with torch.autocast("cpu", dtype=torch.bfloat16), native_torch():
        with pytest.raises(RuntimeError) as want:
            theirs(x, h0)
        with pytest.raises(RuntimeError) as got:
            ours(x, h0)
    assert str(got.value) == str(want.value)


# ------------------------------------------------------------------------ torch.jit.script


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", ("RNN", "GRU", "LSTM"))
@pytest.mark.filterwarnings("ignore:`torch.jit.script:DeprecationWarning")
def test_jit_script_is_refused_with_the_reason_and_the_alternatives(name, impl):
    torch.jit.script(getattr(torch.nn, name)(I, H))  # torch's scripts
    ours = getattr(rnnlab, name)(I, H, impl=impl)
    with pytest.raises(RuntimeError, match=rf"rnnlab\.{name}.*torch\.jit\.script.*torch\.export"):
        torch.jit.script(ours)
    with pytest.raises(RuntimeError, match=r"torch\.jit\.script"):  # also inside a model
        torch.jit.script(torch.nn.Sequential(ours))


# ----------------------------------------------------- where the fused path hands over


@ignore_trace_deprecation
@ignore_tracer_warnings
def test_fused_path_hands_over_to_the_reference_loop_only_while_recording(monkeypatch):
    calls = dict.fromkeys(rnn_module.IMPLEMENTATIONS, 0)
    for name, layer in list(rnn_module.IMPLEMENTATIONS.items()):

        def counting(*args, name=name, layer=layer, **kwargs):
            calls[name] += 1
            return layer(*args, **kwargs)

        monkeypatch.setitem(rnn_module.IMPLEMENTATIONS, name, counting)
    ours = rnnlab.RNN(I, H)  # fused, one layer: one layer call per forward
    x = padded(batch_first=False)

    def ran(action) -> dict[str, int]:
        calls.update(dict.fromkeys(calls, 0))
        action()
        return dict(calls)

    def under_autocast():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ours(x)

    assert ran(lambda: ours(x)) == {"fused": 1, "reference": 0}
    # check_trace would rerun the module outside the trace, on the fused path, to compare.
    assert ran(lambda: torch.jit.trace(ours, x, check_trace=False)) == {"fused": 0, "reference": 1}
    assert ran(lambda: torch.export.export(ours, (x,))) == {"fused": 0, "reference": 1}
    assert ran(under_autocast) == {"fused": 0, "reference": 1}
    assert ran(lambda: ours(x)) == {"fused": 1, "reference": 0}  # and back afterwards
