"""The Elman cell's fused layer (see `rnnlab.nn.fused` for what the fused layers share).

Forward, per step, in place on the buffer of input projections X W_ih^T + b:
z_t += h_{t-1} W_hh^T, h_t = act(z_t), so the buffer ends up holding every h_t. Backward:

    dz_t = (dout_t + dz_{t+1} W_hh) * act'(z_t)          (act' read off h_t)

The loops are `layer_loops()`'s: compiled (loops.cpp) where they build, else loops.py.
"""

from __future__ import annotations

import torch

from rnnlab.nn.fused.common import differentiable_backward, save_inputs
from rnnlab.nn.fused.compiled import layer_loops
from rnnlab.nn.steps import final_state, shifted_product, visit_order


class FusedRNNLayer(torch.autograd.Function):
    """The Elman cell over a packed sequence. Forward, per step, in place on the buffer of
    input projections: z_t += h_{t-1} W_hh^T, h_t = act(z_t), so the buffer ends up holding
    every h_t. Backward: dz_t = (dout_t + dz_{t+1} W_hh) * act'(z_t), act' read off h_t."""

    @staticmethod
    def forward(ctx, mode, batch_sizes, reverse, x, h0, weight_ih, weight_hh, bias_ih, bias_hh, _):
        h0, bias = h0.contiguous(), bias_ih + bias_hh if bias_ih is not None else None  # (H,)
        if mode == "RNN_TANH":
            # tanh(z) = 2 sigmoid(2z) - 1, and torch's CPU sigmoid is faster than its tanh on
            # AVX2. So the loop runs on s = sigmoid(2z) = (h + 1) / 2: with h_{t-1} = 2 s_{t-1}
            # - 1, 2 z_t = 2 (x_t W_ih^T + b - 1 W_hh^T) + s_{t-1} (4 W_hh)^T: one addmm and
            # one sigmoid per step; h = 2 s - 1 once for all steps at the end.
            shift = -weight_hh.sum(1) if bias is None else bias - weight_hh.sum(1)  # (H,)
            out = torch.addmm(shift, x, weight_ih.t(), beta=2, alpha=2)  # (N, H)
            w_rec = (weight_hh * 4).t().contiguous()  # (H, H)
            start = (h0 + 1) / 2  # (B, H): s at the start
        else:
            out = (
                torch.mm(x, weight_ih.t()) if bias is None else torch.addmm(bias, x, weight_ih.t())
            )  # (N, H)
            w_rec, start = weight_hh.t().contiguous(), h0  # (H, H), (B, H)
        layer_loops(x).rnn_forward(out, w_rec, start, batch_sizes, reverse, mode == "RNN_RELU")
        if mode == "RNN_TANH":
            out.mul_(2).sub_(1)  # (N, H): h = 2 s - 1
        order = visit_order(len(batch_sizes), reverse)
        h_n = final_state(out.split(batch_sizes), order, batch_sizes)  # (B, H)
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
        dz = grad_out.clone(memory_format=torch.contiguous_format)  # (N, H), in place
        dh0 = torch.zeros_like(h0)  # (B, H)
        layer_loops(x).rnn_backward(
            dz, slope, weight_hh, batch_sizes, ctx.reverse, grad_h_n.contiguous(), dh0
        )
        order = visit_order(len(batch_sizes), ctx.reverse)
        need = ctx.needs_input_grad[3:]  # x, h0, weight_ih, weight_hh, bias_ih, bias_hh
        dx = dz @ weight_ih if need[0] else None  # (N, I)
        dw_ih = dz.t() @ x if need[2] else None  # (H, I)
        dw_hh = shifted_product(dz, out, h0, order, batch_sizes) if need[3] else None  # (H, H)
        db = dz.sum(0) if need[4] or need[5] else None  # (H,)
        return None, None, None, dx, dh0 if need[1] else None, dw_ih, dw_hh, db, db, None
