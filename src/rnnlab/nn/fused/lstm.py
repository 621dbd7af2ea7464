"""The LSTM's fused layer (see `rnnlab.nn.fused` for what the fused layers share).

Forward, per step, on buffers G (N, 4H) of gates (holding X W_ih^T at the start: all steps in
one matmul), C and TC (N, H) of c_t and tanh(c_t), M (N, H) of o * tanh(c_t), OUT (N, P) of
h_t; the biases join in the pointwise step:

    G_t  += h_{t-1} W_hh^T                        one addmm
    i, f, o = sigmoid(. + b), g = tanh(. + b)     in place
    c_t   = f * c_{t-1} + i * g
    m_t   = o * tanh(c_t);  h_t = m_t, or W_hr m_t with proj_size P (OUT is M without)

Backward, with dm the gradient reaching m (dh, or dh W_hr) and dc the cell state's:

    dc_t = dm_t * o (1 - tanh^2 c_t) + dc_{t+1} * f_{t+1}      (the last term: the "carry")
    di~ = dc * g i (1 - i),  df~ = dc * c_{t-1} f (1 - f),  dg~ = dc * i (1 - g^2)
    do~ = dm * tanh(c) o (1 - o)
    dh_{t-1} = dout_{t-1} + dG_t W_hh

The loops are `layer_loops()`'s: compiled (loops.cpp) where they build, else loops.py.
"""

from __future__ import annotations

import torch

from rnnlab.nn.fused.common import differentiable_backward, save_inputs
from rnnlab.nn.fused.compiled import layer_loops
from rnnlab.nn.steps import final_state, shifted_product, visit_order


class FusedLSTMLayer(torch.autograd.Function):
    """The LSTM over a packed sequence, one layer and direction, as one autograd node."""

    @staticmethod
    def forward(
        ctx,
        mode,
        batch_sizes,
        reverse,
        x,
        h0,
        c0,
        weight_ih,
        weight_hh,
        bias_ih,
        bias_hh,
        weight_hr,
    ):
        H, N = c0.size(1), x.size(0)
        h0, c0 = h0.contiguous(), c0.contiguous()
        gates = torch.mm(x, weight_ih.t())  # (N, 4H): every step's input projection
        bias = x.new_empty(0) if bias_ih is None else bias_ih + bias_hh  # (4H,) or none
        w_hr_t = x.new_empty(0) if weight_hr is None else weight_hr.t()  # (H, P) or none
        c, tc, m = (x.new_empty(N, H) for _ in range(3))  # (N, H) each
        out = m if weight_hr is None else x.new_empty(N, weight_hr.size(0))  # (N, P)
        layer_loops(x).lstm_forward(
            gates, bias, weight_hh.t(), w_hr_t, h0, c0, batch_sizes, reverse, c, tc, m, out
        )
        order = visit_order(len(batch_sizes), reverse)
        h_n = final_state(out.split(batch_sizes), order, batch_sizes)  # (B, P)
        c_n = final_state(c.split(batch_sizes), order, batch_sizes)  # (B, H)
        inputs = (x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr)
        save_inputs(ctx, mode, batch_sizes, reverse, inputs, gates, c, tc, m, out)
        return out, h_n, c_n

    @staticmethod
    def backward(ctx, grad_out, grad_h_n, grad_c_n):
        if torch.is_grad_enabled():  # backward(create_graph=True): to be differentiated again
            return differentiable_backward(ctx, (grad_out, grad_h_n, grad_c_n))
        x, h0, c0, weight_ih, weight_hh, _, _, weight_hr, gates, c, tc, m, out = ctx.saved_tensors
        batch_sizes, reverse = ctx.batch_sizes, ctx.reverse
        dh = grad_out.clone(memory_format=torch.contiguous_format)  # (N, P): dout + the matmul
        dm = dh if weight_hr is None else torch.empty_like(m)  # (N, H): the gradient of m_t
        dg, carry = torch.empty_like(gates), torch.empty_like(c)  # (N, 4H), (N, H): dc_t f_t
        dh0, dc0 = torch.zeros_like(h0), torch.zeros_like(c0)  # (B, P), (B, H)
        w_hr = x.new_empty(0) if weight_hr is None else weight_hr.contiguous()  # (P, H) or none
        layer_loops(x).lstm_backward(
            gates, c, tc, out, h0, c0, weight_hh.contiguous(), w_hr, batch_sizes, reverse, dh,
            dm, dg, carry, grad_h_n.contiguous(), grad_c_n.contiguous(), dh0, dc0,
        )  # fmt: skip
        need = ctx.needs_input_grad[3:]  # x, h0, c0, weight_ih, weight_hh, biases, weight_hr
        order = visit_order(len(batch_sizes), reverse)
        dx = dg @ weight_ih if need[0] else None  # (N, I)
        dw_ih = dg.t() @ x if need[3] else None  # (4H, I)
        dw_hh = shifted_product(dg, out, h0, order, batch_sizes) if need[4] else None  # (4H, P)
        db = dg.sum(0) if need[5] or need[6] else None  # (4H,)
        dw_hr = dh.t() @ m if weight_hr is not None and need[7] else None  # (P, H)
        dh0, dc0 = dh0 if need[1] else None, dc0 if need[2] else None
        return None, None, None, dx, dh0, dc0, dw_ih, dw_hh, db, db, dw_hr
