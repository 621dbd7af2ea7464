"""The serial loops of the fused layers over a packed sequence, forward and backward: per step a
matmul and the step's pointwise part (for the GRU and LSTM `pointwise.py`'s functions, for the
Elman cell an activation or its slope). loops.cpp is the same six functions compiled (same
arguments, same results); `compiled.layer_loops` picks one of the two.

Each loop fills the buffers it is given; `batch_sizes` and `reverse` say which rows each step
owns and in which order the steps are visited (`rnnlab.nn.steps`). A step's rows start from
the rows of the step visited before while they last and from the initial state beyond
(`starting_state`); walking backwards in time, the gradient of a step's state goes on to the
step visited before it for the rows that one held, and to the initial state's gradient for the
rows that started there. An absent bias or projection is an empty tensor.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnlab.nn.fused import pointwise
from rnnlab.nn.steps import starting_state, visit_order


def steps_of(batch_sizes: list[int], *buffers: Tensor) -> list[tuple[Tensor, ...]]:
    """Each buffer (N, ...) cut into its steps' rows: one tuple of views per buffer."""
    return [buffer.split(batch_sizes) for buffer in buffers]


def incoming(after: int | None, after_rows: int, rows: int) -> tuple[int, bool]:
    """How many of a step's `rows` went on to the step visited after it (which held
    `after_rows`), and whether that is the common case: all of them, and all of its rows."""
    fed = min(rows, after_rows)
    return fed, fed == rows == after_rows and after is not None


def rnn_forward(
    z: Tensor, w_rec: Tensor, start: Tensor, batch_sizes: list[int], reverse: bool, relu: bool
) -> None:
    """z (N, H), holding every step's input projection, becomes every step's state:
    z_t = act(z_t + s_{t-1} w_rec), act relu or sigmoid (see rnn.py for the tanh in it),
    from `start` (B, H)."""
    act_ = torch.relu_ if relu else torch.sigmoid_
    z_steps = z.split(batch_sizes)
    prev = start
    for t in visit_order(len(batch_sizes), reverse):
        z_steps[t].addmm_(starting_state(prev, start, batch_sizes[t]), w_rec)  # (b_t, H)
        act_(z_steps[t])
        prev = z_steps[t]


def rnn_backward(
    dz: Tensor,
    slope: Tensor,
    w_hh: Tensor,
    batch_sizes: list[int],
    reverse: bool,
    grad_h_n: Tensor,
    dh0: Tensor,
) -> None:
    """dz (N, H), holding the output's gradient, becomes every step's pre-activation gradient,
    dz_t = (dout_t + dz_{t+1} W_hh) * act'(z_t) with act' in `slope` (N, H); dh0 (B, H)."""
    dz_steps, slopes = steps_of(batch_sizes, dz, slope)
    order = visit_order(len(batch_sizes), reverse)
    after, after_rows = None, 0  # the step visited after this one, and its rows
    for i in range(len(order) - 1, -1, -1):
        t = order[i]
        rows = batch_sizes[t]
        d = dz_steps[t]  # (b_t, H)
        fed, common = incoming(after, after_rows, rows)
        if common:
            d.addmm_(dz_steps[after], w_hh)
        else:
            if fed:
                d[:fed].addmm_(dz_steps[after][:fed], w_hh)
            if rows > fed:  # sequences that ended here: their h is in h_n
                d[fed:].add_(grad_h_n[fed:rows])
        d.mul_(slopes[t])
        prev_rows = batch_sizes[order[i - 1]] if i > 0 else 0
        if rows > prev_rows:  # rows that started from h0 at this step
            dh0[prev_rows:rows] = d[prev_rows:] @ w_hh  # (rows - prev_rows, H)
        after, after_rows = t, rows


def gru_forward(
    gi: Tensor,
    gh: Tensor,
    bias: Tensor,
    w_hh_t: Tensor,
    h0: Tensor,
    batch_sizes: list[int],
    reverse: bool,
    out: Tensor,
) -> None:
    """gi (N, 3H) = X W_ih^T becomes every step's (r, z, n), gh (N, 3H) its hidden projection
    (with b_hn), out (N, H) its h."""
    gi_steps, gh_steps, h_steps = steps_of(batch_sizes, gi, gh, out)
    prev = h0
    for t in visit_order(len(batch_sizes), reverse):
        h_prev = starting_state(prev, h0, batch_sizes[t])  # (b_t, H)
        torch.mm(h_prev, w_hh_t, out=gh_steps[t])  # (b_t, 3H)
        pointwise.gru_forward(gi_steps[t], gh_steps[t], bias, h_prev, h_steps[t])
        prev = h_steps[t]


def gru_backward(
    gi: Tensor,
    gh: Tensor,
    out: Tensor,
    h0: Tensor,
    w_hh: Tensor,
    batch_sizes: list[int],
    reverse: bool,
    dh: Tensor,
    carry: Tensor,
    dgi: Tensor,
    dgh: Tensor,
    grad_h_n: Tensor,
    dh0: Tensor,
) -> None:
    """From dh (N, H), holding the output's gradient: dgi and dgh (N, 3H), the projections'
    gradients, and dh0 (B, H); dh gains each step's matmul term, carry (N, H) holds dh_t z_t."""
    gi_steps, gh_steps, h_steps, dh_steps = steps_of(batch_sizes, gi, gh, out, dh)
    dgi_steps, dgh_steps, carry_steps = steps_of(batch_sizes, dgi, dgh, carry)
    order = visit_order(len(batch_sizes), reverse)
    after, after_rows = None, 0  # the step visited after this one, and its rows
    for i in range(len(order) - 1, -1, -1):
        t = order[i]
        rows = batch_sizes[t]
        d = dh_steps[t]  # (b_t, H)
        fed, common = incoming(after, after_rows, rows)
        if common:
            d.addmm_(dgh_steps[after], w_hh)
            carry_in = carry_steps[after]  # (b_t, H)
        else:
            carry_in = torch.zeros_like(d)  # (b_t, H)
            if fed:
                d[:fed].addmm_(dgh_steps[after][:fed], w_hh)
                carry_in[:fed] = carry_steps[after][:fed]
            if rows > fed:  # sequences that ended here: their h is in h_n
                d[fed:].add_(grad_h_n[fed:rows])
        prev_rows = batch_sizes[order[i - 1]] if i > 0 else 0
        h_prev = starting_state(h_steps[order[i - 1]] if i > 0 else h0, h0, rows)  # (b_t, H)
        pointwise.gru_backward(
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
                carry_steps[t][prev_rows:], dgh_steps[t][prev_rows:], w_hh
            )  # (rows - prev_rows, H)
        after, after_rows = t, rows


def lstm_forward(
    gates: Tensor,
    bias: Tensor,
    w_hh_t: Tensor,
    w_hr_t: Tensor,
    h0: Tensor,
    c0: Tensor,
    batch_sizes: list[int],
    reverse: bool,
    c: Tensor,
    tc: Tensor,
    m: Tensor,
    out: Tensor,
) -> None:
    """gates (N, 4H) = X W_ih^T becomes every step's (i, f, g, o); c, tc, m (N, H) its c,
    tanh(c) and o tanh(c); out (N, P) its h (m itself without a projection)."""
    g_steps, c_steps, tc_steps, m_steps, h_steps = steps_of(batch_sizes, gates, c, tc, m, out)
    prev_h, prev_c = h0, c0
    for t in visit_order(len(batch_sizes), reverse):
        rows = batch_sizes[t]
        h_prev = starting_state(prev_h, h0, rows)  # (b_t, P)
        c_prev = starting_state(prev_c, c0, rows)  # (b_t, H)
        g_steps[t].addmm_(h_prev, w_hh_t)  # (b_t, 4H)
        pointwise.lstm_forward(g_steps[t], bias, c_prev, c_steps[t], tc_steps[t], m_steps[t])
        if w_hr_t.numel():
            torch.mm(m_steps[t], w_hr_t, out=h_steps[t])  # (b_t, P): W_hr m_t
        prev_h, prev_c = h_steps[t], c_steps[t]


def lstm_backward(
    gates: Tensor,
    c: Tensor,
    tc: Tensor,
    out: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_hh: Tensor,
    w_hr: Tensor,
    batch_sizes: list[int],
    reverse: bool,
    dh: Tensor,
    dm: Tensor,
    dg: Tensor,
    carry: Tensor,
    grad_h_n: Tensor,
    grad_c_n: Tensor,
    dh0: Tensor,
    dc0: Tensor,
) -> None:
    """From dh (N, P), holding the output's gradient: dg (N, 4H), the gates' gradients, and
    dh0, dc0; dh gains each step's matmul term, dm (N, H) is the gradient of o tanh(c) (dh
    itself without a projection), carry (N, H) holds dc_t f_t."""
    g_steps, c_steps, tc_steps, dh_steps = steps_of(batch_sizes, gates, c, tc, dh)
    dm_steps, dg_steps, carry_steps = steps_of(batch_sizes, dm, dg, carry)
    order = visit_order(len(batch_sizes), reverse)
    after, after_rows = None, 0  # the step visited after this one, and its rows
    for i in range(len(order) - 1, -1, -1):
        t = order[i]
        rows = batch_sizes[t]
        d = dh_steps[t]  # (b_t, P)
        fed, common = incoming(after, after_rows, rows)
        if common:
            d.addmm_(dg_steps[after], w_hh)
            carry_in = carry_steps[after]  # (b_t, H)
        else:
            if fed:
                d[:fed].addmm_(dg_steps[after][:fed], w_hh)
            if rows > fed:  # sequences that ended here: their state is the final one
                d[fed:].add_(grad_h_n[fed:rows])
            pieces = [carry_steps[after][:fed]] if fed else []
            carry_in = torch.cat([*pieces, grad_c_n[fed:rows]])  # (b_t, H)
        if w_hr.numel():
            torch.mm(d, w_hr, out=dm_steps[t])  # (b_t, H)
        prev_rows = batch_sizes[order[i - 1]] if i > 0 else 0
        c_prev = starting_state(c_steps[order[i - 1]] if i > 0 else c0, c0, rows)  # (b_t, H)
        pointwise.lstm_backward(
            g_steps[t], c_prev, tc_steps[t], dm_steps[t], carry_in, dg_steps[t], carry_steps[t]
        )
        if rows > prev_rows:  # rows that started from (h0, c0) at this step
            dh0[prev_rows:rows] = dg_steps[t][prev_rows:] @ w_hh  # (rows - prev_rows, P)
            dc0[prev_rows:rows] = carry_steps[t][prev_rows:]
        after, after_rows = t, rows
