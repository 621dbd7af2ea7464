"""The compiled pointwise steps of the fused GRU and LSTM (pointwise.cpp) against the same maths
as torch ops (pointwise.py): equal on random steps of every shape the vector loop treats
differently, in float32 and float64; chosen wherever they build; and where they cannot be
built (no compiler), one warning and the same results from the torch ops."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from rnnlab.nn.fused import compiled, pointwise

# The compiled loops compute tanh as 2 sigmoid(2x) - 1 with ATen's fast exp: in float32 a few
# epsilons absolute, carried through a handful of products; the project's float32 tolerance.
TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-5}
# hidden sizes: below one vector, a vector and a tail (AVX-512 holds 16 floats, 8 doubles),
# and wide enough that the rows are shared among threads
SIZES = [(1, 1), (3, 5), (4, 16), (7, 37), (64, 600)]


@pytest.fixture(scope="module")
def kernels():
    built = compiled.compiled_kernels()
    if built is None:
        pytest.skip("the compiled steps cannot be built here (no C++ compiler)")
    return built


def random_step(rows: int, H: int, dtype, gates: int) -> dict[str, torch.Tensor]:
    """One step's tensors: pre-activations (rows, G*H) and states (rows, H), in a range that
    reaches the activations' flat tails."""
    return {
        "gates": 3 * torch.randn(rows, gates * H, dtype=dtype),
        "other": 3 * torch.randn(rows, gates * H, dtype=dtype),
        "state": torch.randn(rows, H, dtype=dtype),
        "grad": torch.randn(rows, H, dtype=dtype),
        "carry": torch.randn(rows, H, dtype=dtype),
    }


def outputs_of(run, shapes: list[tuple[int, int]], dtype) -> list[torch.Tensor]:
    """Run `run` on fresh output buffers of `shapes`, filled with NaN so that an entry left
    unwritten shows, and return them."""
    outs = [torch.full(shape, float("nan"), dtype=dtype) for shape in shapes]
    run(*outs)
    return outs


def assert_all_close(got: list[torch.Tensor], want: list[torch.Tensor], dtype) -> None:
    for g, w in zip(got, want, strict=True):
        assert not g.isnan().any()
        torch.testing.assert_close(g, w, atol=TOLERANCE[dtype], rtol=0)


@pytest.mark.parametrize("with_bias", (True, False), ids=("bias", "no_bias"))
@pytest.mark.parametrize("dtype", (torch.float64, torch.float32), ids=str)
@pytest.mark.parametrize(("rows", "H"), SIZES)
def test_compiled_gru_steps_equal_the_torch_ops(kernels, rows, H, dtype, with_bias):
    step = random_step(rows, H, dtype, gates=3)
    bias = torch.randn(4 * H if with_bias else 0, dtype=dtype)
    results = []
    for module in (pointwise, kernels):
        gi, gh = step["gates"].clone(), step["other"].clone()  # become (r, z, n) and + b_hn
        h = outputs_of(
            lambda h, m=module, g=gi, k=gh: m.gru_forward(g, k, bias, step["state"], h),
            [(rows, H)],
            dtype,
        )
        backward = outputs_of(
            lambda dgi, dgh, carry, m=module, g=gi, k=gh: m.gru_backward(
                g, k, step["state"], step["grad"], step["carry"], dgi, dgh, carry
            ),
            [(rows, 3 * H), (rows, 3 * H), (rows, H)],
            dtype,
        )
        results.append([gi, gh, *h, *backward])
    assert_all_close(results[1], results[0], dtype)


@pytest.mark.parametrize("with_bias", (True, False), ids=("bias", "no_bias"))
@pytest.mark.parametrize("dtype", (torch.float64, torch.float32), ids=str)
@pytest.mark.parametrize(("rows", "H"), SIZES)
def test_compiled_lstm_steps_equal_the_torch_ops(kernels, rows, H, dtype, with_bias):
    step = random_step(rows, H, dtype, gates=4)
    bias = torch.randn(4 * H if with_bias else 0, dtype=dtype)
    results = []
    for module in (pointwise, kernels):
        gates = step["gates"].clone()  # becomes i, f, g, o
        forward = outputs_of(
            lambda c, tc, m_, m=module, g=gates: m.lstm_forward(g, bias, step["state"], c, tc, m_),
            [(rows, H)] * 3,
            dtype,
        )
        backward = outputs_of(
            lambda dg, carry, m=module, g=gates, tc=forward[1]: m.lstm_backward(
                g, step["state"], tc, step["grad"], step["carry"], dg, carry
            ),
            [(rows, 4 * H), (rows, H)],
            dtype,
        )
        results.append([gates, *forward, *backward])
    assert_all_close(results[1], results[0], dtype)


def test_the_fused_layers_use_the_compiled_steps_where_they_build(kernels):
    assert compiled.pointwise_kernels(torch.randn(2, dtype=torch.float32)) is kernels
    assert compiled.pointwise_kernels(torch.randn(2, dtype=torch.float64)) is kernels
    # other dtypes take the torch ops
    assert compiled.pointwise_kernels(torch.randn(2, dtype=torch.bfloat16)) is pointwise


def test_compiled_kernels_refuse_what_they_cannot_read(kernels):
    rows, H = 3, 4
    gi, gh = torch.randn(rows, 3 * H), torch.randn(rows, 3 * H)
    h_prev, h = torch.randn(rows, H), torch.empty(rows, H)
    bias = torch.randn(4 * H)
    with pytest.raises(RuntimeError, match="contiguous"):
        kernels.gru_forward(gi, gh, bias, torch.randn(H, rows).t(), h)
    with pytest.raises(RuntimeError, match="mixed dtypes"):
        kernels.gru_forward(gi, gh, bias, h_prev.double(), h)


SCRIPT = """
import json, warnings, torch, rnnlab
warnings.simplefilter("always")
torch.manual_seed(0)
results = {}
with warnings.catch_warnings(record=True) as caught:
    for name in ("GRU", "LSTM"):
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
        timeout=300,
        check=True,
    )
    return json.loads(done.stdout.splitlines()[-1])


def test_without_a_compiler_one_warning_and_the_same_results(tmp_path):
    """A machine with no C++ compiler (CXX names none, nothing built yet): the first fused GRU
    warns once that the compiled steps could not be built, and every result equals what the
    torch ops give (RNNLAB_COMPILED=0) to the last bit."""
    hidden = run_script(
        {"CXX": str(tmp_path / "no-compiler"), "TORCH_EXTENSIONS_DIR": str(tmp_path)}
    )
    eager = run_script({"RNNLAB_COMPILED": "0"})
    assert len(hidden["warnings"]) == 1
    assert "could not be built" in hidden["warnings"][0]
    assert eager["warnings"] == []
    assert hidden["results"] == eager["results"]


def test_compiled_and_torch_op_steps_give_the_same_module_results(kernels):
    """The whole fused GRU and LSTM, forward and backward, with the compiled steps and with
    the torch ops, in float64: equal to rounding."""
    built, eager = run_script({}), run_script({"RNNLAB_COMPILED": "0"})
    assert built["warnings"] == []
    for name, tensors in eager["results"].items():
        for got, want in zip(built["results"][name], tensors, strict=True):
            torch.testing.assert_close(torch.tensor(got), torch.tensor(want), atol=1e-12, rtol=0)
