"""The compiled loops of the fused layers (loops.cpp) against the same loops in Python (loops.py,
whose steps are torch ops): the whole layer of every cell, forward and backward, equal on
padded and packed batches, both directions, with and without biases and projection, at hidden
sizes the vector loop treats differently, in float32 and float64; chosen wherever they build;
and where they cannot be built (no compiler), one warning and the same results from loops.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import rnnlab
from rnn_equivalence import as_tuple, initial_state, weighted_sum
from rnnlab.nn.fused import compiled, loops

# The compiled steps compute tanh as 2 sigmoid(2x) - 1 with ATen's fast exp: in float32 a few
# epsilons absolute, carried through the layers; the project's float32 tolerance.
TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-5}
# hidden sizes: below one vector, a vector and a tail (AVX-512 holds 16 floats, 8 doubles)
HIDDEN = (1, 5, 16, 37)
T, B, I = 7, 5, 3  # noqa: E741 (I is the input size, as in the equations)
LENGTHS = (4, 7, 1, 4, 2)


@pytest.fixture(scope="module")
def built():
    module = compiled.compiled_loops()
    if module is None:
        pytest.skip("the compiled loops cannot be built here (no C++ compiler)")
    return module


def run(module, x, h0, lengths):
    """Output, final state and every gradient of `module` on x (packed when `lengths`)."""
    leaves = [x.clone().requires_grad_(), *(s.clone().requires_grad_() for s in as_tuple(h0))]
    inp = leaves[0]
    if lengths is not None:
        inp = pack_padded_sequence(inp, torch.tensor(lengths), enforce_sorted=False)
    state0 = tuple(leaves[1:]) if len(leaves) > 2 else leaves[1]
    out, state = module(inp, state0)
    out = out.data if lengths is not None else out
    loss = weighted_sum(out) + sum(weighted_sum(s) for s in as_tuple(state))
    grads = torch.autograd.grad(loss, [*leaves, *module.parameters()])
    return [out, *as_tuple(state), *grads]


LAYERS = [  # (module, its arguments): biases or none, and an LSTM's projection to 2 units
    ("RNN", {}),
    ("RNN", {"nonlinearity": "relu", "bias": False}),
    ("GRU", {}),
    ("GRU", {"bias": False}),
    ("LSTM", {}),
    ("LSTM", {"bias": False}),
    ("LSTM", {"proj_size": 2}),
]


@pytest.mark.parametrize("dtype", (torch.float64, torch.float32), ids=str)
@pytest.mark.parametrize("packed", (False, True), ids=("padded", "packed"))
@pytest.mark.parametrize(
    ("name", "kwargs", "H"),
    [
        (name, kwargs, H)
        for name, kwargs in LAYERS
        for H in HIDDEN
        if kwargs.get("proj_size", 0) < H
    ],
)
def test_compiled_loops_equal_the_python_loops(built, monkeypatch, name, kwargs, H, packed, dtype):
    module = getattr(rnnlab, name)(I, H, 2, bidirectional=True, dtype=dtype, **kwargs)
    x = torch.randn(T, B, I, dtype=dtype)
    h0 = initial_state(module, B, dtype)
    lengths = LENGTHS if packed else None
    assert compiled.layer_loops(x) is built
    compiled_results = run(module, x, h0, lengths)
    monkeypatch.setattr(compiled, "compiled_loops", lambda: None)  # now loops.py runs
    assert compiled.layer_loops(x) is loops
    python_results = run(module, x, h0, lengths)
    for got, want in zip(compiled_results, python_results, strict=True):
        torch.testing.assert_close(got, want, atol=TOLERANCE[dtype], rtol=0)


def test_the_fused_layers_use_the_compiled_loops_where_they_build(built):
    assert compiled.layer_loops(torch.randn(2, dtype=torch.float32)) is built
    assert compiled.layer_loops(torch.randn(2, dtype=torch.float64)) is built
    assert compiled.layer_loops(torch.randn(2, dtype=torch.bfloat16)) is loops  # the others


def test_compiled_loops_refuse_what_they_cannot_read(built):
    rows, H = 3, 4
    gi, gh, out, h0 = (
        torch.randn(rows, 3 * H),
        torch.empty(rows, 3 * H),
        torch.empty(rows, H),
        torch.randn(rows, H),
    )
    w = torch.randn(H, 3 * H)
    with pytest.raises(RuntimeError, match="contiguous"):
        built.gru_forward(gi, gh, torch.empty(0), w, torch.randn(H, rows).t(), [rows], False, out)
    with pytest.raises(RuntimeError, match="mixed dtypes"):
        built.gru_forward(gi, gh, torch.empty(0), w, h0.double(), [rows], False, out)


SCRIPT = """
import json, warnings, torch, rnnlab
warnings.simplefilter("always")
torch.manual_seed(0)
results = {}
with warnings.catch_warnings(record=True) as caught:
    for name in ("RNN", "GRU", "LSTM"):
        module = getattr(rnnlab, name)(3, 5, 2, bidirectional=True, dtype=torch.float64)
        x = torch.randn(6, 4, 3, dtype=torch.float64, requires_grad=True)
        output, state = module(x)
        state = state if isinstance(state, tuple) else (state,)
        loss = output.sin().sum() + sum(s.cos().sum() for s in state)
        grads = torch.autograd.grad(loss, [x, *module.parameters()])
        results[name] = [t.flatten().tolist() for t in (output, *state, *grads)]
messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
print(json.dumps({"results": results, "warnings": messages}))
"""


def run_script(env: dict[str, str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return json.loads(done.stdout.splitlines()[-1])


def test_without_a_compiler_one_warning_and_the_same_results(tmp_path):
    """A machine with no C++ compiler (CXX names none, nothing built yet): the first fused GRU
    warns once that the compiled loops could not be built, and every result equals what
    loops.py gives (RNNLAB_COMPILED=0) to the last bit."""
    hidden = run_script(
        {"CXX": str(tmp_path / "no-compiler"), "TORCH_EXTENSIONS_DIR": str(tmp_path)}
    )
    python = run_script({"RNNLAB_COMPILED": "0"})
    assert len(hidden["warnings"]) == 1
    assert "could not be built" in hidden["warnings"][0]
    assert python["warnings"] == []
    assert hidden["results"] == python["results"]
