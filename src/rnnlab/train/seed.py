"""Seeding, and capturing / restoring every random stream a training run draws from.

The captured state holds only tensors, ints, floats and None, so it goes into a checkpoint that
`torch.load(..., weights_only=True)` reads back. Streams: python's `random`, numpy's global
RNG, torch's CPU RNG, CUDA's (when asked), and any `torch.Generator`s passed in (a DataLoader's
shuffling generator).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed python's `random`, numpy's global RNG and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng_state(generators: Sequence[torch.Generator] = (), cuda: bool = False) -> dict:
    """The state of every stream, as tensors and primitives; `restore_rng_state` undoes draws."""
    version, mt, gauss_next = random.getstate()
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "python": {
            "version": version,
            "state": torch.tensor(mt, dtype=torch.int64),  # (625,)
            "gauss_next": gauss_next,
        },
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),  # (624,)
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if cuda else None,
        "generators": [g.get_state() for g in generators],
    }


def restore_rng_state(
    state: dict, generators: Sequence[torch.Generator] = (), cuda: bool = False
) -> None:
    """Put every stream back to `state` (from `capture_rng_state` with the same generators)."""
    if len(state["generators"]) != len(generators):
        raise ValueError(
            f"the saved state holds {len(state['generators'])} generator(s) but "
            f"{len(generators)} were given; the data loaders must be built the same way"
        )
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"].tolist()), py["gauss_next"]))
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["kind"], keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if cuda and state["cuda"] is not None:
        torch.cuda.set_rng_state_all(state["cuda"])
    for generator, saved in zip(generators, state["generators"], strict=True):
        generator.set_state(saved)
