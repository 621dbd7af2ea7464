"""The multi-layer recurrent modules, drop-ins for `torch.nn.RNN`, `torch.nn.GRU` and
`torch.nn.LSTM`, written once for the three cells.

`RNNBase` owns what torch's `RNNBase` owns (arguments and their checks, parameter names and
initialisation, input shapes, packed sequences, dropout between layers, directions, the
state) and hands each layer and direction to one of two implementations of the same maths,
`fused_layer` (the default, hand-written backward) or `reference_layer` (the per-step loop),
with the cell's declaration (`rnnlab.nn.spec`). Inside, the state is always a tuple, (h,) or
(h, c); `RNN`, `GRU` and `LSTM` add only their constructor's arguments and how the caller's
hx maps to that tuple and back.

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
from rnnlab.nn.spec import SPECS, CellSpec, LayerWeights, State

IMPLEMENTATIONS = {"fused": fused_layer, "reference": reference_layer}
WEIGHT_KINDS = LayerWeights._fields  # ih, hh, bias_ih, bias_hh, hr: the parameters' prefixes


class RNNBase(nn.Module):
    r"""What RNN, GRU and LSTM share: `mode` names the cell ('RNN_TANH', 'RNN_RELU', 'GRU',
    'LSTM'), the rest are torch's arguments, in torch's order, and rnnlab's keyword `impl`:
    'fused' (default) or 'reference'.

    Each layer runs the cell over every step t of its input sequence, x_t being the input
    (layer 0) or the previous layer's h_t, with dropout between layers in training mode.
    With `bidirectional`, a second stack runs from the last step to the first and the two
    outputs are concatenated.

    Parameters `weight_ih_l{k}[_reverse]` (G*H, I or D*H_out), `weight_hh_l{k}[_reverse]`
    (G*H, H_out), `bias_ih_l{k}[_reverse]`, `bias_hh_l{k}[_reverse]` (G*H,) and, for an LSTM
    with `proj_size` P, `weight_hr_l{k}[_reverse]` (P, H), with G the cell's gate blocks and
    H_out = P or H: registered in torch's order and initialised uniform in
    [-1/sqrt(H), 1/sqrt(H)], so state dicts move both ways.
    """

    def __init__(
        self,
        mode: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device=None,
        dtype=None,
        *,
        impl: str = "fused",
    ) -> None:
        super().__init__()
        check_arguments(input_size, hidden_size, num_layers, bias, batch_first, dropout, proj_size)
        if impl not in IMPLEMENTATIONS:
            raise ValueError(f"impl must be one of {sorted(IMPLEMENTATIONS)}, got {impl!r}")
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        self.impl = impl
        factory_kwargs = {"device": device, "dtype": dtype}
        gates = self.spec.gates * hidden_size
        self._flat_weights_names: list[str] = []
        self._all_weights: list[list[str]] = []
        for layer in range(num_layers):
            layer_input_size = input_size if layer == 0 else self.output_size * self.num_directions
            for suffix in ("", "_reverse")[: self.num_directions]:
                shapes = {
                    f"weight_ih_l{layer}{suffix}": (gates, layer_input_size),
                    f"weight_hh_l{layer}{suffix}": (gates, self.output_size),
                }
                if bias:
                    shapes[f"bias_ih_l{layer}{suffix}"] = (gates,)
                    shapes[f"bias_hh_l{layer}{suffix}"] = (gates,)
                if proj_size > 0:
                    shapes[f"weight_hr_l{layer}{suffix}"] = (proj_size, hidden_size)
                for name, shape in shapes.items():
                    self.register_parameter(
                        name, nn.Parameter(torch.empty(shape, **factory_kwargs))
                    )
                self._flat_weights_names.extend(shapes)
                self._all_weights.append(list(shapes))
        self.reset_parameters()

    @property
    def spec(self) -> CellSpec:
        return SPECS[self.mode]

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        """The size of h: proj_size for an LSTM that projects, else hidden_size."""
        return self.proj_size if self.proj_size > 0 else self.hidden_size

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
            f"rnnlab.{type(self).__name__} cannot be compiled by torch.jit.script: TorchScript "
            "(which torch itself now calls deprecated, for torch.export and torch.compile) "
            "compiles neither the fused path's custom torch.autograd.Function nor the plain "
            "Python both paths are written in (parameters looked up by name, the layer "
            "function chosen per call). Use torch.jit.trace, torch.export.export or "
            "torch.compile instead."
        )

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size != 0:
            s += f", proj_size={self.proj_size}"
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

    def layer_weights(self, layer: int, direction: int) -> LayerWeights:
        """One layer and direction's parameters, None for those the module has not."""
        names = self._all_weights[layer * self.num_directions + direction]
        found = {kind: None for kind in WEIGHT_KINDS}
        for name in names:  # weight_ih_l0_reverse -> ih
            found[name.rsplit("_l", 1)[0].removeprefix("weight_")] = getattr(self, name)
        return LayerWeights(**found)

    def forward(self, input, hx=None):
        rows, batch_sizes, state, layout = self._to_steps(input, hx)  # (N, I), T ints, state
        rows, state_n = self._run_stack(rows, batch_sizes, state)  # (N, D*H_out), state
        return self._from_steps(rows, state_n, layout)

    # --- how the caller's hx maps to the state tuple: RNN and GRU; LSTM overrides these

    def _state_in(self, hx, is_batched: bool | None) -> State | None:
        """The caller's hx as a state tuple, checked for its dimensions as torch checks them
        (`is_batched` None: packed input, whose hx torch does not check here)."""
        if hx is None:
            return None
        if is_batched is False:
            if hx.dim() != 2:
                raise RuntimeError(
                    f"For unbatched 2-D input, hx should also be 2-D but got {hx.dim()}-D tensor"
                )
            return (hx.unsqueeze(1),)  # (D*L, 1, H)
        if is_batched and hx.dim() != 3:
            raise RuntimeError(
                f"For batched 3-D input, hx should also be 3-D but got {hx.dim()}-D tensor"
            )
        return (hx,)

    def _state_out(self, state: State):
        return state[0]

    def _state_sizes(self, batch: int) -> list[tuple[tuple[int, int, int], str]]:
        """Each state tensor's expected size and torch's message for another one."""
        size = (self.num_layers * self.num_directions, batch, self.hidden_size)
        return [(size, "Expected hidden size {}, got {}")]

    # --- the three steps of forward

    def _to_steps(self, input, hx) -> tuple[Tensor, list[int], State, Layout]:
        """Any input (padded, batch_first, unbatched or packed) in torch's packed layout: rows
        (N, I) where step t owns `batch_sizes[t]` rows, the state (each (D*L, B, F)) in the
        rows' batch order (zeros when missing), and the caller's `Layout` for `_from_steps`.
        Checks the input and hx as torch does, in torch's order, with torch's errors."""
        if isinstance(input, PackedSequence):
            rows, batch_sizes, state, layout = self._packed_to_steps(input, hx)
        else:
            rows, batch_sizes, state, layout = self._padded_to_steps(input, hx)
        return rows, batch_sizes, self._initial_state(state, rows, batch_sizes[0]), layout

    def _packed_to_steps(self, input: PackedSequence, hx):
        rows, batch_sizes_t, sorted_indices, _ = input  # rows: (N, I)
        state = self._state_in(hx, None)
        if state is not None and sorted_indices is not None:
            state = tuple(s.index_select(1, sorted_indices) for s in state)  # the packed order
        self._check_input(rows, packed=True)
        return rows, batch_sizes_t.tolist(), state, Layout(packed=input)

    def _padded_to_steps(self, input: Tensor, hx):
        if input.dim() not in (2, 3):
            name = "RNN" if self.mode.startswith("RNN") else self.mode
            tensor = " tensor" if name == "RNN" else ""  # torch's three messages differ so
            raise ValueError(
                f"{name}: Expected input to be 2D or 3D, got {input.dim()}D{tensor} instead"
            )
        is_batched = input.dim() == 3
        if not is_batched:
            input = input.unsqueeze(0 if self.batch_first else 1)  # (T, 1, I) or (1, T, I)
        state = self._state_in(hx, is_batched)
        self._check_input(input, packed=False)
        if self.batch_first:
            input = input.transpose(0, 1)  # (T, B, I)
        steps, batch = input.shape[:2]
        if steps == 0:
            raise RuntimeError("Expected sequence length to be larger than 0 in RNN")
        rows = input.reshape(steps * batch, self.input_size)  # (T*B, I): every step holds B rows
        layout = Layout(steps=steps, batch=batch, is_batched=is_batched)
        return rows, [batch] * steps, state, layout

    def _initial_state(self, state: State | None, rows: Tensor, batch: int) -> State:
        """The state, each (D*L, B, F), checked as torch checks it, or zeros when missing."""
        sizes = self._state_sizes(batch)
        if state is None:
            return tuple(
                torch.zeros(size, dtype=rows.dtype, device=rows.device) for size, _ in sizes
            )
        for s, (size, message) in zip(state, sizes, strict=True):
            if s.size() != size:
                raise RuntimeError(message.format(size, list(s.size())))
        for s in state:
            if s.dtype != rows.dtype and not torch._C._is_any_autocast_enabled():
                # torch's kernels refuse this in their first matmul, with this message. (Under
                # autocast the layers cast a floating hx, and refuse any other as torch does.)
                raise RuntimeError(
                    "mat1 and mat2 must have the same dtype, but got "
                    f"{scalar_type_name(s.dtype)} and {scalar_type_name(rows.dtype)}"
                )
        return state

    def _run_stack(self, x: Tensor, batch_sizes: list[int], state: State) -> tuple[Tensor, State]:
        """All layers and directions over packed rows x (N, I) from the state (D*L, B, F)."""
        run_layer = self._layer_for_this_call()
        finals: list[list[Tensor]] = [[] for _ in state]  # per state tensor: (B, F) per k
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0 and self.training:
                x = F.dropout(x, self.dropout, training=True)  # (N, D*H_out)
            outs = []
            for direction in range(self.num_directions):
                k = layer * self.num_directions + direction
                out, state_k = run_layer(
                    self.spec,
                    x,
                    batch_sizes,
                    tuple(s[k] for s in state),
                    self.layer_weights(layer, direction),
                    reverse=direction == 1,
                )  # (N, H_out), each (B, F)
                outs.append(out)
                for kept, s in zip(finals, state_k, strict=True):
                    kept.append(s)
            x = torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]  # (N, D*H_out)
        return x, tuple(torch.stack(kept) for kept in finals)  # (N, D*H_out), each (D*L, B, F)

    def _from_steps(self, rows: Tensor, state: State, layout: Layout):
        """The layers' rows (N, D*H_out) and the state (each (D*L, B, F)) back in the caller's
        layout."""
        if layout.packed is not None:
            _, batch_sizes_t, sorted_indices, unsorted_indices = layout.packed
            if unsorted_indices is not None:
                state = tuple(s.index_select(1, unsorted_indices) for s in state)  # caller's order
            packed = PackedSequence(rows, batch_sizes_t, sorted_indices, unsorted_indices)
            return packed, self._state_out(state)
        output = rows.view(layout.steps, layout.batch, rows.size(-1))  # (T, B, D*H_out)
        if self.batch_first:
            output = output.transpose(0, 1)  # (B, T, D*H_out)
        if not layout.is_batched:
            output = output.squeeze(0 if self.batch_first else 1)  # (T, D*H_out)
            state = tuple(s.squeeze(1) for s in state)  # (D*L, F) each
        return output, self._state_out(state)

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


class RNN(RNNBase):
    r"""A multi-layer Elman RNN, a drop-in for `torch.nn.RNN`:

    .. math::
        h_t = \mathrm{act}(x_t W_{ih}^T + b_{ih} + h_{t-1} W_{hh}^T + b_{hh})

    **Arguments** (torch's, in torch's order): `input_size` I, `hidden_size` H, `num_layers`
    L, `nonlinearity` 'tanh' or 'relu', `bias`, `batch_first`, `dropout`, `bidirectional`,
    `device`, `dtype`; and rnnlab's keyword `impl`: 'fused' (default) or 'reference'.
    `proj_size` is refused with torch's ValueError: only the LSTM projects.

    **Call:** `rnn(input, hx=None)`, input (T, B, I), (B, T, I) with batch_first, (T, I)
    unbatched, or a PackedSequence; hx (D*L, B, H) or (D*L, H), zeros when missing.

    **Returns:** `output` (T, B, D*H) (or the matching layout, or a PackedSequence) and
    `h_n` (D*L, B, H), where D is 2 if bidirectional else 1.
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
        if proj_size is not None:  # torch refuses it by name, whatever its value
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(
                f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'."
            )
        mode = "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"
        args = (input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional)
        super().__init__(mode, *args, 0, device, dtype, impl=impl)
        self.nonlinearity = nonlinearity


class GRU(RNNBase):
    r"""A multi-layer GRU, a drop-in for `torch.nn.GRU`, in torch's form (`spec.gru_step`):

        r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
        z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
        n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))
        h_t = (1 - z_t) * n_t + z_t * h_{t-1}

    **Arguments** (torch's, in torch's order): `input_size` I, `hidden_size` H, `num_layers`
    L, `bias`, `batch_first`, `dropout`, `bidirectional`, `device`, `dtype`; and rnnlab's
    keyword `impl`: 'fused' (default) or 'reference'. `proj_size` is refused, as by torch.

    **Call and returns:** as `RNN`. Weights stack the gates r, z, n: (3H, I), (3H, H).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
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
        if proj_size is not None:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        args = (input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional)
        super().__init__("GRU", *args, 0, device, dtype, impl=impl)


class LSTM(RNNBase):
    r"""A multi-layer LSTM, a drop-in for `torch.nn.LSTM` (`spec.lstm_step`):

        i_t, f_t, o_t = sigmoid(W_i* x_t + b_i* + W_h* h_{t-1} + b_h*),  g_t = tanh(...)
        c_t = f_t * c_{t-1} + i_t * g_t
        h_t = o_t * tanh(c_t)            (then h_t = W_hr h_t with proj_size > 0)

    **Arguments** (torch's, in torch's order): `input_size` I, `hidden_size` H, `num_layers`
    L, `bias`, `batch_first`, `dropout`, `bidirectional`, `proj_size` P (0: none),
    `device`, `dtype`; and rnnlab's keyword `impl`: 'fused' (default) or 'reference'.

    **Call:** `lstm(input, hx=None)` with hx a tuple (h_0, c_0), h_0 (D*L, B, H_out) and c_0
    (D*L, B, H) (no batch dimension for unbatched input), zeros when missing; H_out is P if
    P > 0 else H. **Returns:** `output` (T, B, D*H_out) and `(h_n, c_n)`.
    Weights stack the gates i, f, g, o: (4H, I), (4H, H_out); `weight_hr` is (P, H).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device=None,
        dtype=None,
        *,
        impl: str = "fused",
    ) -> None:
        args = (input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional)
        super().__init__("LSTM", *args, proj_size, device, dtype, impl=impl)

    def _state_in(self, hx, is_batched: bool | None) -> State | None:
        if hx is None:
            return None
        if is_batched is None:  # packed: torch's LSTM leaves the sizes to `_initial_state`
            return self._two_states(hx)
        want = 3 if is_batched else 2
        if hx[0].dim() != want or hx[1].dim() != want:
            shape = "batched 3-D" if is_batched else "unbatched 2-D"
            raise RuntimeError(
                f"For {shape} input, hx and cx should also be {want}-D but got "
                f"({hx[0].dim()}-D, {hx[1].dim()}-D) tensors"
            )
        state = self._two_states(hx)
        return state if is_batched else tuple(s.unsqueeze(1) for s in state)  # (D*L, 1, F)

    @staticmethod
    def _two_states(hx) -> State:
        if len(hx) != 2:
            raise RuntimeError("lstm expects two hidden states")
        return (hx[0], hx[1])

    def _state_out(self, state: State):
        return state[0], state[1]

    def _state_sizes(self, batch: int) -> list[tuple[tuple[int, int, int], str]]:
        layers = self.num_layers * self.num_directions
        return [
            ((layers, batch, self.output_size), "Expected hidden[0] size {}, got {}"),
            ((layers, batch, self.hidden_size), "Expected hidden[1] size {}, got {}"),
        ]


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


def check_arguments(
    input_size, hidden_size, num_layers, bias, batch_first, dropout, proj_size
) -> None:
    """torch's RNNBase checks of its constructor arguments, with its messages and types."""
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
            stacklevel=4,
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
    if proj_size < 0:
        raise ValueError("proj_size should be a positive integer or zero to disable projections")
    if proj_size >= hidden_size:
        raise ValueError("proj_size has to be smaller than hidden_size")
