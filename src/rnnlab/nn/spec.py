"""The three recurrent cells, each a small declaration: its pointwise step, how many gate blocks
its weights stack, and how many tensors its state holds. Everything else (the modules, the
layers, packing, directions, dropout, both implementations) is written once over these.

One step of any cell, with G gate blocks of H units each:

    gi = x W_ih^T + b_ih          (B, G*H)  the input projection
    gh = h W_hh^T + b_hh          (B, G*H)  the hidden projection
    state' = step(gi, gh, state)            the pointwise part: the cell's equations

The two projections stay apart until the step because the GRU multiplies its hidden
projection alone by the reset gate. An LSTM with `proj_size` P then projects h' = W_hr h'.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor
from torch.nn import functional as F

State = tuple[Tensor, ...]  # (h,) or (h, c), each (B, features)


def tanh_step(gi: Tensor, gh: Tensor, state: State) -> State:
    """h' = tanh(gi + gh)"""
    return (torch.tanh(gi + gh),)


def relu_step(gi: Tensor, gh: Tensor, state: State) -> State:
    """h' = relu(gi + gh)"""
    return (torch.relu(gi + gh),)


def gru_step(gi: Tensor, gh: Tensor, state: State) -> State:
    r"""The GRU, in torch's (and cuDNN's) form:

        r  = sigmoid(W_ir x + b_ir + W_hr h + b_hr)        reset gate
        z  = sigmoid(W_iz x + b_iz + W_hz h + b_hz)        update gate
        n  = tanh(W_in x + b_in + r * (W_hn h + b_hn))     candidate
        h' = (1 - z) * n + z * h

    Cho et al. (2014) reset the state before the matmul, n = tanh(W_in x + W_hn (r * h) + b);
    torch resets the hidden projection after it. The two are different functions; rnnlab
    follows torch, so that weights move between the two libraries and mean the same.
    """
    (h,) = state
    i_r, i_z, i_n = gi.chunk(3, 1)  # (B, H) each
    h_r, h_z, h_n = gh.chunk(3, 1)  # (B, H) each
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return ((1 - z) * n + z * h,)


def lstm_step(gi: Tensor, gh: Tensor, state: State) -> State:
    r"""The LSTM, gates in torch's order i, f, g, o:

    i  = sigmoid(W_ii x + b_ii + W_hi h + b_hi)        input gate
    f  = sigmoid(W_if x + b_if + W_hf h + b_hf)        forget gate
    g  = tanh(W_ig x + b_ig + W_hg h + b_hg)           candidate
    o  = sigmoid(W_io x + b_io + W_ho h + b_ho)        output gate
    c' = f * c + i * g
    h' = o * tanh(c')
    """
    _, c = state
    i, f, g, o = (gi + gh).chunk(4, 1)  # (B, H) each
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c = f * c + i * g
    return (o * torch.tanh(c), c)


@dataclass(frozen=True)
class CellSpec:
    """A recurrent cell: what differs between RNN, GRU and LSTM, and nothing else."""

    mode: str  # torch's name for it: 'RNN_TANH', 'RNN_RELU', 'GRU' or 'LSTM'
    gates: int  # gate blocks stacked in weight_ih, weight_hh and the biases (num_chunks)
    states: int  # tensors in the state: 1, (h,), or 2, (h, c)
    step: Callable[[Tensor, Tensor, State], State]  # (gi, gh, state) -> state'


SPECS = {
    spec.mode: spec
    for spec in (
        CellSpec("RNN_TANH", gates=1, states=1, step=tanh_step),
        CellSpec("RNN_RELU", gates=1, states=1, step=relu_step),
        CellSpec("GRU", gates=3, states=1, step=gru_step),
        CellSpec("LSTM", gates=4, states=2, step=lstm_step),
    )
}


class LayerWeights(NamedTuple):
    """One layer and direction's parameters, None where the module has none."""

    ih: Tensor  # (G*H, I)
    hh: Tensor  # (G*H, H), or (G*H, P) for an LSTM with proj_size P
    bias_ih: Tensor | None = None  # (G*H,)
    bias_hh: Tensor | None = None  # (G*H,)
    hr: Tensor | None = None  # (P, H): an LSTM's projection


def cell_step(spec: CellSpec, x: Tensor, state: State, weights: LayerWeights) -> State:
    """One step of `spec`'s cell: x (B, I) and the state -> the next state."""
    gi = F.linear(x, weights.ih, weights.bias_ih)  # (B, G*H)
    gh = F.linear(state[0], weights.hh, weights.bias_hh)  # (B, G*H)
    h, *rest = spec.step(gi, gh, state)
    if weights.hr is not None:
        h = F.linear(h, weights.hr)  # (B, P): h = W_hr h
    return (h, *rest)


def rnn_cell(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    """One step of the Elman RNN, h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh): x (B, I),
    h (B, H) -> h' (B, H); `nonlinearity` 'tanh' or 'relu'."""
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    spec = SPECS["RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"]
    return cell_step(spec, x, (h,), LayerWeights(weight_ih, weight_hh, bias_ih, bias_hh))[0]


def gru_cell(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """One step of the GRU (`gru_step`): x (B, I), h (B, H) -> h' (B, H)."""
    return cell_step(SPECS["GRU"], x, (h,), LayerWeights(weight_ih, weight_hh, bias_ih, bias_hh))[0]


def lstm_cell(x, state, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """One step of the LSTM (`lstm_step`): x (B, I), (h, c) each (B, H) -> (h', c')."""
    weights = LayerWeights(weight_ih, weight_hh, bias_ih, bias_hh)
    return cell_step(SPECS["LSTM"], x, tuple(state), weights)
