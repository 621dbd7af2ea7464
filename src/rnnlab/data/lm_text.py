"""The language model's text: tokens (characters, or words and marks), their ids, and the
streams truncated backpropagation through time reads them in.

`load_text` loads a corpus (see `corpus.py`; a user's file is streamed, see `text_file.py`),
cuts it 90/5/5 and encodes each part with a vocabulary of its characters, or of the N most
frequent training words plus '<unk>'. Ids are kept in the smallest dtype that holds the
vocabulary (`id_dtype`) and widened to int64 one window at a time.
`StreamWindows` lays a part out as B parallel streams cut into windows of `bptt` steps;
item w is window w of every stream, so reading the items in order continues each stream.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from rnnlab.data import text_file
from rnnlab.data.corpus import load_corpus, split_bounds, split_text
from rnnlab.data.text import UNK, Vocabulary, nfc, tokenize
from rnnlab.data.text_file import CHUNK

LAST_SPACE = re.compile(r"\s\S*\Z")  # the last white space of a text, and what follows it


def build_vocabulary(text: str, train: str, level: str, words: int) -> Vocabulary:
    """Char level: every character of the whole text (its symbol set, not its statistics, so
    validation never meets an unknown character); word level: the `words` most frequent
    tokens of the training part (ties broken by the token), plus '<unk>'."""
    if level == "char":
        return Vocabulary(sorted(set(nfc(text))), "char")
    return word_vocabulary(Counter(tokenize(train, "word")), words)


def word_vocabulary(counts: Counter, words: int) -> Vocabulary:
    """The `words` most frequent tokens of `counts` (ties broken by the token), plus '<unk>'."""
    counts.pop(UNK, None)
    top = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:words]
    return Vocabulary(sorted(token for token, _ in top), level="word", unk=True)


def id_dtype(size: int) -> torch.dtype:
    """The smallest integer dtype that holds the ids of a vocabulary of `size` tokens: a text
    is kept as these and widened to int64 one batch at a time."""
    if size <= 1 << 8:
        return torch.uint8
    return torch.int16 if size <= 1 << 15 else torch.int32


def encode(text: str, vocab: Vocabulary) -> Tensor:
    """`text` as token ids at the vocabulary's level: (N,) of `id_dtype`. A character the
    vocabulary lacks is an error naming it."""
    if vocab.level != "char":
        ids = vocab.encode(tokenize(text, vocab.level))
        return torch.tensor(ids, dtype=torch.int64).to(id_dtype(len(vocab)))
    text = nfc(text)
    chunks = (text[i : i + CHUNK] for i in range(0, len(text), CHUNK))
    return encode_chars(chunks, len(text), vocab)


def encode_chars(chunks: Iterable[str], count: int, vocab: Vocabulary) -> Tensor:
    """The `count` characters of `chunks` (NFC already) as ids: (count,) of `id_dtype`.
    Characters go through a table of code points a chunk at a time (millions per second),
    so memory holds the ids and one chunk's temporaries."""
    out = torch.empty(count, dtype=id_dtype(len(vocab)))  # (N,)
    token_points = np.array([ord(token) for token in vocab.tokens], dtype=np.uint32)  # (V,)
    order = np.argsort(token_points)  # ids by code point
    known = token_points[order]  # (V,) sorted
    at = 0
    for chunk in chunks:
        points = np.frombuffer(chunk.encode("utf-32-le"), dtype=np.uint32)  # (n,) code points
        where = np.minimum(np.searchsorted(known, points), len(known) - 1)  # (n,)
        missing = known[where] != points
        if missing.any():
            vocab.index(chr(points[np.argmax(missing)]))  # raises, naming the character
        out[at : at + len(points)] = torch.from_numpy(order[where])
        at += len(points)
    if at != count:
        raise ValueError(f"expected {count} characters, read {at}: the text changed while read")
    return out


# --- truncated BPTT -------------------------------------------------------------------------


class StreamWindows(Dataset):
    """A token sequence as `streams` contiguous parallel streams cut into windows of `bptt`.

    Stream b is tokens [b L, (b + 1) L + 1) with L = (N - 1) // streams (the remainder is
    dropped). Item w is window w of every stream: (inputs (B, T), targets (B, T)), targets
    being the inputs shifted by one token, so a model that carries its state from item w - 1
    continues each of its streams where it left off. A last window shorter than `bptt` is
    kept only when it is the only one (a text shorter than a window). Items are whole
    batches: a DataLoader reads them with `batch_size=None`, in order.
    """

    def __init__(self, ids: Tensor, streams: int, bptt: int) -> None:
        if streams < 1 or bptt < 1:
            raise ValueError(f"streams and bptt must be >= 1, got {streams} and {bptt}")
        length = (len(ids) - 1) // streams
        if length < 1:
            raise ValueError(
                f"{len(ids)} tokens cannot make {streams} streams of 2 tokens or more; "
                f"use fewer streams (--batch-size) or a longer text"
            )
        self.inputs = ids[: streams * length].view(streams, length)  # (B, L)
        self.targets = ids[1 : streams * length + 1].view(streams, length)  # (B, L)
        self.bptt = min(bptt, length)
        self.windows = length // self.bptt

    @property
    def streams(self) -> int:
        return len(self.inputs)

    def __len__(self) -> int:
        return self.windows

    def __getitem__(self, window: int) -> tuple[Tensor, Tensor]:
        if not 0 <= window < self.windows:
            raise IndexError(f"window {window} out of range for {self.windows}")
        steps = slice(window * self.bptt, (window + 1) * self.bptt)
        return self.inputs[:, steps].long(), self.targets[:, steps].long()  # (B, T), (B, T)

    def shard(self, rank: int, world: int) -> StreamWindows:
        """Process `rank` of `world`'s share: streams [rank B / world, (rank + 1) B / world)
        of every window, so the processes together read every stream once."""
        if self.streams % world:
            raise ValueError(
                f"{self.streams} streams cannot be shared equally by {world} processes; "
                f"use a --batch-size divisible by {world}"
            )
        share = self.streams // world
        part = object.__new__(StreamWindows)
        part.__dict__.update(self.__dict__)
        part.inputs = self.inputs[rank * share : (rank + 1) * share]  # (B / world, L)
        part.targets = self.targets[rank * share : (rank + 1) * share]
        return part


# --- data -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextSplits:
    """A text cut 90/5/5, its vocabulary, and each part as token ids."""

    name: str  # the corpus's, or 'file'
    source: str  # where the text came from
    sha256: dict[str, str]  # see `Corpus.sha256`
    characters: int
    vocab: Vocabulary
    train: Tensor  # (N_train,) of `id_dtype`
    val: Tensor
    test: Tensor


def load_text(
    corpus: str = "shakespeare",
    text_file: str | None = None,
    data_dir: str | None = None,
    level: str = "char",
    words: int = 10000,
    vocab: Vocabulary | None = None,
    progress: bool = True,
) -> TextSplits:
    """The corpus (see `rnnlab.data.load_corpus`) split 90/5/5 and encoded; the vocabulary is
    built from it unless `vocab` (a saved run's) is given. A `text_file` is streamed, never
    held as text: `text_file.scan_text` counts it, then characters are encoded a chunk at a
    time (`encode_chars`); words are counted in one more pass when the vocabulary is built
    (`_word_pieces`)."""
    if text_file is not None:
        stream = _stream_chars if level == "char" else partial(_stream_words, words=words)
        return stream(text_file, vocab)
    loaded = load_corpus(corpus, data_dir=data_dir, text_file=text_file, progress=progress)
    text = nfc(loaded.text)
    train, val, test = split_text(text)
    if vocab is None:
        vocab = build_vocabulary(text, train, level, words)
    parts = (encode(part, vocab) for part in (train, val, test))
    return TextSplits(loaded.name, loaded.source, loaded.sha256, len(text), vocab, *parts)


def _stream_chars(path: str | os.PathLike, vocab: Vocabulary | None) -> TextSplits:
    scan = text_file.scan_text(path)
    if vocab is None:
        vocab = Vocabulary(sorted(scan.symbols), "char")
    ids = encode_chars(text_file.text_chunks(path), scan.characters, vocab)  # (N,)
    train_end, val_end = split_bounds(scan.characters)
    parts = (ids[:train_end], ids[train_end:val_end], ids[val_end:])
    sha256 = {scan.path.name: scan.sha256}
    return TextSplits("file", f"file {path}", sha256, scan.characters, vocab, *parts)


def _stream_words(path: str | os.PathLike, vocab: Vocabulary | None, words: int) -> TextSplits:
    scan = text_file.scan_text(path)
    bounds = split_bounds(scan.characters)
    if vocab is None:
        counts: Counter = Counter()
        for part, piece in _word_pieces(path, bounds):
            if part == 0:
                counts.update(tokenize(piece, "word"))
        vocab = word_vocabulary(counts, words)
    dtype = id_dtype(len(vocab))
    pieces: list[list[Tensor]] = [[], [], []]
    for part, piece in _word_pieces(path, bounds):
        pieces[part].append(torch.tensor(vocab.encode(tokenize(piece, "word"))).to(dtype))
    parts = (torch.cat(p) if p else torch.empty(0, dtype=dtype) for p in pieces)
    sha256 = {scan.path.name: scan.sha256}
    return TextSplits("file", f"file {path}", sha256, scan.characters, vocab, *parts)


def _word_pieces(path: str | os.PathLike, bounds: tuple[int, int]) -> Iterator[tuple[int, str]]:
    """(part, text) pieces of the text file, part 0, 1, 2 cut at `bounds` as `split_text`
    cuts it; inside a part each piece ends just after a white space, where no token goes on
    (a token is a word, a mark or a newline), so tokenizing the pieces gives the part's tokens."""
    part, at, held = 0, 0, ""
    ends = (*bounds, float("inf"))
    for chunk in text_file.text_chunks(path):
        while chunk:
            take = int(min(len(chunk), ends[part] - at))
            text, chunk, at = held + chunk[:take], chunk[take:], at + take
            if at == ends[part]:  # the part ends here: all of it goes out
                if text:
                    yield part, text
                part, held = part + 1, ""
                continue
            space = LAST_SPACE.search(text)
            cut = space.start() + 1 if space else 0
            if cut:
                yield part, text[:cut]
            held = text[cut:]
    if held:
        yield part, held
