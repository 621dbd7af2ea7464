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

from rnnlab.nn.cell import activation
from rnnlab.nn.reference import reference_layer


class FusedRNNLayer(torch.autograd.Function):
    """One RNN layer in one direction over a packed sequence, as one autograd node.

    Step t owns rows [0, b_t) of its view; a step starts from the rows of the step visited
    before it while they last (`carried`), and from the initial state for the rows beyond
    (sequences that begin at this step, which happens only when walking a packed batch in
    reverse). Forward packed batches drop rows instead: sequences that have ended.
    """

    @staticmethod
    def forward(ctx, x, h0, weight_ih, weight_hh, bias_ih, bias_hh, batch_sizes, nonlin, reverse):
        bias = bias_ih + bias_hh if bias_ih is not None else None  # (H,)
        if nonlin == "tanh":
            # tanh(z) = 2 sigmoid(2z) - 1, and torch's CPU sigmoid is several times faster
            # than its tanh. So the loop runs on s = sigmoid(2z) = (h + 1) / 2: with
            # h_{t-1} = 2 s_{t-1} - 1, 2 z_t = 2 (x_t W_ih^T + b - 1 W_hh^T) + s_{t-1} (4 W_hh)^T,
            # one addmm and one sigmoid per step; h = 2 s - 1 once for all steps at the end.
            shift = -weight_hh.sum(1) if bias is None else bias - weight_hh.sum(1)  # (H,)
            out = torch.addmm(shift, x, weight_ih.t(), beta=2, alpha=2)  # (N, H)
            w_rec = (weight_hh * 4).t().contiguous()  # (H, H)
            start = (h0 + 1) / 2  # (B, H): s at the start
            act_ = torch.sigmoid_
        else:
            out = (
                torch.mm(x, weight_ih.t()) if bias is None else torch.addmm(bias, x, weight_ih.t())
            )  # (N, H)
            w_rec, start, act_ = weight_hh.t().contiguous(), h0, torch.relu_  # (H, H), (B, H)
        steps = out.split(batch_sizes)  # T views (b_t, H) of one buffer, written in place
        order = _visit_order(len(batch_sizes), reverse)
        prev, prev_rows = start, start.size(0)  # the first step starts from the initial state
        for t in order:
            z, rows = steps[t], batch_sizes[t]  # z: (b_t, H), holds x_t W_ih^T + b
            carried = min(rows, prev_rows)
            if carried == rows == prev_rows:  # the common case: the same sequences go on
                z.addmm_(prev, w_rec)
            else:
                z[:carried].addmm_(prev[:carried], w_rec)
                if rows > carried:  # walking a packed batch in reverse: sequences begin here
                    z[carried:].addmm_(start[carried:rows], w_rec)
            act_(z)
            prev, prev_rows = z, rows
        if nonlin == "tanh":
            out.mul_(2).sub_(1)  # (N, H): h = 2 s - 1
        h_n = _final_hidden(steps, order, batch_sizes)  # (B, H)
        ctx.save_for_backward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, out)
        ctx.batch_sizes, ctx.nonlin, ctx.reverse = batch_sizes, nonlin, reverse
        ctx.has_bias = bias_ih is not None
        return out, h_n

    @staticmethod
    def backward(ctx, grad_out, grad_h_n):
        if (
            torch.is_grad_enabled()
        ):  # backward(create_graph=True): its result will be differentiated
            return _differentiable_backward(ctx, grad_out, grad_h_n)
        x, h0, weight_ih, weight_hh, _, _, out = ctx.saved_tensors
        batch_sizes = ctx.batch_sizes
        if ctx.nonlin == "tanh":
            slope = 1 - out * out  # (N, H): tanh'(z) = 1 - h^2
        else:
            slope = (out > 0).to(out.dtype)  # (N, H): relu'(z)
        # Visit the steps in the reverse of the forward order: dz_t = (dout_t + dz_next W_hh)
        # * act'(z_t), where a row that the next visited step did not carry on takes its
        # gradient from h_n instead (its sequence ended here).
        dz = grad_out.clone()  # (N, H), accumulated in place
        dz_steps, slopes = dz.split(batch_sizes), slope.split(batch_sizes)  # T views (b_t, H)
        dh0 = torch.zeros_like(h0)  # (B, H)
        order = _visit_order(len(batch_sizes), ctx.reverse)
        after, after_rows = None, 0  # dz of the step visited after this one
        for i in range(len(order) - 1, -1, -1):
            t = order[i]
            d, rows = dz_steps[t], batch_sizes[t]  # d: (b_t, H)
            fed = min(rows, after_rows)
            if fed == rows == after_rows and after is not None:
                d.addmm_(after, weight_hh)
            else:
                if fed:
                    d[:fed].addmm_(after[:fed], weight_hh)
                if rows > fed:
                    d[fed:].add_(grad_h_n[fed:rows])
            d.mul_(slopes[t])
            prev_rows = batch_sizes[order[i - 1]] if i > 0 else 0
            if rows > prev_rows:  # rows that started from h0 at this step
                dh0[prev_rows:rows] = d[prev_rows:] @ weight_hh  # (rows - prev_rows, H)
            after, after_rows = d, rows
        need = ctx.needs_input_grad
        dx = dz @ weight_ih if need[0] else None  # (N, I)
        dw_ih = dz.t() @ x if need[2] else None  # (H, I)
        dw_hh = (
            _recurrent_weight_grad(dz, out, h0, order, batch_sizes) if need[3] else None
        )  # (H, H)
        db = dz.sum(0) if ctx.has_bias and (need[4] or need[5]) else None  # (H,)
        return dx, dh0 if need[1] else None, dw_ih, dw_hh, db, db, None, None, None


def _differentiable_backward(ctx, grad_out: Tensor, grad_h_n: Tensor) -> tuple:
    """The backward as a graph autograd can differentiate again (gradient penalties, Hessian
    products): the layer is recomputed with the reference loop and differentiated by autograd.
    Slower than the hand-written backward, and only taken when create_graph asks for it."""
    x, h0, weight_ih, weight_hh, bias_ih, bias_hh, _ = ctx.saved_tensors
    inputs = (x, h0, weight_ih, weight_hh, bias_ih, bias_hh)
    wanted = [i for i, need in enumerate(ctx.needs_input_grad[:6]) if need]
    out, h_n = reference_layer(
        x, ctx.batch_sizes, h0, weight_ih, weight_hh, bias_ih, bias_hh, ctx.nonlin, ctx.reverse
    )  # (N, H), (B, H)
    grads = torch.autograd.grad(
        (out, h_n), [inputs[i] for i in wanted], (grad_out, grad_h_n), create_graph=True
    )
    result: list[Tensor | None] = [None] * 9  # one per forward argument
    for i, grad in zip(wanted, grads, strict=True):
        result[i] = grad
    return tuple(result)


def _visit_order(steps: int, reverse: bool) -> list[int]:
    """The time steps in the order the layer visits them."""
    return list(range(steps - 1, -1, -1) if reverse else range(steps))


def _final_hidden(h_steps: tuple[Tensor, ...], order: list[int], batch_sizes: list[int]) -> Tensor:
    """h_n (B, H): each sequence's hidden state at the last step it reached in the walk."""
    pieces, seen = [], 0
    for t in reversed(order):
        if batch_sizes[t] > seen:
            pieces.append(h_steps[t][seen : batch_sizes[t]])  # (b_t - seen, H)
            seen = batch_sizes[t]
    if len(pieces) == 1:
        return pieces[0].clone()  # (B, H)
    return torch.cat(pieces) if pieces else h_steps[0].clone()  # (B, H); none: an empty batch


def _recurrent_weight_grad(dz, out, h0, order: list[int], batch_sizes: list[int]) -> Tensor:
    """dW_hh = dZ^T H_prev (H, H), where H_prev holds each row's previous hidden state."""
    batch = batch_sizes[0]
    if batch_sizes[-1] == batch:  # every step holds the whole batch: no copy of H_prev needed
        if order[0] == 0:  # forward: step 0 starts from h0, step t from step t - 1
            return torch.addmm(dz[:batch].t() @ h0, dz[batch:].t(), out[:-batch])  # (H, H)
        # reverse: the last step starts from h0, step t from step t + 1
        return torch.addmm(dz[-batch:].t() @ h0, dz[:-batch].t(), out[batch:])  # (H, H)
    h_prev = _previous_hidden(out.split(batch_sizes), h0, order, batch_sizes)  # (N, H)
    return dz.t() @ h_prev  # (H, H)


def _previous_hidden(h_steps, h0: Tensor, order: list[int], batch_sizes: list[int]) -> Tensor:
    """H_prev (N, H): for every row, the hidden state its step started from, in row order."""
    pieces: list[list[Tensor]] = [[] for _ in batch_sizes]
    prev, prev_rows = None, 0
    for t in order:
        rows = batch_sizes[t]
        carried = min(rows, prev_rows)
        if carried:
            pieces[t].append(prev[:carried])  # (carried, H): continuing sequences
        if rows > carried:
            pieces[t].append(h0[carried:rows])  # (rows - carried, H): sequences starting here
        prev, prev_rows = h_steps[t], rows
    return torch.cat([p for step in pieces for p in step])  # (N, H)


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
