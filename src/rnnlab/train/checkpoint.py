"""Checkpoint files: written atomically, loaded with `weights_only=True`, checked by sha256.

A checkpoint is a plain dict of tensors and primitives (no pickled classes), so any command can
read it with `torch.load(path, weights_only=True)`. Torch's zip reader does not verify its CRCs
(a flipped byte in tensor data loads silently), so `save_checkpoint` stores a sha256 of the
contents under the key "sha256" and `load_checkpoint` refuses a file whose contents disagree.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import torch

from rnnlab.files import atomic_write

DIGEST_KEY = "sha256"


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be trusted: unreadable, truncated or altered."""


def content_digest(obj) -> str:
    """sha256 over a nested structure of dicts, lists, tuples, tensors and primitives.

    It hashes values, not the zip bytes, so it is the same before saving and after loading.
    """
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def _feed(h, obj) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous().reshape(-1)  # (N,)
        h.update(f"T{obj.dtype}{tuple(obj.shape)}:".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}:".encode())
        for key, value in obj.items():
            _feed(h, key)
            _feed(h, value)
    elif isinstance(obj, (list, tuple)):
        h.update(f"{type(obj).__name__[0]}{len(obj)}:".encode())
        for value in obj:
            _feed(h, value)
    elif obj is None or isinstance(obj, (bool, int, float, str)):
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
    else:
        raise TypeError(
            f"a checkpoint holds only tensors, dicts, lists, tuples and primitives, "
            f"got {type(obj).__name__}"
        )


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """Atomically write `state` (a dict without a 'sha256' key) with its digest to `path`."""
    if DIGEST_KEY in state:
        raise ValueError(f"state must not hold the key {DIGEST_KEY!r}; save_checkpoint adds it")
    buffer = io.BytesIO()
    torch.save({**state, DIGEST_KEY: content_digest(state)}, buffer)
    atomic_write(path, buffer.getvalue())


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read a checkpoint written by `save_checkpoint`; raise CheckpointError unless it is intact.

    **Returns:** the state dict as saved, without the digest.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(
            f"checkpoint {path} is unreadable (truncated or corrupted?): {type(e).__name__}: {e}"
        ) from e
    if not isinstance(state, dict) or DIGEST_KEY not in state:
        raise CheckpointError(f"checkpoint {path} holds no {DIGEST_KEY!r} entry; not ours?")
    saved = state.pop(DIGEST_KEY)
    actual = content_digest(state)
    if saved != actual:
        raise CheckpointError(
            f"checkpoint {path} is corrupted: its contents hash to sha256 {actual[:12]}..., "
            f"expected the stored {str(saved)[:12]}..."
        )
    return state
