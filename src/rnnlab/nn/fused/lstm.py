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

Everything of a step but its matmuls is one call of `pointwise_kernels()`'s lstm_forward or
lstm_backward.
"""

from __future__ import annotations

import torch

from rnnlab.nn.fused.common import differentiable_backward, save_inputs
from rnnlab.nn.fused.compiled import pointwise_kernels
from rnnlab.nn.steps import final_state, shifted_product, starting_state, visit_order


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
        h0, c0, kernels = h0.contiguous(), c0.contiguous(), pointwise_kernels(x)
        gates = torch.mm(x, weight_ih.t())  # (N, 4H)
        bias = x.new_empty(0) if bias_ih is None else bias_ih + bias_hh  # (4H,) or none
        w_hh_t = weight_hh.t()  # (P, 4H)
        c, tc, m = (x.new_empty(N, H) for _ in range(3))  # (N, H) each
        out = m if weight_hr is None else x.new_empty(N, weight_hr.size(0))  # (N, P)
        g_steps, c_steps, tc_steps = (b.split(batch_sizes) for b in (gates, c, tc))
        m_steps, h_steps = m.split(batch_sizes), out.split(batch_sizes)
        order = visit_order(len(batch_sizes), reverse)
        prev_h, prev_c = h0, c0
        for t in order:
            rows = batch_sizes[t]
            h_prev = starting_state(prev_h, h0, rows)  # (b_t, P)
            c_prev = starting_state(prev_c, c0, rows)  # (b_t, H)
            g_steps[t].addmm_(h_prev, w_hh_t)  # (b_t, 4H)
            kernels.lstm_forward(g_steps[t], bias, c_prev, c_steps[t], tc_steps[t], m_steps[t])
            if weight_hr is not None:
                torch.mm(m_steps[t], weight_hr.t(), out=h_steps[t])  # (b_t, P): W_hr m_t
            prev_h, prev_c = h_steps[t], c_steps[t]
        h_n = final_state(h_steps, order, batch_sizes)  # (B, P)
        c_n = final_state(c_steps, order, batch_sizes)  # (B, H)
        inputs = (x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr)
        save_inputs(ctx, mode, batch_sizes, reverse, inputs, gates, c, tc, m, out)
        return out, h_n, c_n

    @staticmethod
    def backward(ctx, grad_out, grad_h_n, grad_c_n):
        if torch.is_grad_enabled():  # backward(create_graph=True): to be differentiated again
            return differentiable_backward(ctx, (grad_out, grad_h_n, grad_c_n))
        x, h0, c0, weight_ih, weight_hh, _, _, weight_hr, gates, c, tc, m, out = ctx.saved_tensors
        batch_sizes, kernels = ctx.batch_sizes, pointwise_kernels(x)
        order = visit_order(len(batch_sizes), ctx.reverse)
        grad_c_n = grad_c_n.contiguous()  # (B, H)
        w_hh = weight_hh  # (4H, P)
        dh = grad_out.clone(memory_format=torch.contiguous_format)  # (N, P): dh_t, in place
        dm = dh if weight_hr is None else torch.empty_like(m)  # (N, H): the gradient of m_t
        dg, carry = torch.empty_like(gates), torch.empty_like(c)  # (N, 4H), (N, H): dc_t f_t
        g_steps, c_steps, tc_steps = (b.split(batch_sizes) for b in (gates, c, tc))
        dh_steps, dm_steps, dg_steps = (b.split(batch_sizes) for b in (dh, dm, dg))
        carry_steps = carry.split(batch_sizes)
        dh0, dc0 = torch.zeros_like(h0), torch.zeros_like(c0)  # (B, P), (B, H)
        after, after_rows = None, 0  # the step visited after this one, and its rows
        for i in range(len(order) - 1, -1, -1):
            t = order[i]
            d, rows = dh_steps[t], batch_sizes[t]  # d: (b_t, P)
            fed = min(rows, after_rows)  # rows that went on to the step visited after
            if fed == rows == after_rows and after is not None:
                d.addmm_(dg_steps[after], w_hh)
                carry_in = carry_steps[after]  # (b_t, H)
            else:
                if fed:
                    d[:fed].addmm_(dg_steps[after][:fed], w_hh)
                if rows > fed:  # sequences that ended here: their state is the final one
                    d[fed:].add_(grad_h_n[fed:rows])
                pieces = [carry_steps[after][:fed]] if fed else []
                carry_in = torch.cat([*pieces, grad_c_n[fed:rows]])  # (b_t, H)
            if weight_hr is not None:
                torch.mm(d, weight_hr, out=dm_steps[t])  # (b_t, H)
            prev_rows = batch_sizes[order[i - 1]] if i > 0 else 0
            c_prev = starting_state(c_steps[order[i - 1]] if i > 0 else c0, c0, rows)  # (b_t, H)
            kernels.lstm_backward(
                g_steps[t], c_prev, tc_steps[t], dm_steps[t], carry_in, dg_steps[t], carry_steps[t]
            )
            if rows > prev_rows:  # rows that started from (h0, c0) at this step
                dh0[prev_rows:rows] = dg_steps[t][prev_rows:] @ w_hh  # (rows - prev_rows, P)
                dc0[prev_rows:rows] = carry_steps[t][prev_rows:]
            after, after_rows = t, rows

        need = ctx.needs_input_grad[3:]  # x, h0, c0, weight_ih, weight_hh, biases, weight_hr
        dx = dg @ weight_ih if need[0] else None  # (N, I)
        dw_ih = dg.t() @ x if need[3] else None  # (4H, I)
        dw_hh = shifted_product(dg, out, h0, order, batch_sizes) if need[4] else None  # (4H, P)
        db = dg.sum(0) if need[5] or need[6] else None  # (4H,)
        dw_hr = dh.t() @ m if weight_hr is not None and need[7] else None  # (P, H)
        dh0, dc0 = dh0 if need[1] else None, dc0 if need[2] else None
        return None, None, None, dx, dh0, dc0, dw_ih, dw_hh, db, db, dw_hr
