"""The GRU's fused layer (see `rnnlab.nn.fused` for what the fused layers share).

Forward, per step, on three buffers: GI (N, 3H) of input projections X W_ih^T (all steps in
one matmul), GH (N, 3H) of hidden projections, OUT (N, H) of every h_t; the biases join in the
pointwise step, r's and z's summed (those gates need only the sum of both projections):

    gh_t  = h_{t-1} W_hh^T                           one matmul into GH
    gh_n += b_hn                                     in place: the backward reads it
    r, z  = sigmoid(gi_rz + gh_rz + b_ir + b_hr, ...)   in place in GI
    n     = tanh(gi_n + b_in + r * gh_n)             in place in GI
    h_t   = n + z * (h_{t-1} - n)                    into OUT

Backward, per step, with dh_t the whole gradient reaching h_t:

    dn~ = dh (1 - z)(1 - n^2),  dz~ = dh (h_{t-1} - n) z (1 - z),  dr~ = dn~ gh_n r (1 - r)
    dh_{t-1} = dout_{t-1} + (dr~, dz~, dn~ r) W_hh + dh_t z_t     (the last term: the "carry")

Everything of a step but its matmul is one call of `pointwise_kernels()`'s gru_forward or
gru_backward.
"""

from __future__ import annotations

import torch

from rnnlab.nn.fused.common import differentiable_backward, save_inputs
from rnnlab.nn.fused.compiled import pointwise_kernels
from rnnlab.nn.steps import final_state, shifted_product, starting_state, visit_order


class FusedGRULayer(torch.autograd.Function):
    """The GRU over a packed sequence, one layer and direction, as one autograd node."""

    @staticmethod
    def forward(ctx, mode, batch_sizes, reverse, x, h0, weight_ih, weight_hh, bias_ih, bias_hh, _):
        H, h0 = h0.size(1), h0.contiguous()
        kernels = pointwise_kernels(x)
        gi = torch.mm(x, weight_ih.t())  # (N, 3H)
        bias = x.new_empty(0)  # (4H,) for the pointwise step, or none
        if bias_ih is not None:
            bias = torch.cat(
                [bias_ih[: 2 * H] + bias_hh[: 2 * H], bias_ih[2 * H :], bias_hh[2 * H :]]
            )
        gh = torch.empty_like(gi)  # (N, 3H)
        out = x.new_empty(x.size(0), H)  # (N, H)
        w_hh_t = weight_hh.t()  # (H, 3H)
        gi_steps, gh_steps = gi.split(batch_sizes), gh.split(batch_sizes)  # (b_t, 3H) views
        h_steps = out.split(batch_sizes)  # (b_t, H) views
        order = visit_order(len(batch_sizes), reverse)
        prev = h0
        for t in order:
            h_prev = starting_state(prev, h0, batch_sizes[t])  # (b_t, H)
            torch.mm(h_prev, w_hh_t, out=gh_steps[t])
            kernels.gru_forward(gi_steps[t], gh_steps[t], bias, h_prev, h_steps[t])
            prev = h_steps[t]
        h_n = final_state(h_steps, order, batch_sizes)  # (B, H)
        inputs = (x, h0, weight_ih, weight_hh, bias_ih, bias_hh, None)
        save_inputs(ctx, mode, batch_sizes, reverse, inputs, gi, gh, out)
        return out, h_n

    @staticmethod
    def backward(ctx, grad_out, grad_h_n):
        if torch.is_grad_enabled():  # backward(create_graph=True): to be differentiated again
            return differentiable_backward(ctx, (grad_out, grad_h_n))
        x, h0, weight_ih, weight_hh, _, _, _, gi, gh, out = ctx.saved_tensors
        batch_sizes, kernels = ctx.batch_sizes, pointwise_kernels(x)
        order = visit_order(len(batch_sizes), ctx.reverse)
        dh = grad_out.clone(memory_format=torch.contiguous_format)  # (N, H): dout + the matmul
        dgi, dgh = torch.empty_like(gi), torch.empty_like(gh)  # (N, 3H): dG of both projections
        carry = torch.empty_like(dh)  # (N, H): dh_t z_t, the part of dh_{t-1} past the matmul
        gi_steps, gh_steps, h_steps = (
            gi.split(batch_sizes),
            gh.split(batch_sizes),
            out.split(batch_sizes),
        )
        dh_steps, dgi_steps, dgh_steps = (
            dh.split(batch_sizes),
            dgi.split(batch_sizes),
            dgh.split(batch_sizes),
        )
        carry_steps = carry.split(batch_sizes)
        dh0 = torch.zeros_like(h0)  # (B, H)
        after, after_rows = None, 0  # the step visited after this one, and its rows
        for i in range(len(order) - 1, -1, -1):
            t = order[i]
            d, rows = dh_steps[t], batch_sizes[t]  # d: (b_t, H)
            fed = min(rows, after_rows)  # rows that went on to the step visited after
            if fed == rows == after_rows and after is not None:
                d.addmm_(dgh_steps[after], weight_hh)
                carry_in = carry_steps[after]  # (b_t, H)
            else:
                if fed:
                    d[:fed].addmm_(dgh_steps[after][:fed], weight_hh)
                if rows > fed:  # sequences that ended here: their h is in h_n
                    d[fed:].add_(grad_h_n[fed:rows])
                carry_in = torch.zeros_like(d)  # (b_t, H)
                if fed:
                    carry_in[:fed] = carry_steps[after][:fed]
            prev_rows = batch_sizes[order[i - 1]] if i > 0 else 0
            h_prev = starting_state(h_steps[order[i - 1]] if i > 0 else h0, h0, rows)  # (b_t, H)
            kernels.gru_backward(
                gi_steps[t],
                gh_steps[t],
                h_prev,
                d,
                carry_in,
                dgi_steps[t],
                dgh_steps[t],
                carry_steps[t],
            )
            if rows > prev_rows:  # rows that started from h0 at this step
                dh0[prev_rows:rows] = torch.addmm(
                    carry_steps[t][prev_rows:], dgh_steps[t][prev_rows:], weight_hh
                )  # (rows - prev_rows, H)
            after, after_rows = t, rows

        need = ctx.needs_input_grad[3:]  # x, h0, weight_ih, weight_hh, bias_ih, bias_hh
        dx = dgi @ weight_ih if need[0] else None  # (N, I)
        dw_ih = dgi.t() @ x if need[2] else None  # (3H, I)
        dw_hh = shifted_product(dgh, out, h0, order, batch_sizes) if need[3] else None
        db_ih = dgi.sum(0) if need[4] else None  # (3H,)
        db_hh = dgh.sum(0) if need[5] else None  # (3H,)
        return None, None, None, dx, dh0 if need[1] else None, dw_ih, dw_hh, db_ih, db_hh, None
