"""The cache: where it lives, atomic writes, and every read checked against the manifest."""

from __future__ import annotations

import json
import os

import pytest

from rnnlab.data import cache
from rnnlab.data.cache import CacheError

FILES = {"a.bin": b"alpha" * 100, "b.bin": b"beta"}


def test_the_cache_lives_in_rnnlab_data_when_set(monkeypatch, tmp_path):
    monkeypatch.setenv("RNNLAB_DATA", str(tmp_path / "here"))
    assert cache.default_root() == tmp_path / "here"
    assert cache.entry_path(None, "mnist") == tmp_path / "here" / "mnist"


def test_the_cache_falls_back_to_home_cache_rnnlab(monkeypatch, tmp_path):
    monkeypatch.delenv("RNNLAB_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache.default_root() == tmp_path / ".cache" / "rnnlab"


def test_store_then_load_gives_back_the_files_and_the_info(tmp_path):
    path = cache.store(tmp_path, "set", FILES, {"source": "somewhere"})
    entry = cache.load(tmp_path, "set")
    assert entry.path == path == tmp_path / "set"
    assert {name: bytes(data) for name, data in entry.files.items()} == FILES
    assert entry.manifest["source"] == "somewhere"
    assert entry.manifest["files"]["b.bin"] == {"bytes": 4, "sha256": cache.sha256_of(b"beta")}


def test_loading_an_absent_entry_gives_none(tmp_path):
    assert cache.load(tmp_path, "set") is None
    assert cache.load(tmp_path / "no-such-root", "set") is None


def _damage(path, how):
    if how == "flipped-byte":
        data = bytearray(path.read_bytes())
        data[7] ^= 1
        path.write_bytes(bytes(data))
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[:-1])
    elif how == "missing":
        path.unlink()


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("flipped-byte", r"a\.bin: sha256 [0-9a-f]{64} does not match the manifest's"),
        ("truncated", r"a\.bin: 499 bytes, the manifest says 500"),
        ("missing", r"a\.bin: listed in the manifest but missing"),
    ],
)
def test_a_damaged_file_is_detected_and_named(tmp_path, how, message):
    cache.store(tmp_path, "set", FILES, {})
    _damage(tmp_path / "set" / "a.bin", how)
    with pytest.raises(CacheError, match=message):
        cache.load(tmp_path, "set")


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ("{not json", "unreadable manifest"),
        (json.dumps({"format": 999, "files": {}}), "manifest format 999, expected 1"),
        (json.dumps([1, 2]), "manifest format 'list', expected 1"),
        (json.dumps({"format": 1, "files": {"a.bin": {"bytes": "5"}}}), "'files' must map"),
        (json.dumps({"format": 1, "files": {"../x": {"bytes": 1, "sha256": ""}}}), "plain file"),
    ],
    ids=["not-json", "future-format", "not-a-dict", "bad-record", "path-escape"],
)
def test_a_bad_manifest_is_detected(tmp_path, manifest, message):
    cache.store(tmp_path, "set", FILES, {})
    (tmp_path / "set" / cache.MANIFEST).write_text(manifest)
    with pytest.raises(CacheError, match=message):
        cache.load(tmp_path, "set")


def test_files_without_a_manifest_are_an_incomplete_entry_not_an_absent_one(tmp_path):
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "a.bin").write_bytes(b"x")
    with pytest.raises(CacheError, match=r"incomplete entry, files but no manifest\.json"):
        cache.load(tmp_path, "set")


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "f"
    cache.atomic_write(path, b"old")

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        cache.atomic_write(path, b"new")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_cached_files_are_readable_by_others_sharing_the_cache(tmp_path):
    cache.store(tmp_path, "set", FILES, {})
    if os.name == "posix":
        assert (tmp_path / "set" / "a.bin").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("name", ["", "..", "a/b", "manifest.json"])
def test_store_refuses_names_that_are_not_plain_file_names(tmp_path, name):
    with pytest.raises(ValueError, match="must be a plain file name"):
        cache.store(tmp_path, "set", {name: b"x"}, {})
