"""The Elman cell's fused layer (see `rnnlab.nn.fused` for what the fused layers share).

Forward, per step, in place on the buffer of input projections X W_ih^T + b:
z_t += h_{t-1} W_hh^T, h_t = act(z_t), so the buffer ends up holding every h_t. Backward:

    dz_t = (dout_t + dz_{t+1} W_hh) * act'(z_t)          (act' read off h_t)
"""

from __future__ import annotations

import torch

from rnnlab.nn.fused.common import differentiable_backward, save_inputs
from rnnlab.nn.steps import final_state, shifted_product, visit_order


class FusedRNNLayer(torch.autograd.Function):
    """The Elman cell over a packed sequence. Forward, per step, in place on the buffer of
    input projections: z_t += h_{t-1} W_hh^T, h_t = act(z_t), so the buffer ends up holding
    every h_t. Backward: dz_t = (dout_t + dz_{t+1} W_hh) * act'(z_t), act' read off h_t."""

    @staticmethod
    def forward(ctx, mode, batch_sizes, reverse, x, h0, weight_ih, weight_hh, bias_ih, bias_hh, _):
        bias = bias_ih + bias_hh if bias_ih is not None else None  # (H,)
        if mode == "RNN_TANH":
            # tanh(z) = 2 sigmoid(2z) - 1, and torch's CPU sigmoid is faster than its tanh on
            # AVX2. So the loop runs on s = sigmoid(2z) = (h + 1) / 2: with h_{t-1} = 2 s_{t-1}
            # - 1, 2 z_t = 2 (x_t W_ih^T + b - 1 W_hh^T) + s_{t-1} (4 W_hh)^T: one addmm and
            # one sigmoid per step; h = 2 s - 1 once for all steps at the end.
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
        order = visit_order(len(batch_sizes), reverse)
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
        if mode == "RNN_TANH":
            out.mul_(2).sub_(1)  # (N, H): h = 2 s - 1
        h_n = final_state(steps, order, batch_sizes)  # (B, H)
        inputs = (x, h0, weight_ih, weight_hh, bias_ih, bias_hh, None)
        save_inputs(ctx, mode, batch_sizes, reverse, inputs, out)
        return out, h_n

    @staticmethod
    def backward(ctx, grad_out, grad_h_n):
        if torch.is_grad_enabled():  # backward(create_graph=True): to be differentiated again
            return differentiable_backward(ctx, (grad_out, grad_h_n))
        x, h0, weight_ih, weight_hh, _, _, _, out = ctx.saved_tensors
        batch_sizes = ctx.batch_sizes
        if ctx.mode == "RNN_TANH":
            slope = 1 - out * out  # (N, H): tanh'(z) = 1 - h^2
        else:
            slope = (out > 0).to(out.dtype)  # (N, H): relu'(z)
        # Visit the steps in the reverse of the forward order: dz_t = (dout_t + dz_next W_hh)
        # * act'(z_t), where a row that the next visited step did not carry on takes its
        # gradient from h_n instead (its sequence ended here).
        dz = grad_out.clone()  # (N, H), accumulated in place
        dz_steps, slopes = dz.split(batch_sizes), slope.split(batch_sizes)  # T views (b_t, H)
        dh0 = torch.zeros_like(h0)  # (B, H)
        order = visit_order(len(batch_sizes), ctx.reverse)
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
        need = ctx.needs_input_grad[3:]  # x, h0, weight_ih, weight_hh, bias_ih, bias_hh
        dx = dz @ weight_ih if need[0] else None  # (N, I)
        dw_ih = dz.t() @ x if need[2] else None  # (H, I)
        dw_hh = shifted_product(dz, out, h0, order, batch_sizes) if need[3] else None  # (H, H)
        db = dz.sum(0) if need[4] or need[5] else None  # (H,)
        return None, None, None, dx, dh0 if need[1] else None, dw_ih, dw_hh, db, db, None
