"""The Elman RNN cell: one time step of h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh).

`rnn_cell` is the equation as a function; `RNNCell` is the drop-in for `torch.nn.RNNCell`
(same arguments, parameter names, initialisation, checks and results). Neither uses any of
torch's own RNN kernels: the step is two affine maps, a sum and an activation.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from rnnlab.nn import init

NONLINEARITIES = ("tanh", "relu")


def activation(nonlinearity: str):
    """The elementwise function named by `nonlinearity` ('tanh' or 'relu')."""
    if nonlinearity == "tanh":
        return torch.tanh
    if nonlinearity == "relu":
        return torch.relu
    raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")


def rnn_cell(
    x: Tensor,
    h: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None,
    bias_hh: Tensor | None,
    nonlinearity: str = "tanh",
) -> Tensor:
    """One step of the Elman RNN, written as the equation.

    **Arguments:** `x` (B, I), `h` (B, H), `weight_ih` (H, I), `weight_hh` (H, H), biases (H,)
    or None, `nonlinearity` 'tanh' or 'relu'.

    **Returns:** the next hidden state h' (B, H).
    """
    act = activation(nonlinearity)
    return act(F.linear(x, weight_ih, bias_ih) + F.linear(h, weight_hh, bias_hh))  # (B, H)


class RNNCell(nn.Module):
    r"""An Elman RNN cell, a drop-in for `torch.nn.RNNCell`.

    .. math::
        h' = \mathrm{act}(x W_{ih}^T + b_{ih} + h W_{hh}^T + b_{hh})

    **Arguments:** `input_size` I, `hidden_size` H, `bias` (adds `bias_ih` and `bias_hh`),
    `nonlinearity` 'tanh' or 'relu', `device`, `dtype`.

    **Call:** `cell(input, hx=None)` with input (B, I) or (I,) and hx (B, H) or (H,); a missing
    hx is zeros. **Returns** h' of hx's shape.

    Parameters `weight_ih` (H, I), `weight_hh` (H, H), `bias_ih` (H,), `bias_hh` (H,) start
    uniform in [-1/sqrt(H), 1/sqrt(H)], as torch's do.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        device=None,
        dtype=None,
    ) -> None:
        factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.weight_ih = nn.Parameter(torch.empty((hidden_size, input_size), **factory_kwargs))
        self.weight_hh = nn.Parameter(torch.empty((hidden_size, hidden_size), **factory_kwargs))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(hidden_size, **factory_kwargs))
            self.bias_hh = nn.Parameter(torch.empty(hidden_size, **factory_kwargs))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        # Like torch, an unknown nonlinearity is only refused when the cell is called.
        self.nonlinearity = nonlinearity
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.default_(self)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.nonlinearity != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        if input.dim() not in (1, 2):
            raise ValueError(f"RNNCell: Expected input to be 1D or 2D, got {input.dim()}D instead")
        if hx is not None and hx.dim() not in (1, 2):
            raise ValueError(f"RNNCell: Expected hidden to be 1D or 2D, got {hx.dim()}D instead")
        is_batched = input.dim() == 2
        if not is_batched:
            input = input.unsqueeze(0)  # (1, I)
        if hx is None:
            hx = torch.zeros(
                input.size(0), self.hidden_size, dtype=input.dtype, device=input.device
            )  # (B, H)
        elif not is_batched:
            hx = hx.unsqueeze(0)  # (1, H)
        if self.nonlinearity not in NONLINEARITIES:
            raise RuntimeError(f"Unknown nonlinearity: {self.nonlinearity}")
        check_cell_sizes(input, hx, self.input_size, self.hidden_size)
        h = rnn_cell(
            input, hx, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, self.nonlinearity
        )  # (B, H)
        return h if is_batched else h.squeeze(0)


def check_cell_sizes(input: Tensor, hx: Tensor, input_size: int, hidden_size: int) -> None:
    """Raise torch's RuntimeErrors for an input or hidden state of the wrong size."""
    if input.size(1) != input_size:
        raise RuntimeError(
            f"input has inconsistent input_size: got {input.size(1)} expected {input_size}"
        )
    if hx.dim() != 2:
        raise RuntimeError(
            f"hidden0 must be 2-D for this input, got {hx.dim() - 1}-D hx after batching"
        )
    if hx.size(0) != input.size(0):
        raise RuntimeError(
            f"Input batch size {input.size(0)} doesn't match hidden0 batch size {hx.size(0)}"
        )
    if hx.size(1) != hidden_size:
        raise RuntimeError(
            f"hidden0 has inconsistent hidden_size: got {hx.size(1)}, expected {hidden_size}"
        )
