"""One step of a recurrent cell as a module: drop-ins for `torch.nn.RNNCell`, `GRUCell` and
`LSTMCell` (same arguments, parameter names, initialisation, checks and results).

`RNNCellBase` holds what the three share, as torch's does: `num_chunks` gate blocks of
weights, their initialisation, the checks of input and state. Each cell adds only its
equations (`rnnlab.nn.spec`) and the shape of its state. None of torch's RNN kernels runs: a
step is two affine maps and the cell's pointwise equations.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnlab.nn import init
from rnnlab.nn.spec import SPECS, LayerWeights, cell_step

NONLINEARITIES = ("tanh", "relu")


class RNNCellBase(nn.Module):
    """The parameters of a cell with `num_chunks` gate blocks: `weight_ih` (G*H, I),
    `weight_hh` (G*H, H), `bias_ih` and `bias_hh` (G*H,), uniform in [-1/sqrt(H), 1/sqrt(H)]."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool,
        num_chunks: int,
        device=None,
        dtype=None,
    ) -> None:
        factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        gates = num_chunks * hidden_size
        self.weight_ih = nn.Parameter(torch.empty((gates, input_size), **factory_kwargs))
        self.weight_hh = nn.Parameter(torch.empty((gates, hidden_size), **factory_kwargs))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(gates, **factory_kwargs))
            self.bias_hh = nn.Parameter(torch.empty(gates, **factory_kwargs))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.default_(self)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s

    def _weights(self) -> LayerWeights:
        return LayerWeights(self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)

    def _batched(self, input: Tensor, state: tuple[Tensor, ...] | None):
        """input (B, I) and the state, each (B, H), with a batch dimension added to unbatched
        ones, zeros for a missing state; checked as torch checks them."""
        is_batched = input.dim() == 2
        if not is_batched:
            input = input.unsqueeze(0)  # (1, I)
        if state is None:
            zeros = torch.zeros(
                input.size(0), self.hidden_size, dtype=input.dtype, device=input.device
            )  # (B, H)
            state = (zeros,) * self.num_states
        elif not is_batched:
            state = tuple(s.unsqueeze(0) for s in state)  # (1, H) each
        check_cell_sizes(input, state, self.input_size, self.hidden_size)
        return input, state, is_batched


class RNNCell(RNNCellBase):
    r"""An Elman RNN cell, a drop-in for `torch.nn.RNNCell`:
    h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh), act tanh or relu.

    **Arguments:** `input_size` I, `hidden_size` H, `bias`, `nonlinearity` 'tanh' or 'relu',
    `device`, `dtype`. **Call:** `cell(input, hx=None)`, input (B, I) or (I,), hx (B, H) or
    (H,), zeros when missing. **Returns** h' of hx's shape.
    """

    num_states = 1

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(input_size, hidden_size, bias, num_chunks=1, device=device, dtype=dtype)
        # Like torch, an unknown nonlinearity is only refused when the cell is called.
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        if input.dim() not in (1, 2):
            raise ValueError(f"RNNCell: Expected input to be 1D or 2D, got {input.dim()}D instead")
        if hx is not None and hx.dim() not in (1, 2):
            raise ValueError(f"RNNCell: Expected hidden to be 1D or 2D, got {hx.dim()}D instead")
        input, state, is_batched = self._batched(input, None if hx is None else (hx,))
        if self.nonlinearity not in NONLINEARITIES:
            raise RuntimeError(f"Unknown nonlinearity: {self.nonlinearity}")
        spec = SPECS["RNN_TANH" if self.nonlinearity == "tanh" else "RNN_RELU"]
        (h,) = cell_step(spec, input, state, self._weights())  # (B, H)
        return h if is_batched else h.squeeze(0)


class GRUCell(RNNCellBase):
    r"""A GRU cell, a drop-in for `torch.nn.GRUCell`, in torch's form (`spec.gru_step`):

        r = sigmoid(W_ir x + b_ir + W_hr h + b_hr),  z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn)),  h' = (1 - z) * n + z * h

    **Arguments:** `input_size` I, `hidden_size` H, `bias`, `device`, `dtype`. **Call:**
    `cell(input, hx=None)` as `RNNCell`. Weights stack the gates r, z, n: (3H, I), (3H, H).
    """

    num_states = 1

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None
    ) -> None:
        super().__init__(input_size, hidden_size, bias, num_chunks=3, device=device, dtype=dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        if input.dim() not in (1, 2):
            raise ValueError(f"GRUCell: Expected input to be 1D or 2D, got {input.dim()}D instead")
        if hx is not None and hx.dim() not in (1, 2):
            raise ValueError(f"GRUCell: Expected hidden to be 1D or 2D, got {hx.dim()}D instead")
        input, state, is_batched = self._batched(input, None if hx is None else (hx,))
        (h,) = cell_step(SPECS["GRU"], input, state, self._weights())  # (B, H)
        return h if is_batched else h.squeeze(0)


class LSTMCell(RNNCellBase):
    r"""An LSTM cell, a drop-in for `torch.nn.LSTMCell` (`spec.lstm_step`):

        i, f, o = sigmoid(...), g = tanh(...)   (W_ih x + b_ih + W_hh h + b_hh, in blocks)
        c' = f * c + i * g,  h' = o * tanh(c')

    **Arguments:** `input_size` I, `hidden_size` H, `bias`, `device`, `dtype`. **Call:**
    `cell(input, hx=None)` with hx a tuple (h, c), each (B, H) or (H,), zeros when missing.
    **Returns** (h', c'). Weights stack the gates i, f, g, o: (4H, I), (4H, H).
    """

    num_states = 2

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None
    ) -> None:
        super().__init__(input_size, hidden_size, bias, num_chunks=4, device=device, dtype=dtype)

    def forward(
        self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor]:
        if input.dim() not in (1, 2):
            raise ValueError(f"LSTMCell: Expected input to be 1D or 2D, got {input.dim()}D instead")
        if hx is not None:
            if isinstance(hx, Tensor):  # torch's kernel takes only a tuple, and says so
                raise TypeError(
                    "lstm_cell(): argument 'hx' (position 2) must be tuple of Tensors, not Tensor"
                )
            for idx, value in enumerate(hx):
                if value.dim() not in (1, 2):
                    raise ValueError(
                        f"LSTMCell: Expected hx[{idx}] to be 1D or 2D, got {value.dim()}D instead"
                    )
            if len(hx) != 2:
                raise RuntimeError("lstm_cell expects two hidden states")
        input, state, is_batched = self._batched(input, hx)
        h, c = cell_step(SPECS["LSTM"], input, state, self._weights())  # (B, H) each
        return (h, c) if is_batched else (h.squeeze(0), c.squeeze(0))


def check_cell_sizes(
    input: Tensor, state: tuple[Tensor, ...], input_size: int, hidden_size: int
) -> None:
    """Raise torch's RuntimeErrors for an input or state of the wrong size (hidden0 is h,
    hidden1 is an LSTM's c)."""
    if input.size(1) != input_size:
        raise RuntimeError(
            f"input has inconsistent input_size: got {input.size(1)} expected {input_size}"
        )
    for k, hx in enumerate(state):  # torch's order: the batch, the size, then the dimensions
        if hx.size(0) != input.size(0):
            raise RuntimeError(
                f"Input batch size {input.size(0)} doesn't match hidden{k} batch size {hx.size(0)}"
            )
        if hx.dim() >= 2 and hx.size(1) != hidden_size:
            raise RuntimeError(
                f"hidden{k} has inconsistent hidden_size: got {hx.size(1)}, expected {hidden_size}"
            )
        if hx.dim() != 2:
            raise RuntimeError(
                f"hidden{k} must be 2-D for this input, got {hx.dim() - 1}-D hx after batching"
            )
