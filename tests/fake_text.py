"""Small made-up text data for the langid and postag tests: word lists of 18 made-up
languages in wordfreq's format, and a Brown-style tagged corpus of ten files. The fixtures
that install them (`lists`, `corpus`) are in conftest.py."""

from __future__ import annotations

import gzip
import random

import msgpack

from rnnlab.data import LANGUAGES

PER_LANGUAGE = 30  # words in each made-up list


def made_up_lists() -> dict[str, bytes]:
    """Each language's words from three letters, one shared with each neighbour."""
    rng = random.Random(0)
    files = {}
    for k, language in enumerate(LANGUAGES):
        letters = "abcdefghijklmnopqrstuvwxyzàéöñçşłřåæøüãőîțèíó"[2 * k : 2 * k + 3]
        words = set()
        while len(words) < PER_LANGUAGE:
            words.add("".join(rng.choice(letters) for _ in range(rng.randint(3, 7))))
        buckets = [[w] for w in sorted(words)]
        header = {"format": "cB", "version": 1}
        files[f"small_{language}.msgpack.gz"] = gzip.compress(msgpack.packb([header, *buckets]))
    return files


NOUNS = ["man/nn", "boat/nn", "dog/nn", "house/nn", "city/nn"]
RARE = ["yak", "gnu", "emu", "ibex", "okapi", "tapir", "zebu", "kudu", "eland", "dingo"]
ADJECTIVES = ["old/jj", "small/jj", "red/jj"]
VERBS = ["saw/vbd", "took/vbd", "left/vbd"]


def tiny_corpus() -> dict[str, bytes]:
    """Ten files of 'The ADJ NOUN VERB NOUN .' sentences (NOUN the most frequent tag); the
    sixth sentence of each file ends on a RARE noun, so validation and test hold unseen ones."""
    rng = random.Random(0)
    files = {}
    for k in range(10):
        lines = []
        for i in range(6):
            words = ["The/at", rng.choice(ADJECTIVES), rng.choice(NOUNS), rng.choice(VERBS)]
            words += [f"{RARE[k]}/nn" if i == 5 else rng.choice(NOUNS), "./."]
            lines.append("\t" + " ".join(words) + "\n")
        files[f"c{'abcdefghij'[k]}01"] = ("\n\n" + "\n\n".join(lines)).encode()
    return files
