"""The reference layer: the plain per-step loop over a cell's equations (`spec.cell_step`), as
one writes it from the equation, differentiated by autograd. Slow and obviously right; the
fused path is tested against it and against torch."""

from __future__ import annotations

import torch
from torch import Tensor

from rnnlab.nn.spec import CellSpec, LayerWeights, State, cell_step
from rnnlab.nn.steps import step_offsets


def reference_layer(
    spec: CellSpec,
    x: Tensor,
    batch_sizes: list[int],
    state0: State,
    weights: LayerWeights,
    reverse: bool,
) -> tuple[Tensor, State]:
    """Run one layer of `spec`'s cell in one direction over a packed sequence.

    **Arguments:** `x` (N, I) packed steps, `batch_sizes` rows per step, `state0` the initial
    state, (h0,) or (h0, c0), each (B, F), the layer's `weights`, `reverse` to walk from the
    last step to the first.

    **Returns:** `out` (N, H_out), h at every step, and the final state, each sequence's state
    after its last step in this direction, of `state0`'s shapes.
    """
    offsets = step_offsets(batch_sizes)
    times = range(len(batch_sizes))
    outs: list[Tensor | None] = [None] * len(batch_sizes)  # h_t of every step, in time order
    finished: list[State] = []  # forward: rows of ended sequences, in the order they ended
    state = tuple(s[: batch_sizes[-1]] for s in state0) if reverse else state0  # (b, F) each
    for t in reversed(times) if reverse else times:
        rows, held = batch_sizes[t], state[0].size(0)
        if reverse and rows > held:  # shorter sequences start here, from state0
            state = tuple(
                torch.cat([s, s0[held:rows]]) for s, s0 in zip(state, state0, strict=True)
            )
        elif not reverse and rows < held:  # sequences that ended at t - 1
            finished.append(tuple(s[rows:] for s in state))  # (held - rows, F) each
            state = tuple(s[:rows] for s in state)  # (rows, F) each
        x_t = x[offsets[t] : offsets[t] + rows]  # (rows, I)
        state = cell_step(spec, x_t, state, weights)  # (rows, F) each
        outs[t] = state[0]
    if not reverse and finished:  # the ended sequences' states, longest first
        ended = zip(*finished, strict=True)  # per state tensor: its pieces, in the order they ended
        state = tuple(torch.cat([s, *reversed(p)]) for s, p in zip(state, ended, strict=True))
    return torch.cat(outs), state  # (N, H_out), state0's shapes
