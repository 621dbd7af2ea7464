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
import zlib
from pathlib import Path

import numpy as np

# type code -> big-endian dtype, from the format's definition (yann.lecun.com/exdb/mnist)
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"


class IDXError(ValueError):
    """A file or buffer that is not a well-formed IDX file."""


def decompress_if_gzip(data: bytes, name: str) -> bytes:
    """`data` gunzipped when it starts with the gzip magic bytes, else `data` itself.

    A damaged gzip stream (truncated, bad CRC, bad length) raises `IDXError` naming `name`.
    """
    if not data.startswith(GZIP_MAGIC):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as error:
        raise IDXError(f"{name}: damaged gzip stream ({error})") from error


def parse_idx(data: bytes | bytearray, name: str = "<buffer>") -> np.ndarray:
    """The array held by the raw (uncompressed) IDX bytes `data`.

    **Arguments:** `data` the file's bytes; `name` the file, for error messages.

    **Returns:** an array of the header's shape with a native-endian dtype. It shares memory
    with `data` when no byte swap is needed, and is writable when `data` is a bytearray.
    """
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
    dtype = IDX_DTYPES[type_code]
    expected = header_size + math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "has trailing bytes"
        raise IDXError(
            f"{name}: {problem}: header says {dtype.name} of shape {shape} = {expected} bytes "
            f"in all, file has {len(data)}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """The array in the IDX file at `path`, gzipped or raw (told apart by content, not name).

    Raises `FileNotFoundError` when there is no such file and `IDXError` when it is damaged.
    """
    path = Path(path)
    data = decompress_if_gzip(path.read_bytes(), str(path))
    return parse_idx(bytearray(data), str(path))


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
