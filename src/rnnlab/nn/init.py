"""Initialisers for the weights of any RNN module (rnnlab's or torch's).

`default_` is torch's own initialisation of RNN and RNNCell, every parameter uniform in
[-1/sqrt(H), 1/sqrt(H)]; rnnlab's modules start from it, so the same seed gives the same
weights as torch's.

`identity_` is the "diagonal" start of IRNN (Le, Jaitly & Hinton 2015, "A Simple Way to
Initialize Recurrent Networks of Rectified Linear Units"): W_hh = gain * I, so a ReLU RNN
starts by carrying its state forward unchanged. `orthogonal_` draws W_hh orthogonal, which
keeps the state's norm through the linear part of each step. Input weights keep their init.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def recurrent_weights(module: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """Every `weight_hh*` parameter of `module` and its children, by name."""
    found = [
        (name, p)
        for name, p in module.named_parameters()
        if name.split(".")[-1].startswith("weight_hh")
    ]
    if not found:
        raise ValueError(
            f"{type(module).__name__} has no recurrent weights (weight_hh*) to initialise"
        )
    return found


@torch.no_grad()
def default_(module: nn.Module) -> nn.Module:
    """Every parameter of `module` uniform in [-1/sqrt(H), 1/sqrt(H)], H its hidden_size, in
    registration order, as torch's RNN modules draw them. Returns `module`."""
    stdv = 1.0 / math.sqrt(module.hidden_size) if module.hidden_size > 0 else 0
    for weight in module.parameters():
        nn.init.uniform_(weight, -stdv, stdv)
    return module


@torch.no_grad()
def identity_(module: nn.Module, gain: float = 1.0, zero_bias: bool = False) -> nn.Module:
    """Set every W_hh of `module` to `gain` * I; with `zero_bias`, also every bias to zero
    (the full IRNN recipe). Returns `module`."""
    for _, weight in recurrent_weights(module):
        weight.copy_(gain * torch.eye(*weight.shape, dtype=weight.dtype, device=weight.device))
    if zero_bias:
        for name, p in module.named_parameters():
            if name.split(".")[-1].startswith("bias_"):
                p.zero_()
    return module


@torch.no_grad()
def orthogonal_(module: nn.Module, gain: float = 1.0) -> nn.Module:
    """Set every W_hh of `module` to a random orthogonal matrix times `gain`. Returns `module`."""
    for _, weight in recurrent_weights(module):
        nn.init.orthogonal_(weight, gain=gain)
    return module
