"""A user's UTF-8 text file read in bounded memory: checked, then streamed as normalised chunks.

`check_text_path` refuses what is not a regular file before anything is read, each with its
own line (missing, a folder, a symlink loop, a FIFO or a device such as /dev/zero), and a file
over the size bound. `text_chunks` streams the file through `archive`'s bounded reader as text
in chunks: UTF-8 decoded incrementally (a bad byte is named by line and column), a leading
byte-order mark dropped, '\\r\\n' and '\\r' made '\\n', and Unicode NFC, so the characters are
the same whichever system saved the file and however it cut them into chunks. `scan_text`
makes one pass for what an encoder needs first: the character count, the characters, the
sha256. Nothing here knows tokens or vocabularies.
"""

from __future__ import annotations

import codecs
import errno
import hashlib
import os
import stat
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rnnlab.data import archive
from rnnlab.data.text import nfc

CHUNK = 1 << 16  # bytes read at a time: the temporaries of a chunk stay near a megabyte
MIN_TEXT_CHARS = 200  # the smallest user text: validation and test then get 10 characters
MAX_TEXT_BYTES = 256 << 20  # the largest user text file


def check_text_path(path: str | os.PathLike, max_bytes: int = MAX_TEXT_BYTES) -> Path:
    """`path` when it is a regular file of at most `max_bytes` bytes (symlinks followed).
    Raises `FileNotFoundError` (missing, a folder, a dangling symlink) or `ValueError` (a
    symlink loop, a FIFO, a device, too large), one line naming the file."""
    path = Path(path)
    expected = "expected a UTF-8 text file"
    try:
        info = path.stat()
    except FileNotFoundError:
        what = "a symlink to nothing" if path.is_symlink() else "missing"
        raise FileNotFoundError(f"text file {path} is {what}; {expected}") from None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise ValueError(
                f"text file {path}: cannot resolve a symlink loop; {expected}"
            ) from None
        raise
    if stat.S_ISDIR(info.st_mode):
        raise FileNotFoundError(f"text file {path} is a folder; {expected}")
    if not stat.S_ISREG(info.st_mode):
        kind = {
            stat.S_IFIFO: "a FIFO (named pipe)",
            stat.S_IFCHR: "a character device",
            stat.S_IFBLK: "a block device",
            stat.S_IFSOCK: "a socket",
        }.get(stat.S_IFMT(info.st_mode), "not a regular file")
        raise ValueError(f"text file {path} is {kind}, not a regular file; {expected}")
    if info.st_size > max_bytes:
        raise ValueError(
            f"{path}: {info.st_size:,} bytes, more than the {max_bytes:,} a text may have"
        )
    return path


def text_chunks(
    path: str | os.PathLike, max_bytes: int = MAX_TEXT_BYTES, digest=None
) -> Iterator[str]:
    """The text of the UTF-8 file `path` in chunks (see the module's docstring); `digest`, a
    hashlib object, is fed every byte read. Raises as `check_text_path` does, and
    `ValueError` "PATH:LINE: not UTF-8 text (... at byte B, column C)"."""
    path = check_text_path(path, max_bytes)
    decoder = codecs.getincrementaldecoder("utf-8")()
    held = ""  # the tail of the last chunk that the next may change: "\r", a base + its marks
    newlines, line_start, offset = 0, 0, 0  # in the bytes before the current chunk
    with path.open("rb") as f:
        reader = archive.LimitedReader(f, max_bytes, str(path), "the size a text may have")
        while True:
            data = reader.read(CHUNK)
            final = not data
            if digest is not None:
                digest.update(data)
            pending = decoder.getstate()[0]  # bytes of a character cut by the last chunk
            try:
                text = decoder.decode(data, final)
            except UnicodeDecodeError as error:
                raise _not_utf8(
                    path, pending + data, error, offset - len(pending), newlines, line_start
                ) from None
            if offset == 0:
                text = text.removeprefix("\ufeff")
            text = (held + text).replace("\r\n", "\n")
            held = "" if final else _unsettled_tail(text)
            text = text[: len(text) - len(held)].replace("\r", "\n")
            newlines += data.count(b"\n")
            if (last := data.rfind(b"\n")) >= 0:
                line_start = offset + last + 1
            offset += len(data)
            if text:
                yield nfc(text)
            if final:
                return


def _unsettled_tail(text: str) -> str:
    """The end of `text` from its last character of combining class 0: what a mark or a '\\n'
    in the next chunk could still compose with ("e" + U+0301) or join ("\\r" + "\\n")."""
    i = len(text) - 1
    while i > 0 and unicodedata.combining(text[i]):
        i -= 1
    return text[max(i, 0) :]


def _not_utf8(
    path: Path, data: bytes, error: UnicodeDecodeError, start: int, newlines: int, line_start: int
) -> ValueError:
    at = start + error.start  # in the file
    before = data[: error.start]
    line = newlines + before.count(b"\n") + 1
    if (last := before.rfind(b"\n")) >= 0:
        line_start = start + last + 1
    return ValueError(
        f"{path}:{line}: not UTF-8 text ({error.reason} at byte {at}, column "
        f"{at - line_start + 1}); expected a UTF-8 text file"
    )


@dataclass(frozen=True)
class TextScan:
    """One pass over a text file: what an encoder needs before its second pass."""

    path: Path
    characters: int  # after normalisation
    symbols: frozenset[str]  # the distinct characters
    sha256: str  # of the file's bytes


def scan_text(path: str | os.PathLike, max_bytes: int = MAX_TEXT_BYTES) -> TextScan:
    """Count the characters of the text file `path` and collect them, in one streamed pass.
    Raises `ValueError` for an empty text or one shorter than `MIN_TEXT_CHARS`."""
    digest = hashlib.sha256()
    count, symbols = 0, set()
    for chunk in text_chunks(path, max_bytes, digest):
        count += len(chunk)
        symbols.update(chunk)
    if not count:
        raise ValueError(
            f"{path}: empty; expected a UTF-8 text of {MIN_TEXT_CHARS} characters or more"
        )
    if count < MIN_TEXT_CHARS:
        raise ValueError(
            f"{path}: {count} characters is too short; a language model needs "
            f"{MIN_TEXT_CHARS} at least (validation and test get 5% each)"
        )
    return TextScan(Path(path), count, frozenset(symbols), digest.hexdigest())
