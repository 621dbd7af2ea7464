"""Bounded decompression: gzip bombs, lying zip members and tar tricks are refused after
reading at most their bound, with memory that stays flat; honest archives read back whole."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import re
import struct
import tarfile
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from rnnlab.data import DatasetUnavailableError, load_mnist
from rnnlab.data.archive import (
    ArchiveError,
    LimitedReader,
    TooLargeError,
    read_all,
    read_limited,
    read_tar,
    read_zip,
    read_zip_member,
)
from rnnlab.data.idx import IDXError, encode_idx, read_idx

pytestmark = pytest.mark.usefixtures("no_network")

MB = 1 << 20
BOMB_BYTES = 32 * MB  # what each bomb expands to: far above every bound below


def write_gzip_bomb(path: Path, head: bytes = b"", zeros: int = BOMB_BYTES) -> Path:
    """A gzip file of `head` then `zeros` zero bytes, written a megabyte at a time (about
    32 KB on disk for 32 MB of zeros)."""
    with gzip.open(path, "wb") as f:
        f.write(head)
        for _ in range(zeros // MB):
            f.write(bytes(MB))
    return path


def peak_bytes(function, *args, **kwargs) -> tuple[BaseException | None, int]:
    """Run `function`, returning (the exception it raised or None, the peak of memory that
    Python allocated meanwhile, decompressor buffers included)."""
    tracemalloc.start()
    try:
        function(*args, **kwargs)
    except Exception as error:  # the caller checks which
        raised = error
    else:
        raised = None
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return raised, peak


# --- gzip and the limited reader ------------------------------------------------------------


def test_a_gzip_bomb_is_refused_at_its_bound_with_flat_memory(tmp_path):
    bomb = write_gzip_bomb(tmp_path / "bomb.gz")
    raised, peak = peak_bytes(read_all, bomb, MB, bound="the known size of the file")
    assert isinstance(raised, TooLargeError) and isinstance(raised, ValueError)
    assert str(raised) == (
        f"{bomb}: expands past 1,048,576 bytes, the limit set by the known size of the file; "
        f"stopped reading there"
    )
    assert peak < 4 * MB, f"peak {peak:,} bytes while refusing a {BOMB_BYTES:,}-byte bomb"


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress, lzma.compress])
def test_read_all_gives_back_exactly_the_limit_and_refuses_one_byte_more(compress):
    data = bytes(range(256)) * 40
    assert read_all(compress(data), len(data)) == data
    with pytest.raises(TooLargeError, match="expands past 10,239 bytes"):
        read_all(compress(data), len(data) - 1)


def test_read_all_passes_uncompressed_bytes_through_with_the_same_bound(tmp_path):
    path = tmp_path / "plain.txt"
    path.write_bytes(b"x" * 100)
    assert read_all(path, 100) == b"x" * 100
    with pytest.raises(TooLargeError, match=re.escape(f"{path}: expands past 99 bytes")):
        read_all(path, 99)


def test_a_damaged_gzip_stream_is_an_archive_error_naming_the_file(tmp_path):
    data = bytearray(gzip.compress(bytes(range(256)) * 40))
    data[len(data) // 2] ^= 0xFF
    path = tmp_path / "flipped.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match=re.escape(f"{path}: damaged gzip stream")):
        read_all(path, 1 << 20)


def test_the_limited_reader_never_asks_for_more_than_one_byte_past_its_limit():
    asked = []

    class Recording(io.BytesIO):
        def read(self, size=-1):
            asked.append(size)
            return super().read(size)

    reader = LimitedReader(Recording(bytes(1000)), 10, "f", "a test")
    assert reader.read(4) == bytes(4)
    with pytest.raises(TooLargeError):
        reader.read()
    assert asked == [4, 7]
    assert read_limited(io.BytesIO(b"abc"), 3, "f") == b"abc"


# --- IDX files and MNIST from a data folder -------------------------------------------------


def test_an_idx_gzip_bomb_behind_a_valid_header_stops_at_the_header_size(tmp_path):
    header = bytes([0, 0, 0x08, 1]) + struct.pack(">I", 10)  # uint8 labels, 10 of them
    bomb = write_gzip_bomb(tmp_path / "t10k-labels-idx1-ubyte.gz", head=header + bytes(10))
    raised, peak = peak_bytes(read_idx, bomb)
    assert isinstance(raised, IDXError)
    assert str(raised).startswith(
        f"{bomb}: has trailing bytes: header says uint8 of shape (10,) = 18 bytes in all"
    )
    assert peak < 4 * MB, f"peak {peak:,} bytes"


def test_an_idx_header_declaring_more_than_the_known_size_is_refused_before_reading(tmp_path):
    header = bytes([0, 0, 0x08, 1]) + struct.pack(">I", BOMB_BYTES)  # an honest giant
    bomb = write_gzip_bomb(tmp_path / "labels.gz", head=header)
    raised, peak = peak_bytes(read_idx, bomb, max_bytes=10_008)
    assert isinstance(raised, IDXError)
    assert str(raised) == (
        f"{bomb}: header declares uint8 of shape ({BOMB_BYTES},) = 33,554,440 bytes, more than "
        f"the 10,008 expected; not read"
    )
    assert peak < 1 * MB


def test_a_data_dir_holding_a_gzip_bomb_is_refused_with_flat_memory(
    tiny_release, tmp_path, cache_root, monkeypatch
):
    """The reported case: a small t10k-labels .gz holding far more than 10,000 labels."""
    from rnnlab.data import mnist

    monkeypatch.setitem(mnist.SPECS, "mnist", tiny_release.spec)
    folder = tiny_release.write(tmp_path / "idx")
    labels = "t10k-labels-idx1-ubyte"
    (folder / labels).unlink()
    bomb = write_gzip_bomb(folder / f"{labels}.gz", head=encode_idx(tiny_release.arrays[labels]))
    raised, peak = peak_bytes(load_mnist, "mnist", data_dir=folder)
    assert isinstance(raised, DatasetUnavailableError)
    assert f"{bomb}: has trailing bytes: header says uint8 of shape (10,) = 18 bytes" in str(raised)
    assert peak < 8 * MB, f"peak {peak:,} bytes"
    assert not cache_root.exists()


def test_an_idx_file_at_exactly_its_header_size_reads_back_from_gzip(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "a.gz"
    path.write_bytes(gzip.compress(encode_idx(array)))
    np.testing.assert_array_equal(read_idx(path, max_bytes=len(encode_idx(array))), array)


# --- zip ------------------------------------------------------------------------------------


def make_zip(path: Path, members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_read_zip_reads_the_selected_members_within_the_budget(tmp_path):
    path = make_zip(tmp_path / "w.whl", {"a/x.md": b"x" * 50, "a/y.md": b"y" * 50, "b.py": b""})
    members = read_zip(path, 100, select=lambda m: m.startswith("a/"))
    assert members == {"a/x.md": b"x" * 50, "a/y.md": b"y" * 50}
    assert read_zip_member(path, "a/y.md", 50) == b"y" * 50
    with pytest.raises(KeyError, match=r"has no member a/z\.md"):
        read_zip_member(path, "a/z.md", 50)


def test_zip_members_past_the_budget_are_refused_by_their_declared_size(tmp_path):
    path = make_zip(tmp_path / "w.whl", {"a": b"x" * 60, "b": b"y" * 60})
    with pytest.raises(
        TooLargeError, match=re.escape(f"{path}:b: declares 60 bytes, more than 40")
    ):
        read_zip(path, 100)


def test_a_zip_member_that_hides_more_bytes_than_it_declares_is_refused(tmp_path):
    """A bomb that lies: the headers say 100 bytes, the deflate stream holds 32 MB."""
    path = make_zip(tmp_path / "liar.zip", {"m": bytes(BOMB_BYTES)})
    data = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # local, central
        at = data.find(signature)
        data[at + offset : at + offset + 4] = struct.pack("<I", 100)  # uncompressed size
    path.write_bytes(bytes(data))
    raised, peak = peak_bytes(read_zip, path, 10 * MB)
    assert isinstance(raised, ArchiveError) and str(raised).startswith(f"{path}")
    assert peak < 4 * MB, f"peak {peak:,} bytes"


def test_zip_members_compressed_with_other_methods_are_refused(tmp_path):
    path = make_zip(tmp_path / "b.zip", {"m": b"x" * 10}, method=zipfile.ZIP_BZIP2)
    with pytest.raises(ArchiveError, match=r"compression method 12, expected stored, deflated"):
        read_zip(path, 100)


def test_a_file_that_is_not_a_zip_is_an_archive_error(tmp_path):
    path = tmp_path / "not.whl"
    path.write_bytes(b"not a zip at all")
    with pytest.raises(ArchiveError, match=re.escape(f"{path}: not a readable zip")):
        read_zip(path, 100)


# --- tar ------------------------------------------------------------------------------------


def make_tar(members: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_read_tar_reads_the_selected_files_plain_or_compressed(mode):
    data = make_tar({"p/ca01": b"The/at", "p/cats.txt": b"ca01 news", "q": b"?"}, mode)
    assert read_tar(data, 1 * MB, select=lambda m: m.startswith("p/")) == {
        "p/ca01": b"The/at",
        "p/cats.txt": b"ca01 news",
    }


def test_a_tar_that_expands_past_its_bound_is_refused_with_flat_memory(tmp_path):
    path = tmp_path / "big.tgz"
    path.write_bytes(make_tar({"zeros": bytes(BOMB_BYTES)}))
    raised, peak = peak_bytes(read_tar, path, 2 * MB)
    assert isinstance(raised, TooLargeError) and str(raised).startswith(f"{path}")
    assert peak < 6 * MB, f"peak {peak:,} bytes"


def test_a_tar_long_name_header_cannot_allocate_past_the_bound():
    """tarfile reads a GNU long-name header whole: a 32 MB 'name' must hit the bound first."""
    info = tarfile.TarInfo("././@LongLink")
    info.type = tarfile.GNUTYPE_LONGNAME
    info.size = BOMB_BYTES
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb") as f:
        f.write(info.tobuf(format=tarfile.GNU_FORMAT))
        for _ in range(BOMB_BYTES // MB):
            f.write(b"a" * MB)
    raised, peak = peak_bytes(read_tar, buffer.getvalue(), 1 * MB)
    assert isinstance(raised, TooLargeError)
    assert peak < 4 * MB, f"peak {peak:,} bytes"


def test_a_tar_of_too_many_entries_is_refused():
    data = make_tar({f"f{i}": b"" for i in range(30)})
    with pytest.raises(ArchiveError, match="more than 20 entries"):
        read_tar(data, 1 * MB, max_members=20)


def test_a_damaged_tar_is_an_archive_error():
    data = bytearray(make_tar({"a": b"x" * 1000}, mode="w"))
    data[148:156] = b"garbage!"  # the header checksum field
    with pytest.raises(ArchiveError, match=r"<bytes>: not a readable tar archive"):
        read_tar(bytes(data), 1 * MB)
