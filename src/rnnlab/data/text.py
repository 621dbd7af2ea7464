"""Text for the sequence experiments: the one tokenizer per level, the one `Vocabulary`, and
sequence pairs.

`tokenize` is the only place text becomes tokens, for every experiment: Unicode NFC first (so
a decomposed "été" is the composed one), then characters, or words (inner apostrophes kept:
"o'er"), newlines and each other mark on its own. `detokenize` reverses it. A `Vocabulary`
maps tokens to ids and back. Built from data, its tokens are sorted (by code
point), so the ids are the same every run whatever order the data comes in. Unknown tokens
are an error naming the token unless the vocabulary was built with `unk=True`, which gives
them the id of '<unk>'. `SequencePair`s feed the per-step tagger: one target token per
source token, as in the tutorial ("hello" -> "ohlol"); a pair of unequal lengths is an error that
names the pair (or the file and line it came from). Nothing here knows about models.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

LEVELS = ("char", "word")
UNK = "<unk>"


NEWLINE = "\n"
# word level: words (with inner apostrophes: "o'er", "bear't"), newlines, and each other
# mark on its own, so that generated text keeps the play's layout and punctuation
WORD_PATTERN = re.compile(r"\w+(?:'\w+)*|\n|[^\w\s]")
NO_SPACE_BEFORE = frozenset(".,;:!?)]'")


def nfc(text: str) -> str:
    """`text` in Unicode normal form C: one code point for "é" however it was typed."""
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


def tokenize(text: str, level: str = "char") -> list[str]:
    """`text` in NFC as characters (level 'char'), or as words, punctuation marks and
    newlines ('word')."""
    if level == "char":
        return list(nfc(text))
    if level == "word":
        return WORD_PATTERN.findall(nfc(text))
    raise ValueError(f"level must be 'char' or 'word', got {level!r}")


def detokenize(tokens: Sequence[str], level: str) -> str:
    """Tokens back to text: characters joined as they are; words with a space between them
    except before punctuation and around newlines."""
    if level == "char":
        return "".join(tokens)
    out: list[str] = []
    for token in tokens:
        if out and out[-1] != NEWLINE and token != NEWLINE and token not in NO_SPACE_BEFORE:
            out.append(" ")
        out.append(token)
    return "".join(out)


class Vocabulary:
    """Tokens and their ids, at character or word level.

    **Arguments:** `tokens` the tokens in id order (no duplicates); `level` 'char' or 'word';
    `unk` True to map unknown tokens to '<unk>' (added at id 0 when `tokens` lacks it), False
    to make them an error.

    Use `Vocabulary.build(texts)` to make one from data.
    """

    def __init__(self, tokens: Iterable[str], level: str = "char", unk: bool = False) -> None:
        tokenize("", level)  # validates `level`
        tokens = list(tokens)
        if unk and UNK not in tokens:
            tokens.insert(0, UNK)
        ids: dict[str, int] = {}
        for i, token in enumerate(tokens):
            if not isinstance(token, str) or not token:
                raise ValueError(f"tokens must be non-empty strings, got {token!r} at id {i}")
            if token in ids:
                raise ValueError(f"token {token!r} appears twice, at ids {ids[token]} and {i}")
            ids[token] = i
        self.level = level
        self.tokens: tuple[str, ...] = tuple(tokens)
        self.unk_id: int | None = ids[UNK] if unk else None
        self._ids = ids

    @classmethod
    def build(cls, texts: Iterable[str], level: str = "char", unk: bool = False) -> Vocabulary:
        """The vocabulary of every token in `texts`, sorted by code point (with '<unk>' first
        when `unk`), so the same data gives the same ids every run, in any order."""
        tokens = {token for text in texts for token in tokenize(text, level)}
        tokens.discard(UNK)
        return cls(sorted(tokens), level=level, unk=unk)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._ids

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocabulary):
            return NotImplemented
        return (self.tokens, self.level, self.unk_id) == (other.tokens, other.level, other.unk_id)

    def __hash__(self) -> int:
        return hash((self.tokens, self.level, self.unk_id))

    def __repr__(self) -> str:
        shown = ", ".join(repr(t) for t in self.tokens[:8])
        more = f", ... ({len(self)} in all)" if len(self) > 8 else ""
        return f"Vocabulary([{shown}{more}], level={self.level!r}, unk={self.unk_id is not None})"

    def index(self, token: str) -> int:
        """The id of `token`: '<unk>'s id for an unknown token when built with `unk=True`,
        else a `ValueError` naming it."""
        i = self._ids.get(token, self.unk_id)
        if i is None:
            shown = ", ".join(repr(t) for t in self.tokens[:20])
            more = ", ..." if len(self) > 20 else ""
            raise ValueError(
                f"token {token!r} is not in the vocabulary ({len(self)} tokens: {shown}{more}); "
                f"build it with unk=True to map unknown tokens to {UNK!r}"
            )
        return i

    def token(self, i: int) -> str:
        """The token with id `i`."""
        if not 0 <= i < len(self):
            raise ValueError(
                f"id {i} is out of range for a vocabulary of {len(self)} tokens "
                f"(0..{len(self) - 1})"
            )
        return self.tokens[i]

    def encode(self, text: str | Sequence[str]) -> list[int]:
        """The ids of `text`'s tokens; `text` is a string (tokenized at this vocabulary's
        level) or a sequence of tokens."""
        tokens = tokenize(text, self.level) if isinstance(text, str) else text
        return [self.index(token) for token in tokens]

    def decode(self, ids: Iterable[int] | Tensor) -> str:
        """The text of `ids` (`detokenize`)."""
        if isinstance(ids, Tensor):
            ids = ids.tolist()
        return detokenize([self.token(int(i)) for i in ids], self.level)

    def one_hot(self, text: str | Sequence[str]) -> Tensor:
        """`text` as one-hot rows: a float32 tensor (T, V), T tokens, V = len(self)."""
        ids = torch.tensor(self.encode(text), dtype=torch.int64)  # (T,)
        out = torch.zeros(len(ids), len(self))  # (T, V)
        return out.scatter_(1, ids[:, None], 1.0)  # (T, V)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description, for a run's config; `Vocabulary.from_dict` reverses it."""
        return {"tokens": list(self.tokens), "level": self.level, "unk": self.unk_id is not None}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Vocabulary:
        return cls(state["tokens"], level=state["level"], unk=state["unk"])


@dataclass(frozen=True)
class SequencePair:
    """A source sequence and its per-step target: one target token for each source token."""

    source: str
    target: str


HELLO = SequencePair("hello", "ohlol")  # the tutorial's one pair


def sequence_pairs(
    pairs: Iterable[tuple[str, str] | SequencePair], level: str = "char"
) -> list[SequencePair]:
    """`pairs` as `SequencePair`s, each checked to have as many target tokens as source tokens
    at `level`; the error names the offending pair by index."""
    checked = []
    for i, pair in enumerate(pairs):
        source, target = (pair.source, pair.target) if isinstance(pair, SequencePair) else pair
        _check_pair(source, target, level, f"pair {i}")
        checked.append(SequencePair(source, target))
    return checked


def read_pairs(path: str | os.PathLike, level: str = "char") -> list[SequencePair]:
    """The pairs in the UTF-8 TSV file `path`: one 'source<TAB>target' per line, blank lines
    skipped, nothing stripped but the line ending and a byte-order mark (spaces are characters
    too). Errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        what = "a folder" if path.is_dir() else "missing"
        raise FileNotFoundError(f"pairs file {path} is {what}; expected a TSV file of pairs")
    pairs = []
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            where = f"{path}:{number}"
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise ValueError(
                    f"{where}: not UTF-8 text ({e.reason} at byte {e.start})"
                ) from None
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != 2:
                raise ValueError(
                    f"{where}: expected 'source<TAB>target', found "
                    f"{len(fields) - 1} tabs in {line[:80]!r}"
                )
            _check_pair(*fields, level, where)
            pairs.append(SequencePair(*fields))
    if not pairs:
        raise ValueError(f"{path}: no pairs, expected lines of 'source<TAB>target'")
    return pairs


def _check_pair(source: str, target: str, level: str, where: str) -> None:
    source_tokens, target_tokens = tokenize(source, level), tokenize(target, level)
    if not source_tokens:
        raise ValueError(f"{where}: empty source {source!r}")
    if len(source_tokens) != len(target_tokens):
        unit = "characters" if level == "char" else "words"
        raise ValueError(
            f"{where}: source {source!r} has {len(source_tokens)} {unit}, target {target!r} "
            f"has {len(target_tokens)}; a per-step tagger needs one target per source token"
        )


class PairDataset(Dataset):
    """Sequence pairs as ids: item i is (source ids, target ids), two int64 tensors (T_i,).

    **Arguments:** `pairs`; `source_vocab` for the sources; `target_vocab` for the targets
    (None: the source vocabulary, as in the tutorial, where both sides share one alphabet).
    """

    def __init__(
        self,
        pairs: Sequence[SequencePair],
        source_vocab: Vocabulary,
        target_vocab: Vocabulary | None = None,
    ) -> None:
        self.pairs = list(pairs)
        self.source_vocab = source_vocab
        self.target_vocab = target_vocab if target_vocab is not None else source_vocab
        for i, pair in enumerate(self.pairs):
            _check_pair(pair.source, pair.target, self.source_vocab.level, f"pair {i}")

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        pair = self.pairs[index]
        source = torch.tensor(self.source_vocab.encode(pair.source), dtype=torch.int64)  # (T,)
        target = torch.tensor(self.target_vocab.encode(pair.target), dtype=torch.int64)  # (T,)
        return source, target
