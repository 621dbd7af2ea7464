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

The loops are `layer_loops()`'s: compiled (loops.cpp) where they build, else loops.py.
"""

from __future__ import annotations

import torch

from rnnlab.nn.fused.common import differentiable_backward, save_inputs
from rnnlab.nn.fused.compiled import layer_loops
from rnnlab.nn.steps import final_state, shifted_product, visit_order


class FusedGRULayer(torch.autograd.Function):
    """The GRU over a packed sequence, one layer and direction, as one autograd node."""

    @staticmethod
    def forward(ctx, mode, batch_sizes, reverse, x, h0, weight_ih, weight_hh, bias_ih, bias_hh, _):
        H, h0 = h0.size(1), h0.contiguous()
        gi = torch.mm(x, weight_ih.t())  # (N, 3H): every step's input projection
        bias = x.new_empty(0)  # (4H,) for the pointwise step, or none
        if bias_ih is not None:
            bias = torch.cat(
                [bias_ih[: 2 * H] + bias_hh[: 2 * H], bias_ih[2 * H :], bias_hh[2 * H :]]
            )
        gh = torch.empty_like(gi)  # (N, 3H)
        out = x.new_empty(x.size(0), H)  # (N, H)
        layer_loops(x).gru_forward(gi, gh, bias, weight_hh.t(), h0, batch_sizes, reverse, out)
        order = visit_order(len(batch_sizes), reverse)
        h_n = final_state(out.split(batch_sizes), order, batch_sizes)  # (B, H)
        inputs = (x, h0, weight_ih, weight_hh, bias_ih, bias_hh, None)
        save_inputs(ctx, mode, batch_sizes, reverse, inputs, gi, gh, out)
        return out, h_n

    @staticmethod
    def backward(ctx, grad_out, grad_h_n):
        if torch.is_grad_enabled():  # backward(create_graph=True): to be differentiated again
            return differentiable_backward(ctx, (grad_out, grad_h_n))
        x, h0, weight_ih, weight_hh, _, _, _, gi, gh, out = ctx.saved_tensors
        batch_sizes, reverse = ctx.batch_sizes, ctx.reverse
        dh = grad_out.clone(memory_format=torch.contiguous_format)  # (N, H): dout + the matmul
        carry = torch.empty_like(dh)  # (N, H): dh_t z_t, the part of dh_{t-1} past the matmul
        dgi, dgh = torch.empty_like(gi), torch.empty_like(gh)  # (N, 3H): dG of both projections
        dh0 = torch.zeros_like(h0)  # (B, H)
        layer_loops(x).gru_backward(
            gi, gh, out, h0, weight_hh, batch_sizes, reverse, dh, carry, dgi, dgh,
            grad_h_n.contiguous(), dh0,
        )  # fmt: skip
        need = ctx.needs_input_grad[3:]  # x, h0, weight_ih, weight_hh, bias_ih, bias_hh
        order = visit_order(len(batch_sizes), reverse)
        dx = dgi @ weight_ih if need[0] else None  # (N, I)
        dw_ih = dgi.t() @ x if need[2] else None  # (3H, I)
        dw_hh = shifted_product(dgh, out, h0, order, batch_sizes) if need[3] else None
        db_ih = dgi.sum(0) if need[4] else None  # (3H,)
        db_hh = dgh.sum(0) if need[5] else None  # (3H,)
        return None, None, None, dx, dh0 if need[1] else None, dw_ih, dw_hh, db_ih, db_hh, None
