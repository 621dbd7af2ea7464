"""Downloads, without the network: file:// URLs, a refused connection, and a stand-in for pip."""

from __future__ import annotations

import hashlib
import subprocess
import urllib.error
import urllib.request

import pytest

from rnnlab.data.download import (
    ChecksumError,
    FetchError,
    OversizeError,
    download,
    pip_download,
)

pytestmark = pytest.mark.usefixtures("no_network")


def test_download_returns_the_bytes_when_the_checksums_match(tmp_path):
    (tmp_path / "f.gz").write_bytes(b"payload")
    md5 = hashlib.md5(b"payload").hexdigest()
    sha256 = hashlib.sha256(b"payload").hexdigest()
    url = (tmp_path / "f.gz").as_uri()
    assert download(url, md5=md5, sha256=sha256, progress=False) == b"payload"


def test_download_of_other_bytes_raises_a_checksum_error_naming_url_and_both_digests(tmp_path):
    (tmp_path / "f.gz").write_bytes(b"tampered")
    url = (tmp_path / "f.gz").as_uri()
    expected = hashlib.md5(b"payload").hexdigest()
    actual = hashlib.md5(b"tampered").hexdigest()
    with pytest.raises(ChecksumError, match=f"f.gz: md5 {actual}, expected {expected}"):
        download(url, md5=expected, progress=False)


def test_download_of_a_missing_file_is_a_fetch_error(tmp_path):
    with pytest.raises(FetchError, match=r"nothing\.gz"):
        download((tmp_path / "nothing.gz").as_uri(), progress=False)


def test_download_stops_reading_once_a_body_passes_max_bytes(monkeypatch):
    class Endless:  # a server that streams without announcing a length
        reads = 0

        def __init__(self):
            self.headers = {}

        def read(self, size):
            Endless.reads += 1
            return b"x" * size

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Endless())
    with pytest.raises(OversizeError, match=r"f\.txt: sent more than 10 bytes"):
        download("https://mirror.example/f.txt", progress=False, max_bytes=10)
    assert Endless.reads == 1


def test_download_refuses_a_body_announced_larger_than_max_bytes(tmp_path):
    (tmp_path / "f.txt").write_bytes(b"x" * 11)
    with pytest.raises(OversizeError, match="announces 11 bytes, more than 10"):
        download((tmp_path / "f.txt").as_uri(), progress=False, max_bytes=10)


def test_download_gives_up_after_its_short_timeout_with_the_reason(monkeypatch):
    seen = {}

    def unreachable(url, timeout):
        seen["timeout"] = timeout
        raise urllib.error.URLError(TimeoutError("timed out"))

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    with pytest.raises(FetchError) as raised:
        download("https://mirror.example/f.gz", progress=False)
    assert raised.value.reason == "timed out"
    assert seen["timeout"] <= 10


def test_pip_download_asks_for_one_wheel_and_never_installs_or_builds(tmp_path, monkeypatch):
    calls = []

    def fake_run(command, **kwargs):
        calls.append(command)
        (tmp_path / "tiny_hub-1.0-py3-none-any.whl").write_bytes(b"PK")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    wheel = pip_download("tiny-hub==1.0", tmp_path, progress=False)
    assert wheel == tmp_path / "tiny_hub-1.0-py3-none-any.whl"
    (command,) = calls
    assert command[1:4] == ["-m", "pip", "download"]
    assert "install" not in command
    assert {"--no-deps", "--only-binary=:all:", "tiny-hub==1.0"} <= set(command)


def test_pip_download_failure_carries_pips_last_message(tmp_path, monkeypatch):
    def fake_run(command, **kwargs):
        stderr = "WARNING: retrying\nERROR: No matching distribution found for tiny-hub==1.0\n"
        return subprocess.CompletedProcess(command, 1, "", stderr)

    monkeypatch.setattr(subprocess, "run", fake_run)
    with pytest.raises(FetchError, match="exit status 1: ERROR: No matching distribution found"):
        pip_download("tiny-hub==1.0", tmp_path, progress=False)
