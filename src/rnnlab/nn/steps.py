"""Where each time step lives in a packed sequence, and how a layer walks them.

Both implementations of a layer work on torch's packed layout: the steps' rows stacked into
one (N, features) tensor, step t holding `batch_sizes[t]` rows (non-increasing in t), and the
sequences sorted longest first. A padded batch (T, B, F) is the special case where every
step holds B rows, so one code path serves padded, packed and unbatched input.

A layer visits the steps in time order, or reversed for the backward direction. A step's rows
start from the rows of the step visited before it while they last, and from the initial
state beyond them: walking a packed batch in reverse, shorter sequences begin part-way. Walking
forwards, rows drop out instead as sequences end, and their last state is the final one.
"""

from __future__ import annotations

from itertools import accumulate

import torch
from torch import Tensor


def step_offsets(batch_sizes: list[int]) -> list[int]:
    """The first row of each step: [0, b0, b0 + b1, ...] (length T)."""
    return [0, *accumulate(batch_sizes)][:-1]


def visit_order(steps: int, reverse: bool) -> list[int]:
    """The time steps in the order a layer visits them."""
    return list(range(steps - 1, -1, -1) if reverse else range(steps))


def starting_state(prev: Tensor, start: Tensor, rows: int) -> Tensor:
    """The (rows, F) state a step starts from: the rows of `prev` (the state after the step
    visited before) while they last, then those of `start` (sequences that begin here)."""
    if prev.size(0) >= rows:
        return prev[:rows]  # a view: the common case
    return torch.cat([prev, start[prev.size(0) : rows]])  # (rows, F)


def final_state(steps: tuple[Tensor, ...], order: list[int], batch_sizes: list[int]) -> Tensor:
    """(B, F): each sequence's state at the last step it reached in the walk, from `steps`,
    the per-step views (b_t, F) of a buffer holding every step's state."""
    pieces, seen = [], 0
    for t in reversed(order):
        if batch_sizes[t] > seen:
            pieces.append(steps[t][seen : batch_sizes[t]])  # (b_t - seen, F)
            seen = batch_sizes[t]
    if len(pieces) == 1:
        return pieces[0].clone()  # (B, F)
    return torch.cat(pieces) if pieces else steps[0].clone()  # (B, F); none: an empty batch


def previous_states(
    buffer: Tensor, start: Tensor, order: list[int], batch_sizes: list[int]
) -> Tensor:
    """(N, F): for every row of `buffer` (every step's state, (N, F)), the state its step
    started from, in row order; with no copy when every step holds the whole batch."""
    batch = batch_sizes[0]
    if batch_sizes[-1] == batch:  # padded: shift the buffer by one step
        if order[0] == 0:  # forwards: step 0 starts from `start`, step t from step t - 1
            return torch.cat([start, buffer[:-batch]])  # (N, F)
        return torch.cat([buffer[batch:], start])  # (N, F): backwards, from step t + 1
    steps = buffer.split(batch_sizes)
    pieces: list[list[Tensor]] = [[] for _ in batch_sizes]
    prev_rows = 0
    for i, t in enumerate(order):
        rows = batch_sizes[t]
        carried = min(rows, prev_rows)
        if carried:
            pieces[t].append(steps[order[i - 1]][:carried])  # (carried, F): continuing
        if rows > carried:
            pieces[t].append(start[carried:rows])  # (rows - carried, F): starting here
        prev_rows = rows
    return torch.cat([p for step in pieces for p in step])  # (N, F)


def shifted_product(
    left: Tensor, buffer: Tensor, start: Tensor, order: list[int], batch_sizes: list[int]
) -> Tensor:
    """left^T @ previous_states(buffer, ...) without building the shifted copy when every
    step holds the whole batch: the recurrent weight's gradient dW_hh = dG^T H_prev."""
    batch = batch_sizes[0]
    if batch_sizes[-1] != batch:
        return left.t() @ previous_states(buffer, start, order, batch_sizes)
    if order[0] == 0:  # forwards: step 0 starts from `start`, step t from step t - 1
        return torch.addmm(left[:batch].t() @ start, left[batch:].t(), buffer[:-batch])
    return torch.addmm(left[-batch:].t() @ start, left[:-batch].t(), buffer[batch:])
