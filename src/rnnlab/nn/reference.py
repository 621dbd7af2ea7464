"""The reference layer: the plain per-step loop over the cell, as one writes it from the
equation, differentiated by autograd. Slow and obviously right; the fused path is tested
against it and against torch."""

from __future__ import annotations

import torch
from torch import Tensor

from rnnlab.nn.cell import rnn_cell
from rnnlab.nn.steps import step_offsets


def reference_layer(
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
    """Run one layer in one direction over a packed sequence.

    **Arguments:** `x` (N, I) packed steps, `batch_sizes` rows per step, `h0` (B, H), the
    layer's weights, `reverse` to walk from the last step to the first.

    **Returns:** `out` (N, H), the hidden state at every step, and `h_n` (B, H), each
    sequence's hidden state after its last step in this direction.
    """
    offsets = step_offsets(batch_sizes)
    times = range(len(batch_sizes))
    outs: list[Tensor | None] = [None] * len(batch_sizes)  # h_t of every step, in time order
    finished: list[Tensor] = []  # forward: rows of ended sequences, in the order they ended
    h = h0[: batch_sizes[-1]] if reverse else h0  # (b, H)
    for t in reversed(times) if reverse else times:
        rows = batch_sizes[t]
        if reverse and rows > h.size(0):  # shorter sequences start here, from h0
            h = torch.cat([h, h0[h.size(0) : rows]])  # (rows, H)
        elif not reverse and rows < h.size(0):  # sequences that ended at t - 1
            finished.append(h[rows:])  # (h.size(0) - rows, H)
            h = h[:rows]  # (rows, H)
        x_t = x[offsets[t] : offsets[t] + rows]  # (rows, I)
        h = rnn_cell(x_t, h, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity)  # (rows, H)
        outs[t] = h
    h_n = h if reverse else torch.cat([h, *reversed(finished)])  # (B, H)
    return torch.cat(outs), h_n  # (N, H), (B, H)
