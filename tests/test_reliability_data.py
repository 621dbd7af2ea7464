"""The data layer's bounds and its one-place facts (issue 22 A): a zip member that lies about
its size is refused in a few megabytes by the one bounded reader; every data set's sources go
through one loop and one `SourceError`; one tokenizer and one `Vocabulary` for lm, langid and
postag, NFC included, with the vocabularies of runs saved before still read; `--tagset brown`
with a tag only validation holds; a text file read in bounded memory, and a FIFO, /dev/zero
or a symlink loop each refused in its own line."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap
import zipfile
import zlib
from pathlib import Path

import pytest
import torch

from conftest import brown_folder
from fake_text import tiny_corpus
from rnnlab.cli import main
from rnnlab.data import (
    DatasetUnavailableError,
    Vocabulary,
    archive,
    brown,
    corpus,
    lm_text,
    mnist,
    sources,
    text_file,
    wordlists,
)
from rnnlab.data.text import tokenize
from rnnlab.data.wordlists import split_indices
from rnnlab.experiments import langid, postag
from test_data_archive import peak_bytes

pytestmark = pytest.mark.usefixtures("no_network")
MB = 1 << 20
QUIET = ["--no-progress", "--no-plots"]
TINY_POSTAG = ["--hidden", "8", "--embedding", "6", "--batch-size", "8"]


def lying_zip(path: Path, member: str, real: int, claimed: int, crc_of_claimed: bool) -> Path:
    """A zip whose `member` inflates to `real` zero bytes while both its headers claim
    `claimed`; with `crc_of_claimed` the CRC is that of the first `claimed` bytes, so the
    lie is not caught by the CRC either."""
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive_file,
        archive_file.open(member, "w") as f,
    ):
        for _ in range(real // MB):
            f.write(bytes(MB))
    data = bytearray(path.read_bytes())
    for signature, size_at, crc_at in ((b"PK\x01\x02", 24, 16), (b"PK\x03\x04", 22, 14)):
        at = data.index(signature)
        struct.pack_into("<I", data, at + size_at, claimed)
        if crc_of_claimed:
            struct.pack_into("<I", data, at + crc_at, zlib.crc32(bytes(claimed)))
    path.write_bytes(data)
    return path


# --- 1. one bounded reader: lying zip members -----------------------------------------------


@pytest.mark.parametrize("crc_of_claimed", [False, True], ids=["crc-of-all", "crc-of-claimed"])
def test_a_lying_member_of_brown_zip_is_refused_in_a_few_megabytes(tmp_path, crc_of_claimed):
    folder = tmp_path / "d"
    folder.mkdir()
    lying_zip(folder / "brown.zip", "brown/ca01", 64 * MB, 1000, crc_of_claimed)
    raised, peak = peak_bytes(brown.load_brown, folder, tmp_path / "cache")
    assert isinstance(raised, DatasetUnavailableError), raised
    assert peak < 3 * MB, f"peak {peak:,} bytes refusing a 64 MB member that claims 1,000"


def test_a_lying_member_of_a_wordfreq_wheel_is_refused_in_a_few_megabytes(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    spec = wordlists.WORDFREQ
    member = f"{spec.member_dir}/{spec.file_name('en')}"
    lying_zip(folder / "wordfreq-3.1.1-py3-none-any.whl", member, 64 * MB, 1000, False)
    raised, peak = peak_bytes(wordlists.read_list_dir, spec, folder)
    assert isinstance(raised, sources.SourceError), raised
    assert peak < 3 * MB, f"peak {peak:,} bytes refusing a 64 MB member that claims 1,000"


def test_a_lying_brown_zip_is_one_short_line_and_exit_2_through_the_cli(tmp_path, corpus, capsys):
    folder = tmp_path / "liar"
    folder.mkdir()
    lying_zip(folder / "brown.zip", "brown/ca01", 8 * MB, 1000, crc_of_claimed=True)
    assert main(["postag", "--dry-run", "--data-dir", str(folder), *QUIET]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err) < 400, err
    assert "\\x00\\x00\\x00\\x00\\x00\\x00" not in err and "\x00" not in err


def test_every_decompressing_route_reads_through_archive():
    # the bounded readers other modules once had are gone; archive's errors are sources'
    assert not hasattr(brown, "_BoundedReader") and not hasattr(wordlists, "gunzip")
    assert issubclass(archive.ArchiveError, sources.SourceError)
    assert issubclass(archive.ArchiveError, ValueError)


# --- 2. one sources loop, one SourceError ---------------------------------------------------


def test_one_source_error_for_every_data_set():
    assert mnist.SourceError is corpus.SourceError is brown.SourceError is sources.SourceError
    assert wordlists.SourceError is sources.SourceError


def test_the_sources_loop_tries_local_then_cache_then_fetches_and_names_them_all(tmp_path):
    calls = []

    def failing(label):
        def fetch():
            calls.append(label)
            raise sources.SourceError(f"{label} is down")

        return fetch

    def cached():
        calls.append("cache")

    where = {"root": tmp_path, "name": "things", "refetch": False}
    with pytest.raises(DatasetUnavailableError) as raised:
        sources.first_source(
            "Things",
            [("mirror", failing("mirror"))],
            cached=cached,
            **where,
            before=[("local", failing("local"))],
            fix="pass --data-dir",
        )
    assert calls == ["local", "cache", "mirror"]
    assert str(raised.value) == (
        f"could not load Things; tried, in order:\n  - local: local is down\n"
        f"  - cache {tmp_path / 'things'}: empty\n  - mirror: mirror is down\n"
        f"To fix: pass --data-dir"
    )
    assert sources.first_source("Things", [("m", lambda: 7)], cached=cached, **where, fix="") == 7


# --- 3, 4. one tokenizer, one Vocabulary, NFC -----------------------------------------------


def test_the_lm_word_vocabulary_encodes_text_as_lm_does():
    text = "ROMEO:\nO, she doth teach the torches to burn bright! o'er o'er.\n" * 3
    vocab = lm_text.build_vocabulary(text, text, "word", words=100)
    assert vocab.encode(text) == lm_text.encode(text, vocab).tolist()
    assert vocab.decode(vocab.encode("O, she doth teach!")) == "O, she doth teach!"


def test_one_tokenizer_reads_decomposed_and_composed_text_alike():
    composed, decomposed = "\u00e9t\u00e9", "e\u0301te\u0301"
    assert tokenize(decomposed, "char") == tokenize(composed, "char") == ["é", "t", "é"]
    assert tokenize(f"{decomposed} x", "word") == [composed, "x"]


def test_langid_predicts_a_decomposed_word_as_the_composed_one():
    meta = {"characters": "$^té", "order": 2, "ngrams": ["^é", "ét", "té", "é$"]}
    encoder = langid.WordEncoder(meta)
    assert encoder.encode("e\u0301te\u0301").tolist() == encoder.encode("\u00e9t\u00e9").tolist()
    assert encoder.encode("\u00e9t\u00e9")[:, 0].tolist() == [2, 4, 3, 4, 1]


def test_postag_reads_a_decomposed_word_as_the_composed_one():
    words, _ = postag.vocabularies({"words": ["<unk>", "\u00e9t\u00e9"], "tags": ["NOUN"]})
    assert postag.encode(["E\u0301TE\u0301"], words, lowercase=True).tolist() == [1]


def test_vocabularies_of_runs_saved_before_still_load():
    # the meta each experiment wrote into its run folders before one Vocabulary served all
    lm_meta = {"vocabulary": {"tokens": ["\n", " ", "a", "b"], "level": "char", "unk": False}}
    assert Vocabulary.from_dict(lm_meta["vocabulary"]).encode("ab a\n") == [2, 3, 1, 2, 0]
    langid_meta = {"languages": ["en", "fr"], "characters": "$^ab", "order": 2, "ngrams": ["ab"]}
    ids = langid.WordEncoder(langid_meta).encode("abz")  # (T, 2)
    assert ids.tolist() == [[2, 0], [3, 0], [4, 1], [0, 0], [1, 0]]
    postag_meta = {"words": ["<unk>", "the"], "tags": ["DET", "NOUN"], "lowercase": True}
    words, tags = postag.vocabularies(postag_meta)
    assert postag.encode(["The", "cat"], words, True).tolist() == [1, 0]
    assert tags.encode(["NOUN", "DET"]) == [1, 0]


# --- 5. --tagset brown with a tag only validation holds -------------------------------------


@pytest.fixture
def corpus_with_a_validation_only_tag(tmp_path, cache_root, monkeypatch) -> Path:
    """The tiny corpus with the first token of its first validation sentence tagged WRB+BER,
    a tag no other sentence has."""
    files = tiny_corpus()
    lines = [(name, i) for name in sorted(files) for i, line in
             enumerate(files[name].decode().splitlines()) if line.strip()]  # fmt: skip
    name, index = lines[int(split_indices(len(lines), 0)[1][0])]
    text = files[name].decode().splitlines()
    word, _, _ = text[index].split()[0].rpartition("/")
    text[index] = text[index].replace(text[index].split()[0], f"{word}/wrb+ber", 1)
    files[name] = ("\n".join(text) + "\n").encode()
    return brown_folder(tmp_path / "brown", files, monkeypatch)


def test_postag_brown_tagset_scores_a_tag_only_validation_holds_instead_of_crashing(
    corpus_with_a_validation_only_tag, tmp_path, capsys
):
    folder = corpus_with_a_validation_only_tag
    args = ["postag", "--tagset", "brown", "--data-dir", str(folder), "--epochs", "1"]
    assert main([*args, *TINY_POSTAG, *QUIET, "--out-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "val acc" in out and "'WRB+BER'" in out  # a class of its own, scored per tag


# --- 6. text files in bounded memory --------------------------------------------------------

MEASURE = textwrap.dedent(
    """
    import resource, sys
    from rnnlab.data.lm_text import load_text
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    splits = load_text(text_file=sys.argv[1], level=sys.argv[2])
    grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    print(grew / splits.characters, splits.train.dtype)
    """
)


@pytest.mark.parametrize(
    ("line", "level"),
    [("To be, or not to be: that is the question.\n", "char"), ("été Ophélie\n", "word")],
    ids=["ascii-char", "accented-word"],
)
def test_a_text_file_is_read_and_encoded_in_a_few_bytes_per_character(tmp_path, line, level):
    path = tmp_path / "big.txt"
    path.write_text(line * (4 * MB // len(line.encode())))
    warm = "import numpy, torch, rnnlab.data.lm_text\n"  # imports are not the text's
    result = subprocess.run(
        [sys.executable, "-c", warm + MEASURE, str(path), level],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    per_char, dtype = result.stdout.split()
    # measured on 40 and 8 MB files: 1.1 (ASCII) and 1.7 (accented) bytes per character at
    # char level, 0.7 at word level, against 28 and 18 before the text was streamed
    assert float(per_char) < 6, f"{per_char} bytes per character"
    assert dtype == "torch.uint8"  # a vocabulary of fewer than 256 tokens either way


def test_streamed_chunks_give_the_characters_of_the_whole_file(tmp_path, monkeypatch):
    text = ("line\r\none e\u0301\r" * 50) + "caf\u00e9"
    path = tmp_path / "t.txt"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    monkeypatch.setattr(text_file, "CHUNK", 7)  # cuts inside \r\n, é and combining marks
    expected = "\ufeff" + text  # what one read of the whole file gives
    whole = corpus.decode_utf8(expected.encode(), "t")
    assert "".join(text_file.text_chunks(path)) == tokenize_nfc(whole)


def tokenize_nfc(text: str) -> str:
    return "".join(tokenize(text, "char"))


def test_bad_utf8_late_in_a_streamed_file_names_its_line_and_column(tmp_path, monkeypatch):
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"abc\n" * 100 + b"xy\xe9z\n")
    monkeypatch.setattr(text_file, "CHUNK", 16)
    with pytest.raises(
        ValueError, match=r"latin1.txt:101: not UTF-8 text .* at byte 402, column 3"
    ):
        text_file.scan_text(path)


def test_a_fifo_a_device_and_a_symlink_loop_each_get_their_own_line(tmp_path, capsys):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    loop = tmp_path / "loop"
    loop.symlink_to(tmp_path / "loop")
    cases = [
        (fifo, "is a FIFO (named pipe), not a regular file"),
        (Path("/dev/zero"), "is a character device, not a regular file"),
        (loop, "cannot resolve a symlink loop"),
        (tmp_path / "none.txt", "is missing"),
    ]
    for path, message in cases:
        assert main(["lm", "--dry-run", "--text-file", str(path), *QUIET]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


@pytest.mark.parametrize("level", ["char", "word"])
def test_a_streamed_text_file_gives_the_ids_of_the_whole_text(tmp_path, monkeypatch, level):
    text = (
        "ROMEO:\r\nO, she doth teach the torches to burn bright! o'er\tthe  e\u0301te\u0301\n" * 40
    )
    path = tmp_path / "play.txt"
    path.write_bytes(text.encode())
    monkeypatch.setattr(text_file, "CHUNK", 13)  # cuts inside words, \r\n and marks
    streamed = lm_text.load_text(text_file=str(path), level=level, words=12)
    whole = corpus.decode_utf8(text.encode(), "play")
    parts = corpus.split_text(tokenize_nfc(whole))
    vocab = lm_text.build_vocabulary(tokenize_nfc(whole), parts[0], level, words=12)
    assert streamed.vocab == vocab
    for ids, part in zip((streamed.train, streamed.val, streamed.test), parts, strict=True):
        assert ids.tolist() == lm_text.encode(part, vocab).tolist()


def test_ids_take_the_smallest_dtype_that_holds_the_vocabulary_and_batches_are_int64():
    assert [lm_text.id_dtype(n) for n in (256, 257, 1 << 15, (1 << 15) + 1)] == [
        torch.uint8,
        torch.int16,
        torch.int16,
        torch.int32,
    ]
    windows = lm_text.StreamWindows(torch.arange(41, dtype=torch.uint8), streams=2, bptt=5)
    inputs, targets = windows[0]
    assert inputs.dtype == targets.dtype == torch.int64 and inputs.shape == (2, 5)
