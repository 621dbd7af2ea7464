"""The on-disk cache of fetched data sets: one folder per entry, its files and a manifest.

The root is `$RNNLAB_DATA`, else `~/.cache/rnnlab`. An entry `<root>/<name>/` holds plain
files and `manifest.json`, which records each file's size and sha256 plus whatever the caller
says about where the data came from. Every file, the manifest last, is written atomically
(a temporary file in the same folder, fsync, `os.replace`), and every read checks each file
against the manifest, so a torn or corrupted entry raises `CacheError` instead of being used.
The cache stores bytes; it knows nothing of IDX or MNIST.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from rnnlab.files import atomic_write

log = logging.getLogger(__name__)
T = TypeVar("T")

ENV_VAR = "RNNLAB_DATA"
MANIFEST = "manifest.json"
FORMAT = 1  # bump when the manifest's meaning changes; older entries are then refetched


class CacheError(RuntimeError):
    """A cache entry that exists but cannot be trusted (missing file, bad checksum, ...)."""


@dataclass(frozen=True)
class CacheEntry:
    """A verified cache entry: its folder, its manifest, and each file's bytes."""

    path: Path
    manifest: dict[str, Any]
    files: dict[str, bytearray]


def default_root() -> Path:
    """`$RNNLAB_DATA` when set and not empty, else `~/.cache/rnnlab`."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rnnlab"


def resolve_root(root: str | os.PathLike | None) -> Path:
    """`root` as a path; None means `default_root()`."""
    return Path(root).expanduser() if root is not None else default_root()


def entry_path(root: str | os.PathLike | None, name: str) -> Path:
    """The folder of entry `name` under `root` (None: `default_root()`)."""
    _check_plain_name(name, "entry name")
    return resolve_root(root) / name


def sha256_of(data: bytes | bytearray) -> str:
    return hashlib.sha256(data).hexdigest()


def store(
    root: str | os.PathLike | None,
    name: str,
    files: Mapping[str, bytes | bytearray],
    info: Mapping[str, Any],
) -> Path:
    """Write entry `name`: each of `files` (file name -> bytes), then a manifest holding their
    sizes and sha256 and the JSON-serialisable `info`. Returns the entry's folder."""
    path = entry_path(root, name)
    path.mkdir(parents=True, exist_ok=True)
    records = {}
    for file_name, data in files.items():
        _check_plain_name(file_name, "file name")
        atomic_write(path / file_name, data)
        records[file_name] = {"bytes": len(data), "sha256": sha256_of(data)}
    manifest = {"format": FORMAT, "name": name, **info, "files": records}
    atomic_write(path / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    return path


def load(root: str | os.PathLike | None, name: str) -> CacheEntry | None:
    """Entry `name` with every file checked against its manifest; None when there is no entry.

    Raises `CacheError` naming the file and the fault when the entry is incomplete, its
    manifest unreadable, or a file's size or sha256 differs from the manifest.
    """
    path = entry_path(root, name)
    manifest = read_manifest(root, name)
    if manifest is None:
        return None
    files = {}
    for file_name, record in manifest["files"].items():
        file_path = path / file_name
        try:
            data = _read_exactly(file_path, record["bytes"])
        except FileNotFoundError:
            raise CacheError(f"{file_path}: listed in the manifest but missing") from None
        digest = sha256_of(data)
        if digest != record["sha256"]:
            raise CacheError(
                f"{file_path}: sha256 {digest} does not match the manifest's {record['sha256']}"
            )
        files[file_name] = data
    return CacheEntry(path, manifest, files)


def read_manifest(root: str | os.PathLike | None, name: str) -> dict[str, Any] | None:
    """Entry `name`'s manifest, unverified against the files; None when there is no entry."""
    path = entry_path(root, name)
    manifest_path = path / MANIFEST
    if not manifest_path.exists():
        if path.is_dir() and any(not p.name.startswith(".") for p in path.iterdir()):
            raise CacheError(f"{path}: incomplete entry, files but no {MANIFEST}")
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CacheError(f"{manifest_path}: unreadable manifest ({error})") from error
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise CacheError(f"{manifest_path}: manifest format {found!r}, expected {FORMAT}")
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(
        isinstance(r, dict) and isinstance(r.get("bytes"), int) and isinstance(r.get("sha256"), str)
        for r in files.values()
    ):
        raise CacheError(f"{manifest_path}: 'files' must map names to {{bytes, sha256}}")
    for file_name in files:
        _check_plain_name(file_name, f"file name in {manifest_path}", CacheError)
    return manifest


def _read_exactly(path: Path, size: int) -> bytearray:
    actual = path.stat().st_size
    if actual != size:
        raise CacheError(f"{path}: {actual} bytes, the manifest says {size}")
    data = bytearray(size)
    with path.open("rb") as f:
        got = f.readinto(data)
    if got != size:
        raise CacheError(f"{path}: read {got} bytes, the manifest says {size}")
    return data


def _check_plain_name(name: str, what: str, error: type[Exception] = ValueError) -> None:
    if not name or name in (".", "..") or "/" in name or "\\" in name or name == MANIFEST:
        raise error(f"{what} must be a plain file name other than {MANIFEST}, got {name!r}")


def try_cache(
    load: Callable[[], T | None],
    root: str | os.PathLike | None,
    name: str,
    tried: list[str],
    *,
    refetch: bool,
    corrupt: tuple[type[BaseException], ...],
) -> T | None:
    """What `load()` reads from cache entry `name`, or None to go on to the next source.

    The one "cache first" step of every data set's list of sources: skipped on `refetch`; an
    entry failing with one of the `corrupt` errors is reported (and fetched again by the
    caller). Each outcome adds its line to `tried`, the list a final error names.
    """
    path = entry_path(root, name)
    if refetch:
        tried.append(f"cache {path}: skipped (refetch)")
        return None
    try:
        value = load()
    except corrupt as error:
        log.warning("cache entry %s is corrupted (%s); fetching it again", path, error)
        tried.append(f"cache {path}: corrupted ({error})")
        return None
    if value is None:
        tried.append(f"cache {path}: empty")
    return value
