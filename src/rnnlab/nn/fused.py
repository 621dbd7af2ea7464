"""The fused layer: the same maths as the reference loop, with a hand-written backward.

Forward: the input projection of every step is one matmul, X W_ih^T + (b_ih + b_hh); the
serial loop is then two in-place ops per step on that buffer, z_t += h_{t-1} W_hh^T and
h_t = act(z_t), so the buffer ends up holding every h_t and nothing is allocated per step.

Backward (one autograd node per layer and direction instead of hundreds of small ones): the
serial loop is cut to what it cannot avoid,

    dz_t = (dout_t + dz_{t+1} W_hh) * act'(z_t)          (act' read off h_t)

and all weight gradients are single large matmuls after it over the N stacked rows:

    dW_ih = dZ^T X,   dW_hh = dZ^T H_prev,   db = sum_t dz_t,   dX = dZ W_ih,

where H_prev holds each row's previous hidden state (h_{t-1}, or h0 at a sequence's start).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from rnnlab.nn.cell import activation
from rnnlab.nn.steps import step_offsets


def _walk(batch_sizes: list[int], reverse: bool) -> list[tuple[int, int, int, int]]:
    """The steps in the order the layer visits them, each as (offset, rows, prev_offset,
    prev_rows): where step t's rows start, how many there are, and where the step visited
    before it starts and how many rows it had (prev_offset -1 for the first step)."""
    offsets = step_offsets(batch_sizes)
    order = range(len(batch_sizes) - 1, -1, -1) if reverse else range(len(batch_sizes))
    walk, prev = [], (-1, 0)
    for t in order:
        walk.append((offsets[t], batch_sizes[t], *prev))
        prev = (offsets[t], batch_sizes[t])
    return walk


def _previous_hidden(out: Tensor, h0: Tensor, walk) -> Tensor:
    """H_prev (N, H): for every row of `out`, the hidden state the step started from."""
    pieces = [None] * len(walk)
    for i, (offset, rows, prev_offset, prev_rows) in enumerate(walk):
        if prev_offset < 0:
            pieces[i] = (offset, h0[:rows])
        elif prev_rows >= rows:  # forward: every row continues from the previous step
            pieces[i] = (offset, out[prev_offset : prev_offset + rows])
        else:  # reverse: rows past prev_rows are sequences that start here, from h0
            both = torch.cat([out[prev_offset : prev_offset + prev_rows], h0[prev_rows:rows]])
            pieces[i] = (offset, both)
    return torch.cat([piece for _, piece in sorted(pieces, key=lambda p: p[0])])  # (N, H)


class FusedRNNLayer(torch.autograd.Function):
    """One RNN layer in one direction over a packed sequence, as one autograd node."""

    @staticmethod
    def forward(ctx, x, h0, weight_ih, weight_hh, bias_ih, bias_hh, batch_sizes, nonlin, reverse):
        walk = _walk(batch_sizes, reverse)
        w_ih_t, w_hh_t = weight_ih.t(), weight_hh.t()  # (I, H), (H, H)
        if bias_ih is not None:
            out = torch.addmm(bias_ih + bias_hh, x, w_ih_t)  # (N, H): every step's x W_ih^T + b
        else:
            out = torch.mm(x, w_ih_t)  # (N, H)
        act_ = torch.tanh_ if nonlin == "tanh" else torch.relu_
        for offset, rows, prev_offset, prev_rows in walk:
            z = out[offset : offset + rows]  # (rows, H), a view: the loop writes in place
            if prev_offset < 0:
                z.addmm_(h0[:rows], w_hh_t)
            else:
                carried = min(rows, prev_rows)
                z[:carried].addmm_(out[prev_offset : prev_offset + carried], w_hh_t)
                if rows > carried:  # reverse, packed: sequences that start at this step
                    z[carried:].addmm_(h0[carried:rows], w_hh_t)
            act_(z)
        h_n = _final_hidden(out, walk, h0.size(0))  # (B, H)
        ctx.save_for_backward(x, h0, weight_ih, weight_hh, out)
        ctx.batch_sizes, ctx.nonlin, ctx.reverse = batch_sizes, nonlin, reverse
        ctx.has_bias = bias_ih is not None
        return out, h_n

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out, grad_h_n):
        x, h0, weight_ih, weight_hh, out = ctx.saved_tensors
        walk = _walk(ctx.batch_sizes, ctx.reverse)
        if ctx.nonlin == "tanh":
            slope = 1 - out * out  # (N, H): tanh'(z) = 1 - h^2
        else:
            slope = (out > 0).to(out.dtype)  # (N, H): relu'(z)
        # dz accumulates in place, visiting steps in the reverse of the forward order; a row's
        # gradient from h_n joins at the last step its sequence reached.
        dz = grad_out.clone()  # (N, H)
        dh0 = torch.zeros_like(h0)  # (B, H)
        next_rows = 0  # rows of the step visited after this one in the forward walk
        for i in range(len(walk) - 1, -1, -1):
            offset, rows, prev_offset, prev_rows = walk[i]
            dz_t = dz[offset : offset + rows]  # (rows, H)
            fed = min(rows, next_rows)  # rows whose h_t the next visited step carries on
            if fed:
                nxt = walk[i + 1][0]
                dz_t[:fed].addmm_(dz[nxt : nxt + fed], weight_hh)
            if rows > fed:  # sequences whose last step (in this direction) is here
                dz_t[fed:].add_(grad_h_n[fed:rows])
            dz_t.mul_(slope[offset : offset + rows])
            carried = min(rows, prev_rows) if prev_offset >= 0 else 0
            if rows > carried:  # rows that started from h0 at this step
                dh0[carried:rows] = dz_t[carried:] @ weight_hh
            next_rows = rows
        need = ctx.needs_input_grad
        dx = dz @ weight_ih if need[0] else None  # (N, I)
        dw_ih = dz.t() @ x if need[2] else None  # (H, I)
        dw_hh = dz.t() @ _previous_hidden(out, h0, walk) if need[3] else None  # (H, H)
        db = dz.sum(0) if ctx.has_bias and (need[4] or need[5]) else None  # (H,)
        return dx, dh0 if need[1] else None, dw_ih, dw_hh, db, db, None, None, None


def _final_hidden(out: Tensor, walk, batch: int) -> Tensor:
    """h_n (B, H): each sequence's hidden state at the last step it reached in the walk."""
    pieces, next_rows = [], 0
    for offset, rows, _, _ in reversed(walk):
        if rows > next_rows:
            pieces.append(out[offset + next_rows : offset + rows])
            next_rows = rows
    h_n = torch.cat(pieces) if len(pieces) > 1 else pieces[0].clone()  # (B, H)
    assert h_n.size(0) == batch
    return h_n


def fused_layer(
    x: Tensor,
    batch_sizes: list[int],
    h0: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None,
    bias_hh: Tensor | None,
    nonlinearity: str,
    reverse: bool,
) -> tuple[Tensor, Tensor]:
    """The fused twin of `reference_layer`: same arguments, same results."""
    activation(nonlinearity)  # refuses an unknown name before any work
    return FusedRNNLayer.apply(
        x, h0, weight_ih, weight_hh, bias_ih, bias_hh, batch_sizes, nonlinearity, reverse
    )
