"""Bounded decompression: gzip streams, zip members and tar members read with a byte limit.

A few megabytes of gzip can hold gigabytes of zeros. Everything here reads in chunks through
a `LimitedReader`, which raises `TooLargeError` (naming the file and the bound) as soon as
the output would pass its limit, so memory never holds more than the limit plus one chunk.
Zip and tar members are checked twice: their declared size before reading, and the bytes
actually produced while reading (a header can lie). A damaged stream or archive raises
`ArchiveError` naming the file. Every route that decompresses (IDX gz, wheels, zips, tars,
word lists, Brown) reads through here. This module knows nothing of what the bytes mean.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import lzma
import os
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from rnnlab.data.sources import SourceError

CHUNK = 1 << 18  # bytes per read: the most held beyond the limit at any time
GZIP_MAGIC = b"\x1f\x8b"
# magic bytes -> (format, the reader that decompresses in bounded steps: each read asks the
# decompressor for at most the bytes requested)
COMPRESSED: dict[bytes, tuple[str, Callable[[BinaryIO], BinaryIO]]] = {
    GZIP_MAGIC: ("gzip", lambda raw: gzip.GzipFile(fileobj=raw, mode="rb")),
    b"BZh": ("bzip2", bz2.BZ2File),
    b"\xfd7zXZ\x00": ("xz", lzma.LZMAFile),
}
# what a damaged compressed stream raises, by library
DAMAGE = (OSError, EOFError, zlib.error, lzma.LZMAError)
# zip compression methods read here: both decompress in bounded steps inside zipfile, which
# bzip2 and lzma members do not (one read of 4 KB could expand to hundreds of megabytes)
ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}

Source = str | os.PathLike | bytes | bytearray


class ArchiveError(SourceError, ValueError):
    """A compressed stream or archive that is damaged, or that expands past its bound: a
    source that failed (`SourceError`) and a bad value (`ValueError`)."""


class TooLargeError(ArchiveError):
    """Output that passed its limit; reading stopped there."""

    def __init__(self, name: str, limit: int, bound: str, declared: int | None = None) -> None:
        if declared is None:
            what = f"expands past {limit:,} bytes"
            end = "stopped reading there"
        else:
            what = f"declares {declared:,} bytes, more than {limit:,}"
            end = "not read"
        super().__init__(f"{name}: {what}, the limit set by {bound}; {end}")
        self.name = name
        self.limit = limit
        self.bound = bound


class LimitedReader(io.RawIOBase):
    """A read-only stream over `stream` that refuses to produce more than `limit` bytes.

    **Arguments:** `stream` any binary stream whose `read(n)` returns at most n bytes;
    `limit` the most bytes it may produce; `name` the file, and `bound` where the limit
    comes from ("the size its IDX header declares"), for the error message.

    A read that would go past the limit raises `TooLargeError`; it never asks `stream` for
    more than one byte beyond the limit.
    """

    def __init__(self, stream: BinaryIO, limit: int, name: str, bound: str = "the caller") -> None:
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        self.stream = stream
        self.limit = limit
        self.name = name
        self.bound = bound
        self.count = 0  # bytes produced so far

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        left = self.limit - self.count
        want = left + 1 if size is None or size < 0 else min(size, left + 1)
        data = self.stream.read(want)
        self.count += len(data)
        if self.count > self.limit:
            raise TooLargeError(self.name, self.limit, self.bound)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def read_limited(stream: BinaryIO, limit: int, name: str, bound: str = "the caller") -> bytearray:
    """Every byte `stream` yields up to its end, when that is at most `limit` bytes; else
    `TooLargeError`, raised after reading at most `limit` + 1 bytes."""
    reader = LimitedReader(stream, limit, name, bound)
    out = bytearray()
    while chunk := reader.read(CHUNK):
        out += chunk
    return out


@contextlib.contextmanager
def open_stream(source: Source, name: str | None = None) -> Iterator[BinaryIO]:
    """`source` (a path, or the bytes of a file) as a binary stream, decompressed on the fly
    when it starts with the magic bytes of gzip, bzip2 or xz (told apart by content, not
    name). Reads from it return at most what they ask for, so read it with `read_limited`
    or through a `LimitedReader`.

    Raises `FileNotFoundError` for a missing path and, while reading, `ArchiveError` naming
    `name` (default: the path) when the compressed data is damaged.
    """
    name = name or _name_of(source)
    with contextlib.ExitStack() as stack:
        if isinstance(source, (bytes, bytearray)):
            raw: BinaryIO = io.BytesIO(source)
        else:
            raw = stack.enter_context(Path(source).open("rb"))
        head = raw.read(6)
        raw.seek(0)
        found = next((c for magic, c in COMPRESSED.items() if head.startswith(magic)), None)
        if found is None:
            yield raw
            return
        format_name, reader = found
        try:
            yield stack.enter_context(reader(raw))
        except ArchiveError:
            raise
        except DAMAGE as error:
            raise ArchiveError(f"{name}: damaged {format_name} stream ({error})") from error


def _name_of(source: Source) -> str:
    return "<bytes>" if isinstance(source, (bytes, bytearray)) else str(source)


def read_all(
    source: Source, limit: int, name: str | None = None, bound: str = "the caller"
) -> bytearray:
    """The bytes of `source` (a path or bytes), decompressed when compressed, at most `limit`
    of them: `TooLargeError` as soon as the output passes `limit`, `ArchiveError` when the
    stream is damaged."""
    name = name or _name_of(source)
    with open_stream(source, name) as stream:
        return read_limited(stream, limit, name, bound)


def read_zip(
    source: Source,
    limit: int,
    select: Callable[[str], bool] = lambda member: True,
    name: str | None = None,
    member_limit: int | None = None,
    max_members: int = 10_000,
) -> dict[str, bytearray]:
    """The members of the zip file `source` (a path or the zip's bytes) for which
    `select(member_name)` is true, as member name -> bytes, with at most `limit` bytes in all
    and `member_limit` (default: `limit`) in any one.

    Each member's declared size is checked against its bound before it is read, and the
    bytes it actually produces are counted while it is read (a header can lie). Only stored
    and deflated members are read (what wheels use). Directories are skipped, and a zip of
    more than `max_members` entries is refused. Raises `TooLargeError` past a bound and
    `ArchiveError` for a damaged or unreadable archive.
    """
    name = name or _name_of(source)
    raw = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    members: dict[str, bytearray] = {}
    left = limit
    try:
        with zipfile.ZipFile(raw) as archive:
            infos = archive.infolist()
            if len(infos) > max_members:
                raise ArchiveError(f"{name}: {len(infos):,} entries, more than {max_members:,}")
            for info in infos:
                if info.is_dir() or not select(info.filename):
                    continue
                where = f"{name}:{info.filename}"
                if info.compress_type not in ZIP_METHODS:
                    methods = ", ".join(ZIP_METHODS.values())
                    raise ArchiveError(
                        f"{where}: compression method {info.compress_type}, expected {methods}"
                    )
                if info.flag_bits & 0x1:
                    raise ArchiveError(f"{where}: encrypted, expected a plain member")
                bound, most = f"what is left of the {limit:,} bytes allowed for the archive", left
                if member_limit is not None and member_limit < left:
                    bound, most = "the size allowed for one member", member_limit
                if info.file_size > most:
                    raise TooLargeError(where, most, bound, declared=info.file_size)
                with archive.open(info) as stream:
                    data = read_limited(stream, most, where, bound)
                left -= len(data)
                members[info.filename] = data
    except ArchiveError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, *DAMAGE) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise ArchiveError(f"{name}: not a readable zip ({error})") from error
    return members


def read_zip_member(
    path: str | os.PathLike, member: str, limit: int, name: str | None = None
) -> bytearray:
    """The one member `member` of the zip at `path`, at most `limit` bytes (see `read_zip`).
    Raises `KeyError` naming the member when the zip does not hold it."""
    found = read_zip(path, limit, select=lambda m: m == member, name=name)
    if member not in found:
        raise KeyError(f"{name or path} has no member {member}")
    return found[member]


def read_tar(
    source: Source,
    limit: int,
    select: Callable[[str], bool] = lambda member: True,
    name: str | None = None,
    max_members: int = 10_000,
    member_limit: int | None = None,
) -> dict[str, bytearray]:
    """The regular files of the tar archive `source` (a path or bytes; plain, gzip, bzip2
    or xz) for which `select(member_name)` is true, as member name -> bytes.

    `limit` bounds the whole decompressed archive, headers and skipped members included
    (tar's own long-name and pax headers are read whole, so they must be bounded too);
    `max_members` bounds the number of entries, each of which tarfile keeps a record of, and
    `member_limit` (default: `limit`) each selected member's declared size.
    Raises `TooLargeError` past either bound and `ArchiveError` for a damaged archive.
    """
    name = name or _name_of(source)
    members: dict[str, bytearray] = {}
    try:
        with (
            open_stream(source, name) as stream,
            tarfile.open(
                fileobj=LimitedReader(stream, limit, name, "the size allowed for the archive"),
                mode="r|",
            ) as archive,
        ):
            for count, info in enumerate(archive, start=1):
                if count > max_members:
                    raise ArchiveError(f"{name}: more than {max_members:,} entries")
                if not info.isfile() or not select(info.name):
                    continue
                where = f"{name}:{info.name}"
                most = limit if member_limit is None else min(limit, member_limit)
                if info.size > most:
                    bound = "the size allowed for " + (
                        "the archive" if most == limit else "one member"
                    )
                    raise TooLargeError(where, most, bound, declared=info.size)
                member = archive.extractfile(info)
                assert member is not None  # regular files always have one
                members[info.name] = read_limited(
                    member, info.size, where, "the size its tar header declares"
                )
    except ArchiveError:
        raise
    except (tarfile.TarError, *DAMAGE) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise ArchiveError(f"{name}: not a readable tar archive ({error})") from error
    return members
