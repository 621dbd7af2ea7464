"""The IDX file format of MNIST and its relatives: read (gz or raw), check, and write.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions),
one big-endian uint32 per dimension, then the values in C order, big-endian. The reader checks
every part of that and the file's length against the header, so a truncated or corrupted file
raises `IDXError` naming the file; it never yields an array. It knows nothing of MNIST.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
from pathlib import Path

import numpy as np

from rnnlab.data import archive

# type code -> big-endian dtype, from the format's definition (yann.lecun.com/exdb/mnist)
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class IDXError(ValueError):
    """A file or buffer that is not a well-formed IDX file."""


def parse_idx(data: bytes | bytearray, name: str = "<buffer>") -> np.ndarray:
    """The array held by the raw (uncompressed) IDX bytes `data`.

    **Arguments:** `data` the file's bytes; `name` the file, for error messages.

    **Returns:** an array of the header's shape with a native-endian dtype. It shares memory
    with `data` when no byte swap is needed, and is writable when `data` is a bytearray.
    """
    dtype, shape, header_size = parse_header(data, name)
    expected = header_size + math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "has trailing bytes"
        raise IDXError(
            f"{name}: {problem}: header says {dtype.name} of shape {shape} = {expected} bytes "
            f"in all, file has {len(data)}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def parse_header(
    data: bytes | bytearray, name: str = "<buffer>"
) -> tuple[np.dtype, tuple[int, ...], int]:
    """The (big-endian dtype, shape, header size in bytes) that the IDX header at the start
    of `data` declares; `data` may end right after the header. Raises `IDXError`."""
    if len(data) < 4:
        raise IDXError(f"{name}: {len(data)} bytes is too short for an IDX header (4 at least)")
    zero0, zero1, type_code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0:
        raise IDXError(
            f"{name}: bad magic number 0x{bytes(data[:4]).hex()}; an IDX file starts with "
            f"two zero bytes (is it compressed with something other than gzip?)"
        )
    if type_code not in IDX_DTYPES:
        known = ", ".join(f"0x{code:02x}" for code in IDX_DTYPES)
        raise IDXError(f"{name}: unknown type code 0x{type_code:02x}, expected one of {known}")
    if ndim == 0:
        raise IDXError(f"{name}: header declares 0 dimensions, expected at least 1")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise IDXError(
            f"{name}: truncated header: {ndim} dimensions need {header_size} bytes, "
            f"file has {len(data)}"
        )
    shape = struct.unpack(f">{ndim}I", bytes(data[4:header_size]))
    return IDX_DTYPES[type_code], shape, header_size


def read_idx_bytes(
    source: str | os.PathLike | bytes | bytearray,
    name: str | None = None,
    max_bytes: int | None = None,
) -> bytearray:
    """The raw IDX bytes of `source` (a path, or a file's bytes as downloaded), gunzipped in
    a stream when compressed (told apart by content, not name).

    Decompression stops as soon as the output passes the size the header declares, or
    before reading on when the header declares more than `max_bytes` (a size known from
    elsewhere, e.g. the release's), so a small gzip of gigabytes of zeros costs no memory.
    Raises `FileNotFoundError` for a missing path and `IDXError` naming the file otherwise.
    """
    name = name or str(source)
    try:
        with archive.open_stream(source, name) as stream:
            head = bytearray(stream.read(4))
            if len(head) == 4:
                head += stream.read(4 * head[3])
            dtype, shape, header_size = parse_header(head, name)
            size = header_size + math.prod(shape) * dtype.itemsize
            if max_bytes is not None and size > max_bytes:
                raise IDXError(
                    f"{name}: header declares {dtype.name} of shape {shape} = {size:,} bytes, "
                    f"more than the {max_bytes:,} expected; not read"
                )
            try:
                body = archive.read_limited(stream, size - len(head), name)
            except archive.TooLargeError:
                raise IDXError(
                    f"{name}: has trailing bytes: header says {dtype.name} of shape {shape} = "
                    f"{size:,} bytes in all, the data goes on past that; stopped reading there"
                ) from None
    except archive.ArchiveError as error:
        raise IDXError(str(error)) from error
    return head + body


def read_idx(path: str | os.PathLike, max_bytes: int | None = None) -> np.ndarray:
    """The array in the IDX file at `path`, gzipped or raw (told apart by content, not name),
    read in a stream that stops at the size its header declares; a header declaring more
    than `max_bytes` is refused before reading on.

    Raises `FileNotFoundError` when there is no such file and `IDXError` when it is damaged.
    """
    path = Path(path)
    return parse_idx(read_idx_bytes(path, str(path), max_bytes), str(path))


def encode_idx(array: np.ndarray) -> bytes:
    """The raw IDX bytes of `array` (its dtype must be one the format has, e.g. uint8)."""
    array = np.asarray(array)
    codes = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None:
        names = ", ".join(dtype.name for dtype in IDX_DTYPES.values())
        raise ValueError(f"IDX cannot hold dtype {array.dtype}, expected one of {names}")
    if array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"IDX holds 1 to 255 dimensions, got an array of {array.ndim}")
    header = struct.pack(f">BBBB{array.ndim}I", 0, 0, code, array.ndim, *array.shape)
    return header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool = False) -> Path:
    """Write `array` as an IDX file at `path`, gzipped when `compress`; returns the path."""
    data = encode_idx(array)
    if compress:
        data = gzip.compress(data, mtime=0)
    path = Path(path)
    path.write_bytes(data)
    return path
