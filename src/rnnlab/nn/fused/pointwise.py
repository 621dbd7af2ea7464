"""The pointwise part of one step of the fused GRU and LSTM, forward and backward, as torch
ops: the maths the compiled loops (loops.cpp) compute in one pass per step. Each function
reads one step's rows and writes its results into the buffers it is given (nothing is
returned); loops.py calls them.

Gates are in torch's order: GRU r, z, n; LSTM i, f, g, o.
"""

from __future__ import annotations

import torch
from torch import Tensor


def gru_forward(gi: Tensor, gh: Tensor, bias: Tensor, h_prev: Tensor, h: Tensor) -> None:
    """gi (b, 3H) holds W_i x, gh (b, 3H) W_h h_prev, bias (4H,) the biases as
    (b_ir + b_hr, b_iz + b_hz, b_in, b_hn) or is empty: gi becomes (r, z, n), gh's last block
    W_hn h_prev + b_hn, and h = n + z * (h_prev - n)."""
    H = h.size(1)
    hn = gh[:, 2 * H :]
    if bias.numel():
        gi.add_(bias[: 3 * H])
        hn.add_(bias[3 * H :])
    rz = gi[:, : 2 * H].add_(gh[:, : 2 * H]).sigmoid_()  # (b, 2H): r, z
    n = gi[:, 2 * H :].addcmul_(rz[:, :H], hn).tanh_()  # (b, H)
    torch.lerp(n, h_prev, rz[:, H:], out=h)


def gru_backward(
    gi: Tensor,
    gh: Tensor,
    h_prev: Tensor,
    dh: Tensor,
    carry_in: Tensor,
    dgi: Tensor,
    dgh: Tensor,
    carry_out: Tensor,
) -> None:
    """From dh (b, H), the gradient reaching h_t through the output and the next step's matmul,
    and carry_in (b, H), the part past that matmul (dh_{t+1} z_{t+1}): the pre-activation
    gradients of the input projection dgi = (dr~, dz~, dn~) and of the hidden one
    dgh = (dr~, dz~, dn~ r), each (b, 3H), and carry_out = dh_t z_t (b, H) for the step before."""
    H = dh.size(1)
    r, z, n = gi.split(H, 1)  # (b, H) each
    d = dh + carry_in  # dh_t, whole
    dn = d * (1 - z) * (1 - n * n)  # dn~
    dgi[:, 2 * H :] = dn
    torch.mul(dn, r, out=dgh[:, 2 * H :])
    dr = dn * gh[:, 2 * H :] * r * (1 - r)  # dr~
    dz = d * (h_prev - n) * z * (1 - z)  # dz~
    dgi[:, :H], dgi[:, H : 2 * H] = dr, dz
    dgh[:, :H], dgh[:, H : 2 * H] = dr, dz
    torch.mul(d, z, out=carry_out)


def lstm_forward(
    gates: Tensor, bias: Tensor, c_prev: Tensor, c: Tensor, tc: Tensor, m: Tensor
) -> None:
    """gates (b, 4H) holds W_i x + W_h h_prev of i, f, g, o and becomes their activations, with
    bias (4H,), b_i + b_h, added (or empty); c = f * c_prev + i * g, tc = tanh(c), m = o * tc,
    each (b, H)."""
    H = c.size(1)
    if bias.numel():
        gates.add_(bias)
    gates[:, : 2 * H].sigmoid_()  # i, f
    gates[:, 2 * H : 3 * H].tanh_()  # g
    gates[:, 3 * H :].sigmoid_()  # o
    i, f, g, o = gates.split(H, 1)  # (b, H) each
    torch.mul(f, c_prev, out=c).addcmul_(i, g)
    torch.mul(o, torch.tanh(c, out=tc), out=m)


def lstm_backward(
    gates: Tensor,
    c_prev: Tensor,
    tc: Tensor,
    dm: Tensor,
    carry_in: Tensor,
    dg: Tensor,
    carry_out: Tensor,
) -> None:
    """From dm (b, H), the gradient reaching m = o tanh(c_t), and carry_in (b, H), the cell
    state's gradient from the step after (dc_{t+1} f_{t+1}, or c_n's): dg (b, 4H), the gates'
    pre-activation gradients, and carry_out = dc_t f_t (b, H) for the step before."""
    H = tc.size(1)
    i, f, g, o = gates.split(H, 1)  # (b, H) each
    dc = torch.addcmul(carry_in, dm * o, 1 - tc * tc)  # dc_t
    dg[:, :H] = dc * g * i * (1 - i)  # di~
    dg[:, H : 2 * H] = dc * c_prev * f * (1 - f)  # df~
    dg[:, 2 * H : 3 * H] = dc * i * (1 - g * g)  # dg~
    dg[:, 3 * H :] = dm * tc * o * (1 - o)  # do~
    torch.mul(dc, f, out=carry_out)
