"""What every fused Function does the same way: keep its inputs for the backward, and the
backward that autograd can differentiate again.

Every Function takes `(mode, batch_sizes, reverse, x, *state0, *weights)`, weights in
`LayerWeights` order (None where the module has none), and returns `(out, *state_n)`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnlab.nn.reference import reference_layer
from rnnlab.nn.spec import SPECS, LayerWeights


def save_inputs(ctx, mode: str, batch_sizes, reverse: bool, inputs: tuple, *extra) -> None:
    """Keep the layer's `inputs` (x, *state0, *weights: for the differentiable backward)
    followed by the Function's own `extra` buffers, and the layer's settings."""
    ctx.save_for_backward(*inputs, *extra)
    ctx.mode, ctx.batch_sizes, ctx.reverse = mode, batch_sizes, reverse
    ctx.num_inputs = len(inputs)


def differentiable_backward(ctx, grads: tuple[Tensor, ...]) -> tuple:
    """The backward as a graph autograd can differentiate again (gradient penalties, Hessian
    products): the layer recomputed with the reference loop and differentiated by autograd
    with create_graph. Slower than the hand-written backward, and only taken when
    create_graph asks for it."""
    spec = SPECS[ctx.mode]
    inputs = ctx.saved_tensors[: ctx.num_inputs]  # x, *state0, *weights
    state0, weights = inputs[1 : 1 + spec.states], inputs[1 + spec.states :]
    wanted = [i for i, need in enumerate(ctx.needs_input_grad[3:]) if need]
    out, state_n = reference_layer(
        spec, inputs[0], ctx.batch_sizes, state0, LayerWeights(*weights), ctx.reverse
    )
    found = torch.autograd.grad(
        (out, *state_n), [inputs[i] for i in wanted], grads, create_graph=True
    )
    result: list[Tensor | None] = [None] * len(inputs)
    for i, grad in zip(wanted, found, strict=True):
        result[i] = grad
    return (None, None, None, *result)
