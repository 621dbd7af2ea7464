"""Where each time step lives in a packed sequence.

Both implementations of a layer work on torch's packed layout: the steps' rows stacked into
one (N, features) tensor, step t holding `batch_sizes[t]` rows (non-increasing in t), and the
sequences sorted longest first. A padded batch (T, B, F) is the special case where every
step holds B rows, so one code path serves padded, packed and unbatched input.
"""

from __future__ import annotations

from itertools import accumulate


def step_offsets(batch_sizes: list[int]) -> list[int]:
    """The first row of each step: [0, b0, b0 + b1, ...] (length T)."""
    return [0, *accumulate(batch_sizes)][:-1]
