"""The multi-layer Elman RNN, a drop-in for `torch.nn.RNN`.

This module owns what torch's RNN module owns (arguments and their checks, parameter names
and initialisation, input shapes, packed sequences, dropout between layers, directions) and
hands each layer and direction to one of two implementations of the same maths:
`fused_layer` (the default, hand-written backward) or `reference_layer` (the per-step loop).
`forward` reads as three steps: any input to torch's packed layout (`_to_steps`), the layers
(`_run_stack`), the rows back to the caller's layout (`_from_steps`). While traced, exported
or under autocast, the fused path hands its layers to the reference loop, which those tools
can record (`_layer_for_this_call` says why for each); TorchScript is refused with a reason.
"""

from __future__ import annotations

import numbers
import warnings
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils.rnn import PackedSequence

from rnnlab.nn import init
from rnnlab.nn.fused import fused_layer
from rnnlab.nn.reference import reference_layer

IMPLEMENTATIONS = {"fused": fused_layer, "reference": reference_layer}


class RNN(nn.Module):
    r"""A multi-layer Elman RNN, a drop-in for `torch.nn.RNN`.

    Each layer computes, for every step t of its input sequence,

    .. math::
        h_t = \mathrm{act}(x_t W_{ih}^T + b_{ih} + h_{t-1} W_{hh}^T + b_{hh})

    where x_t is the input (layer 0) or the previous layer's h_t, with dropout between layers
    in training mode. With `bidirectional`, a second stack runs from the last step to the
    first and the two outputs are concatenated.

    **Arguments** (torch's, in torch's order): `input_size` I, `hidden_size` H, `num_layers` L,
    `nonlinearity` 'tanh' or 'relu', `bias`, `batch_first`, `dropout`, `bidirectional`,
    `device`, `dtype`; and rnnlab's own keyword `impl`: 'fused' (default) or 'reference'.
    `proj_size` is refused with torch's ValueError: only torch's LSTM projects.

    **Call:** `rnn(input, hx=None)`, input (T, B, I), (B, T, I) with batch_first, (T, I)
    unbatched, or a PackedSequence; hx (D*L, B, H) or (D*L, H), zeros when missing.

    **Returns:** `output` (T, B, D*H) (or the matching layout, or a PackedSequence) and
    `h_n` (D*L, B, H), where D is 2 if bidirectional else 1.

    Parameters `weight_ih_l{k}[_reverse]` (H, I or D*H), `weight_hh_l{k}[_reverse]` (H, H),
    `bias_ih_l{k}[_reverse]`, `bias_hh_l{k}[_reverse]` (H,), registered in torch's order and
    initialised uniform in [-1/sqrt(H), 1/sqrt(H)], so state dicts move both ways.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device=None,
        dtype=None,
        *,
        impl: str = "fused",
        proj_size: int | None = None,
    ) -> None:
        super().__init__()
        if proj_size is not None:  # torch refuses it by name, whatever its value
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(
                f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'."
            )
        check_arguments(input_size, hidden_size, num_layers, bias, batch_first, dropout)
        if impl not in IMPLEMENTATIONS:
            raise ValueError(f"impl must be one of {sorted(IMPLEMENTATIONS)}, got {impl!r}")
        self.mode = "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"
        self.nonlinearity = nonlinearity
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = 0
        self.impl = impl
        factory_kwargs = {"device": device, "dtype": dtype}
        self._flat_weights_names: list[str] = []
        self._all_weights: list[list[str]] = []
        for layer in range(num_layers):
            layer_input_size = input_size if layer == 0 else hidden_size * self.num_directions
            for suffix in ("", "_reverse")[: self.num_directions]:
                shapes = {
                    f"weight_ih_l{layer}{suffix}": (hidden_size, layer_input_size),
                    f"weight_hh_l{layer}{suffix}": (hidden_size, hidden_size),
                }
                if bias:
                    shapes[f"bias_ih_l{layer}{suffix}"] = (hidden_size,)
                    shapes[f"bias_hh_l{layer}{suffix}"] = (hidden_size,)
                for name, shape in shapes.items():
                    self.register_parameter(
                        name, nn.Parameter(torch.empty(shape, **factory_kwargs))
                    )
                self._flat_weights_names.extend(shapes)
                self._all_weights.append(list(shapes))
        self.reset_parameters()

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def _flat_weights(self) -> list[Tensor]:
        return [getattr(self, name) for name in self._flat_weights_names]

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    def flatten_parameters(self) -> None:
        """A no-op kept for torch compatibility: rnnlab needs no flat weight buffer."""

    def reset_parameters(self) -> None:
        init.default_(self)

    def __prepare_scriptable__(self):
        """torch.jit.script calls this first: refuse with the reason and the alternatives
        instead of TorchScript's error about the first line it cannot compile."""
        raise RuntimeError(
            "rnnlab.RNN cannot be compiled by torch.jit.script: TorchScript (which torch itself "
            "now calls deprecated, for torch.export and torch.compile) compiles neither the fused "
            "path's custom torch.autograd.Function nor the plain Python both paths are written in "
            "(parameters looked up by name, the layer function chosen per call). Use "
            "torch.jit.trace, torch.export.export or torch.compile instead."
        )

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        if self.impl != "fused":
            s += f", impl={self.impl!r}"
        return s

    def layer_weights(self, layer: int, direction: int) -> tuple[Tensor, ...]:
        """(weight_ih, weight_hh, bias_ih, bias_hh) of one layer and direction; biases None
        when the module has no bias."""
        names = self._all_weights[layer * self.num_directions + direction]
        weights = [getattr(self, name) for name in names]
        return (*weights, None, None) if not self.bias else tuple(weights)

    def forward(self, input, hx: Tensor | None = None):
        rows, batch_sizes, hx, layout = self._to_steps(input, hx)  # (N, I), T ints, (D*L, B, H)
        rows, h_n = self._run_stack(rows, batch_sizes, hx)  # (N, D*H), (D*L, B, H)
        return self._from_steps(rows, h_n, layout)

    def _to_steps(self, input, hx: Tensor | None) -> tuple[Tensor, list[int], Tensor, Layout]:
        """Any input (padded, batch_first, unbatched or packed) in torch's packed layout: rows
        (N, I) where step t owns `batch_sizes[t]` rows, hx (D*L, B, H) in the rows' batch order
        (zeros when missing), and the caller's `Layout` for `_from_steps`. Checks the input
        and hx as torch does, in torch's order, with torch's errors."""
        if isinstance(input, PackedSequence):
            rows, batch_sizes, hx, layout = self._packed_to_steps(input, hx)
        else:
            rows, batch_sizes, hx, layout = self._padded_to_steps(input, hx)
        return rows, batch_sizes, self._initial_state(hx, rows, batch_sizes[0]), layout

    def _packed_to_steps(self, input: PackedSequence, hx: Tensor | None):
        rows, batch_sizes_t, sorted_indices, _ = input  # rows: (N, I)
        if hx is not None and sorted_indices is not None:
            hx = hx.index_select(1, sorted_indices)  # (D*L, B, H), in the packed order
        self._check_input(rows, packed=True)
        return rows, batch_sizes_t.tolist(), hx, Layout(packed=input)

    def _padded_to_steps(self, input: Tensor, hx: Tensor | None):
        if input.dim() not in (2, 3):
            raise ValueError(
                f"RNN: Expected input to be 2D or 3D, got {input.dim()}D tensor instead"
            )
        is_batched = input.dim() == 3
        if not is_batched:
            input = input.unsqueeze(0 if self.batch_first else 1)  # (T, 1, I) or (1, T, I)
            if hx is not None:
                if hx.dim() != 2:
                    raise RuntimeError(
                        "For unbatched 2-D input, hx should also be 2-D but got "
                        f"{hx.dim()}-D tensor"
                    )
                hx = hx.unsqueeze(1)  # (D*L, 1, H)
        elif hx is not None and hx.dim() != 3:
            raise RuntimeError(
                f"For batched 3-D input, hx should also be 3-D but got {hx.dim()}-D tensor"
            )
        self._check_input(input, packed=False)
        if self.batch_first:
            input = input.transpose(0, 1)  # (T, B, I)
        steps, batch = input.shape[:2]
        if steps == 0:
            raise RuntimeError("Expected sequence length to be larger than 0 in RNN")
        rows = input.reshape(steps * batch, self.input_size)  # (T*B, I): every step holds B rows
        layout = Layout(steps=steps, batch=batch, is_batched=is_batched)
        return rows, [batch] * steps, hx, layout

    def _initial_state(self, hx: Tensor | None, rows: Tensor, batch: int) -> Tensor:
        """hx (D*L, B, H) checked as torch checks it, or zeros when missing."""
        expected = (self.num_layers * self.num_directions, batch, self.hidden_size)
        if hx is None:
            return torch.zeros(expected, dtype=rows.dtype, device=rows.device)  # (D*L, B, H)
        if hx.size() != expected:
            raise RuntimeError(f"Expected hidden size {expected}, got {list(hx.size())}")
        if hx.dtype != rows.dtype and not torch._C._is_any_autocast_enabled():
            # torch's kernels refuse this in their first matmul, with this message. (Under
            # autocast the layers cast a floating hx, and refuse any other as torch does.)
            raise RuntimeError(
                "mat1 and mat2 must have the same dtype, but got "
                f"{scalar_type_name(hx.dtype)} and {scalar_type_name(rows.dtype)}"
            )
        return hx

    def _run_stack(self, x: Tensor, batch_sizes: list[int], hx: Tensor) -> tuple[Tensor, Tensor]:
        """All layers and directions over packed rows x (N, I) from hx (D*L, B, H)."""
        run_layer = self._layer_for_this_call()
        finals = []
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0 and self.training:
                x = F.dropout(x, self.dropout, training=True)  # (N, D*H)
            outs = []
            for direction in range(self.num_directions):
                out, h_n = run_layer(
                    x,
                    batch_sizes,
                    hx[layer * self.num_directions + direction],
                    *self.layer_weights(layer, direction),
                    self.nonlinearity,
                    reverse=direction == 1,
                )  # (N, H), (B, H)
                outs.append(out)
                finals.append(h_n)
            x = torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]  # (N, D*H)
        return x, torch.stack(finals)  # (N, D*H), (D*L, B, H)

    def _from_steps(self, rows: Tensor, h_n: Tensor, layout: Layout):
        """The layers' rows (N, D*H) and h_n (D*L, B, H) back in the caller's layout."""
        if layout.packed is not None:
            _, batch_sizes_t, sorted_indices, unsorted_indices = layout.packed
            if unsorted_indices is not None:
                h_n = h_n.index_select(1, unsorted_indices)  # (D*L, B, H), in the caller's order
            return PackedSequence(rows, batch_sizes_t, sorted_indices, unsorted_indices), h_n
        output = rows.view(layout.steps, layout.batch, rows.size(-1))  # (T, B, D*H)
        if self.batch_first:
            output = output.transpose(0, 1)  # (B, T, D*H)
        if not layout.is_batched:
            output = output.squeeze(0 if self.batch_first else 1)  # (T, D*H)
            h_n = h_n.squeeze(1)  # (D*L, H)
        return output, h_n

    def _layer_for_this_call(self):
        """The layer implementation to run now: `impl`'s, except that the fused path hands
        over to the reference loop (same maths, same results) where its autograd.Function
        cannot go. Three checks of a flag each, once per call:
        - torch.jit.trace (and so the classic ONNX exporter) hands the sizes it reads from the
          input over as traced tensors, so that the trace takes other batch sizes, and fails
          (`unordered_map::at`) when a Function gets them inside its batch_sizes list;
        - torch.export (and so the dynamo ONNX exporter) traces the Function's forward with
          autograd on, where the fused loop's in-place writes into the views that `split`
          returns are an error ("Output 0 of SplitWithSizes is a view and is being modified
          inplace");
        - autocast does not cast the arguments of in-place ops, so the fused loop would mix a
          low-precision buffer with float32 weights; the reference loop's out-of-place ops are
          cast as torch's own RNN's are.
        torch.compile traces the fused Function as it is, so it keeps the fused path."""
        if self.impl == "fused" and (
            torch.jit.is_tracing()
            or torch.compiler.is_exporting()
            or torch._C._is_any_autocast_enabled()
        ):
            return IMPLEMENTATIONS["reference"]
        return IMPLEMENTATIONS[self.impl]

    def _check_input(self, input: Tensor, packed: bool) -> None:
        weight_dtype = self.weight_ih_l0.dtype
        # torch's own test: autocast on any device type casts the input for the layers.
        if input.dtype != weight_dtype and not torch._C._is_any_autocast_enabled():
            raise ValueError(
                f"RNN input dtype ({input.dtype}) does not match weight dtype ({weight_dtype}). "
                f"Convert input: input.to({weight_dtype}), or convert model: "
                f"model.to({input.dtype})"
            )
        expected_dim = 2 if packed else 3
        if input.dim() != expected_dim:
            raise RuntimeError(f"input must have {expected_dim} dimensions, got {input.dim()}")
        if input.size(-1) != self.input_size:
            raise RuntimeError(
                "input.size(-1) must be equal to input_size. "
                f"Expected {self.input_size}, got {input.size(-1)}"
            )


class Layout(NamedTuple):
    """The caller's layout, for `_from_steps`: the PackedSequence given, or the padded
    input's steps T, batch B and whether it had a batch dimension at all."""

    packed: PackedSequence | None = None
    steps: int = 0
    batch: int = 0
    is_batched: bool = True


def scalar_type_name(dtype: torch.dtype) -> str:
    """A dtype as torch's C++ errors name it: torch.int64 -> 'Long', torch.float32 -> 'Float'."""
    return torch.empty((), dtype=dtype).type().removeprefix("torch.").removesuffix("Tensor")


def check_arguments(input_size, hidden_size, num_layers, bias, batch_first, dropout) -> None:
    """torch.nn.RNN's checks of its constructor arguments, with its messages and types."""
    if (
        not isinstance(dropout, numbers.Number)
        or not 0 <= dropout <= 1
        or isinstance(dropout, bool)
    ):
        raise ValueError(
            "dropout should be a number in range [0, 1] representing the probability of an "
            "element being zeroed"
        )
    if dropout > 0 and num_layers == 1:
        warnings.warn(
            "dropout option adds dropout after all but last recurrent layer, so non-zero dropout "
            f"expects num_layers greater than 1, but got dropout={dropout} and "
            f"num_layers={num_layers}",
            stacklevel=3,
        )
    if not isinstance(bias, bool):
        raise TypeError(f"bias should be of type bool, got: {type(bias).__name__}")
    if not isinstance(batch_first, bool):
        raise TypeError(f"batch_first should be of type bool, got: {type(batch_first).__name__}")
    if not isinstance(input_size, int):
        raise TypeError(f"input_size should be of type int, got: {type(input_size).__name__}")
    if input_size <= 0:
        raise ValueError("input_size must be greater than zero")
    if not isinstance(hidden_size, int):
        raise TypeError(f"hidden_size should be of type int, got: {type(hidden_size).__name__}")
    if hidden_size <= 0:
        raise ValueError("hidden_size must be greater than zero")
    if num_layers <= 0:
        raise ValueError("num_layers must be greater than zero")
