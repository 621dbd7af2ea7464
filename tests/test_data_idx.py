"""The IDX reader: round trips, gz or raw, and every kind of damage raising IDXError."""

from __future__ import annotations

import gzip
import re
import struct

import numpy as np
import pytest

from rnnlab.data.idx import IDXError, encode_idx, parse_idx, read_idx, write_idx


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_read_idx_round_trips_every_idx_dtype_raw_and_gz(tmp_path, dtype, compress):
    array = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    path = write_idx(tmp_path / "a-idx3", array, compress=compress)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    np.testing.assert_array_equal(back, array)


def test_idx_stores_values_big_endian_as_the_format_says():
    data = encode_idx(np.array([1, 256], dtype=np.int32))
    assert data == bytes([0, 0, 0x0C, 1]) + struct.pack(">I", 2) + struct.pack(">ii", 1, 256)


def test_read_idx_tells_gzip_from_raw_by_content_not_name(tmp_path):
    array = np.arange(6, dtype=np.uint8).reshape(2, 3)
    (tmp_path / "raw.gz").write_bytes(encode_idx(array))
    (tmp_path / "packed").write_bytes(gzip.compress(encode_idx(array)))
    np.testing.assert_array_equal(read_idx(tmp_path / "raw.gz"), array)
    np.testing.assert_array_equal(read_idx(tmp_path / "packed"), array)


def test_read_idx_gives_a_writable_array(tmp_path):
    path = write_idx(tmp_path / "a", np.zeros((2, 2), dtype=np.uint8))
    assert read_idx(path).flags.writeable


def test_read_idx_of_a_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nothing-here")


def _header(type_code: int, *shape: int) -> bytes:
    return bytes([0, 0, type_code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00\x00", "too short for an IDX header"),
        (b"\x1f\x00\x08\x01" + b"\x00" * 8, "bad magic number 0x1f000801"),
        (bytes([0, 0, 7, 1]) + struct.pack(">I", 2) + b"ab", "unknown type code 0x07"),
        (bytes([0, 0, 8, 0]), "0 dimensions"),
        (_header(0x08, 2, 3)[:10], "truncated header: 2 dimensions need 12 bytes, file has 10"),
        (_header(0x08, 2, 3) + b"\x00" * 5, "truncated: header says uint8 of shape (2, 3)"),
        (_header(0x0C, 2) + b"\x00" * 7, "truncated: header says int32 of shape (2,) = 16 bytes"),
        (_header(0x08, 2, 3) + b"\x00" * 7, "has trailing bytes: header says uint8 of shape"),
    ],
    ids=[
        "short",
        "magic",
        "type-code",
        "no-dims",
        "short-header",
        "short-data",
        "short-int32-data",
        "trailing",
    ],
)
def test_read_idx_names_the_file_and_the_fault(tmp_path, data, message):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(data)
    with pytest.raises(IDXError, match=re.escape(message)) as raised:
        read_idx(path)
    assert str(path) in str(raised.value)


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
def test_no_truncation_of_an_idx_file_ever_yields_an_array(tmp_path, compress):
    data = encode_idx(np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5))
    if compress:
        data = gzip.compress(data)
    path = tmp_path / "cut"
    for length in range(len(data)):
        path.write_bytes(data[:length])
        with pytest.raises(IDXError, match=str(path)):
            read_idx(path)


def test_a_gzip_file_with_a_flipped_byte_is_refused(tmp_path):
    data = bytearray(gzip.compress(encode_idx(np.arange(1000, dtype=np.uint8) % 7)))
    data[len(data) // 2] ^= 0xFF
    path = tmp_path / "flipped.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(IDXError, match="damaged gzip stream"):
        read_idx(path)


def test_parse_idx_names_the_buffer_it_was_given():
    with pytest.raises(IDXError, match=r"^mirror x/t10k: bad magic"):
        parse_idx(b"PK\x03\x04", "mirror x/t10k")


def test_encode_idx_refuses_dtypes_the_format_lacks():
    with pytest.raises(ValueError, match="IDX cannot hold dtype int64, expected one of uint8"):
        encode_idx(np.zeros(3, dtype=np.int64))
