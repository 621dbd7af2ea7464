"""Batches of in-memory data taken with one tensor index, not assembled sample by sample.

torch's DataLoader hands a dataset that defines `__getitems__` the whole batch of indices at
once (its map-style fetcher; `torch.utils.data.Subset` passes the call through), and then hands
the result to the collate function. A dataset here returns a `Batch`, the stacked
(inputs, targets) already, and `collate` passes it through; a list of samples from any other
dataset goes to torch's `default_collate` as before. The order of samples is the sampler's, so
a batched dataset yields exactly the tensors the per-sample path would.
"""

from __future__ import annotations

from torch.utils.data import default_collate


class Batch(tuple):
    """(inputs, targets) of a whole batch, stacked already: nothing left to collate."""


def collate(data):
    """A DataLoader's collate_fn: a `Batch` as it is, anything else through default_collate."""
    if isinstance(data, Batch):
        return tuple(data)
    return default_collate(data)
