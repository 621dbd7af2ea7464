"""Initialisers for the weights of any recurrent module (rnnlab's or torch's, RNN, GRU or LSTM,
cells or stacks), acting on each gate block of a recurrent weight on its own.

A recurrent weight W_hh stacks G gate blocks of H rows, (G*H, H): G = 1 for the Elman RNN,
3 for the GRU (r, z, n), 4 for the LSTM (i, f, g, o). Each initialiser sets every block:

- `default_`: torch's own start, every parameter uniform in [-1/sqrt(H), 1/sqrt(H)];
  rnnlab's modules start from it, so the same seed gives the same weights as torch's.
- `identity_`: each block of W_hh = gain * I. For the Elman RNN this is IRNN (Le, Jaitly &
  Hinton 2015): a ReLU RNN starts by carrying its state forward unchanged. For a GRU or an
  LSTM each gate starts reading h_{t-1} through the identity.
- `orthogonal_`: each block of W_hh a random orthogonal matrix (Saxe et al. 2014), which
  keeps the state's norm through the linear part of each step; drawn per block, so every
  gate's recurrent map is orthogonal on its own.
- `forget_bias_`: an LSTM's forget-gate biases set so that f starts near sigmoid(value)
  (Gers et al. 2000; Jozefowicz et al. 2015 recommend 1): the cell remembers from the start.

Input weights keep their init; only `identity_(zero_bias=True)` and `forget_bias_` touch biases.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def recurrent_weights(module: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """Every `weight_hh*` parameter of `module` and its children, by name."""
    found = [
        (name, p) for name, p in module.named_parameters() if _leaf(name).startswith("weight_hh")
    ]
    if not found:
        raise ValueError(
            f"{type(module).__name__} has no recurrent weights (weight_hh*) to initialise"
        )
    return found


def gate_blocks(module: nn.Module, name: str, weight: torch.Tensor) -> list[torch.Tensor]:
    """The G gate blocks of a stacked weight or bias, as views: G = rows / the hidden size of
    the module that owns `name`."""
    owner = module.get_submodule(name.rpartition(".")[0]) if "." in name else module
    hidden = getattr(owner, "hidden_size", weight.shape[0])
    if weight.shape[0] % hidden:
        raise ValueError(
            f"{name}: {weight.shape[0]} rows are not whole gate blocks of hidden_size {hidden}"
        )
    return list(weight.split(hidden))


@torch.no_grad()
def default_(module: nn.Module) -> nn.Module:
    """Every parameter of `module` uniform in [-1/sqrt(H), 1/sqrt(H)], H its hidden_size, in
    registration order, as torch's recurrent modules draw them. Returns `module`."""
    stdv = 1.0 / math.sqrt(module.hidden_size) if module.hidden_size > 0 else 0
    for weight in module.parameters():
        nn.init.uniform_(weight, -stdv, stdv)
    return module


@torch.no_grad()
def identity_(module: nn.Module, gain: float = 1.0, zero_bias: bool = False) -> nn.Module:
    """Set each gate block of every W_hh of `module` to `gain` * I; with `zero_bias`, also every
    bias to zero (the full IRNN recipe). Returns `module`."""
    for name, weight in recurrent_weights(module):
        for block in gate_blocks(module, name, weight):
            block.copy_(gain * torch.eye(*block.shape, dtype=block.dtype, device=block.device))
    if zero_bias:
        for name, p in module.named_parameters():
            if _leaf(name).startswith("bias_"):
                p.zero_()
    return module


@torch.no_grad()
def orthogonal_(module: nn.Module, gain: float = 1.0) -> nn.Module:
    """Set each gate block of every W_hh of `module` to a random orthogonal matrix times `gain`.
    Returns `module`."""
    for name, weight in recurrent_weights(module):
        for block in gate_blocks(module, name, weight):
            nn.init.orthogonal_(block, gain=gain)
    return module


@torch.no_grad()
def forget_bias_(module: nn.Module, value: float = 1.0) -> nn.Module:
    """Set the forget-gate block of every LSTM bias of `module` so that b_if + b_hf = `value`
    (b_if = value, b_hf = 0); the other gates' biases keep their init. Returns `module`."""
    found = False
    for name, p in module.named_parameters():
        leaf = _leaf(name)
        if leaf.startswith(("bias_ih", "bias_hh")):
            blocks = gate_blocks(module, name, p)
            if len(blocks) != 4:
                continue  # not an LSTM's bias
            blocks[1].fill_(value if leaf.startswith("bias_ih") else 0.0)  # i, f, g, o
            found = True
    if not found:
        raise ValueError(f"{type(module).__name__} has no LSTM biases (4 gate blocks) to set")
    return module


def _leaf(name: str) -> str:
    return name.rpartition(".")[2]
