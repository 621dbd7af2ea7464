"""The language model: an RNN learns a text (Shakespeare by default) and then writes more.

Tokens are characters (or the N most frequent words plus '<unk>'); an Embedding feeds an
RNN whose every step predicts the next token through a Linear and softmax, trained with
cross-entropy. Training is truncated backpropagation through time as practitioners do it:
the training text runs as B parallel streams, cut into windows of `bptt` steps, and the
hidden state is carried from one window to the next and detached, so gradients span one
window while the state spans the whole stream. Validation and test run over their whole
text the same way. Beside the RNN the project counts its own baselines on the same split: a
unigram model and an interpolated Kneser-Ney n-gram whose order is picked on validation.

`rnnlab generate RUN_DIR --prompt "ROMEO:"` streams text from a trained run.
"""

from __future__ import annotations

import math
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import Dataset

from rnnlab.data import UNK, Corpus, Vocabulary, load_corpus, split_text
from rnnlab.models import make_rnn

LEVELS = ("char", "word")
NEWLINE = "\n"
# word level: words (with inner apostrophes: "o'er", "bear't"), newlines, and each other
# mark on its own, so that generated text keeps the play's layout and punctuation
WORD_PATTERN = re.compile(r"\w+(?:'\w+)*|\n|[^\w\s]")
NO_SPACE_BEFORE = frozenset(".,;:!?)]'")
EVAL_STREAMS = 8  # validation and test run as this many streams, each carrying its state


# --- tokens ---------------------------------------------------------------------------------


def tokenize(text: str, level: str) -> list[str]:
    """`text` as characters, or as words, punctuation marks and newlines (word level)."""
    if level == "char":
        return list(text)
    if level == "word":
        return WORD_PATTERN.findall(text)
    raise ValueError(f"level must be one of {', '.join(LEVELS)}; got {level!r}")


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


def build_vocabulary(text: str, train: str, level: str, words: int) -> Vocabulary:
    """Char level: every character of the whole text (its symbol set, not its statistics, so
    validation never meets an unknown character); word level: the `words` most frequent
    tokens of the training part (ties broken by the token), plus '<unk>'."""
    if level == "char":
        return Vocabulary.build([text], "char")
    counts = Counter(tokenize(train, "word"))
    counts.pop(UNK, None)
    top = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:words]
    return Vocabulary(sorted(token for token, _ in top), level="word", unk=True)


def encode(text: str, vocab: Vocabulary) -> Tensor:
    """`text` as token ids at the vocabulary's level: int64 (N,). Characters go through a
    table of code points (millions per second); a character the vocabulary lacks is an error
    naming it."""
    if vocab.level != "char":
        return torch.tensor(vocab.encode(tokenize(text, vocab.level)), dtype=torch.int64)
    points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)  # (N,) code points
    token_points = np.array([ord(token) for token in vocab.tokens], dtype=np.uint32)  # (V,)
    order = np.argsort(token_points)  # ids by code point
    known = token_points[order]  # (V,) sorted
    at = np.minimum(np.searchsorted(known, points), len(known) - 1)  # (N,)
    missing = known[at] != points
    if missing.any():
        vocab.index(chr(points[np.argmax(missing)]))  # raises, naming the character
    return torch.from_numpy(order[at].astype(np.int64))


# --- truncated BPTT -------------------------------------------------------------------------


class StreamWindows(Dataset):
    """A token sequence as `streams` contiguous parallel streams cut into windows of `bptt`.

    Stream b is tokens [b L, (b + 1) L + 1) with L = (N - 1) // streams (the remainder is
    dropped). Item i is window i // streams of stream i % streams: (inputs (T,), targets (T,)),
    targets being the inputs shifted by one token. Read in order with batch size `streams`,
    batch w is window w of every stream, (B, T), so the state a model carries from batch
    w - 1 is where each of its streams left off. A last window shorter than `bptt` is kept
    only when it is the only one (a text shorter than a window).
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
        self.streams = streams
        self.bptt = min(bptt, length)
        self.windows = length // self.bptt

    def __len__(self) -> int:
        return self.windows * self.streams

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"window index {index} out of range for {len(self)}")
        window, stream = divmod(index, self.streams)
        steps = slice(window * self.bptt, (window + 1) * self.bptt)
        return self.inputs[stream, steps], self.targets[stream, steps]  # (T,), (T,)


# --- the model ------------------------------------------------------------------------------


class LanguageModel(nn.Module):
    """Next-token prediction with the hidden state carried: ids (B, T) -> logits (B, T, V).

    embedding (V -> E) -> dropout -> RNN (E -> H, L layers, dropout between layers) ->
    dropout -> Linear (H -> V); with `tied` the Linear's weight is the embedding's (E == H).

    `forward(tokens)` starts from the state its previous call left (detached: truncated BPTT)
    when that call was in the same mode (training or eval) with the same batch size, else
    from zeros; `reset_state()` forgets both, and so does loading weights. `step(tokens,
    state)` is the stateless form: it takes and returns the state (L, B, H) explicitly.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding: int,
        hidden: int,
        layers: int,
        nonlinearity: str = "tanh",
        impl: str = "rnnlab",
        dropout: float = 0.0,
        tied: bool = False,
        init_scheme: str = "default",
    ) -> None:
        super().__init__()
        if tied and embedding != hidden:
            raise ValueError(
                f"--tied shares the embedding and output weights, so it needs --embedding equal "
                f"to --hidden; got embedding {embedding}, hidden {hidden}"
            )
        self.embedding = nn.Embedding(vocab_size, embedding)
        self.rnn = make_rnn(
            impl, embedding, hidden, layers, nonlinearity, init_scheme, dropout=dropout
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, vocab_size)
        if tied:
            self.head.weight = self.embedding.weight
        self._carried: dict[bool, Tensor] = {}  # training mode -> (L, B, H), detached

    def reset_state(self) -> None:
        self._carried.clear()

    def load_state_dict(self, *args, **kwargs):
        self.reset_state()  # a state carried by other weights means nothing to these
        return super().load_state_dict(*args, **kwargs)

    def step(self, tokens: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Logits (B, T, V) for ids (B, T) from `state` (L, B, H) (None: zeros), and the
        state after the last step."""
        x = self.dropout(self.embedding(tokens))  # (B, T, E)
        h, state = self.rnn(x, state)  # (B, T, H), (L, B, H)
        return self.head(self.dropout(h)), state  # (B, T, V), (L, B, H)

    def forward(self, tokens: Tensor) -> Tensor:
        carried = self._carried.get(self.training)
        if carried is not None and carried.shape[1] != tokens.shape[0]:
            carried = None  # another layout of streams: start afresh
        logits, state = self.step(tokens, carried)
        self._carried[self.training] = state.detach()
        return logits  # (B, T, V)


# --- generation -----------------------------------------------------------------------------


@torch.no_grad()
def generate(
    model: LanguageModel,
    prompt: Sequence[int],
    length: int,
    temperature: float = 0.8,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> Iterator[int]:
    """Token ids sampled one at a time after the ids `prompt` (at least one): the prompt is
    read first, then each sampled token is fed back. Each draw is from softmax(logits /
    `temperature`), restricted to the `top_k` most likely tokens when given; `generator`
    makes the draws reproducible. Leaves the model's carried state alone."""
    if not prompt:
        raise ValueError("the prompt must hold at least one token")
    if temperature <= 0 or not math.isfinite(temperature):
        raise ValueError(f"temperature must be a positive number, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    was_training = model.training
    model.eval()
    try:
        logits, state = model.step(torch.tensor([list(prompt)]))  # (1, P, V), (L, 1, H)
        for _ in range(length):
            scores = logits[0, -1].double() / temperature  # (V,)
            if top_k is not None and top_k < len(scores):
                kth = torch.topk(scores, top_k).values[-1]
                scores = scores.masked_fill(scores < kth, -math.inf)
            token = int(torch.multinomial(F.softmax(scores, dim=-1), 1, generator=generator))
            yield token
            logits, state = model.step(torch.tensor([[token]]), state)  # (1, 1, V)
    finally:
        model.train(was_training)


def sample_text(
    model: LanguageModel,
    vocab: Vocabulary,
    prompt: str,
    length: int,
    temperature: float = 0.8,
    top_k: int | None = None,
    seed: int = 0,
    write: Callable[[str], object] | None = None,
) -> str:
    """`prompt` followed by `length` generated tokens, as text; each piece is also passed
    to `write` as it comes (e.g. sys.stdout.write, to stream it). Unknown prompt characters
    are an error naming them; unknown prompt words become '<unk>'."""
    tokens = tokenize(prompt, vocab.level)
    ids = vocab.encode(tokens)
    generator = torch.Generator().manual_seed(seed)
    pieces = [prompt]
    if write is not None:
        write(prompt)
    previous = tokens[-1] if tokens else NEWLINE
    for token_id in generate(model, ids, length, temperature, top_k, generator):
        token = vocab.token(token_id)
        piece = detokenize([previous, token], vocab.level)[len(previous) :]
        pieces.append(piece)
        previous = token
        if write is not None:
            write(piece)
    return "".join(pieces)


# --- count-based baselines ------------------------------------------------------------------


def unigram_loss(train: np.ndarray, text: np.ndarray, vocab_size: int) -> float:
    """Mean -ln P(token) over `text` under add-one smoothed frequencies of `train`."""
    counts = np.bincount(train, minlength=vocab_size) + 1.0
    return float(-np.log(counts[text] / counts.sum()).mean())


def _kgrams(ids: np.ndarray, k: int, base: int) -> np.ndarray:
    """Every k-gram of `ids` as one integer of k base-`base` digits: (N - k + 1,)."""
    n = max(len(ids) - k + 1, 0)
    keys = np.zeros(n, dtype=np.int64)
    for j in range(k):
        keys = keys * base + ids[j : j + n]
    return keys


def _lookup(keys: np.ndarray, values: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """values[i] where keys[i] == query, else 0; `keys` sorted."""
    at = np.minimum(np.searchsorted(keys, queries), len(keys) - 1)
    return np.where(keys[at] == queries, values[at], 0)


class KneserNey:
    """An interpolated Kneser-Ney n-gram model of token ids (Chen & Goodman, 1998):

        P(w | h) = max(c(h w) - D, 0) / c(h) + D N1+(h .) / c(h) * P(w | h'),

    where h' is the history without its oldest token, c are raw counts at the top order and
    continuation counts N1+(. h w) (how many distinct tokens precede h w) below it, N1+(h .)
    is how many distinct tokens follow h, D = n1 / (n1 + 2 n2) per order, and the uniform
    1/V sits under the unigram. A history never seen hands over to the next lower order.
    Counts are sorted numpy arrays of k-gram keys, so fitting and scoring are vectorised.
    """

    def __init__(
        self, train: np.ndarray, vocab_size: int, order: int, memo: dict | None = None
    ) -> None:
        """**Arguments:** `train` token ids (N,); `order` n; `memo` a dict shared by models of
        different orders on the same `train`, which then count each k-gram table once."""
        if order < 1 or vocab_size**order >= 2**62:
            raise ValueError(f"order must be 1..{max_order(vocab_size)} for {vocab_size} tokens")
        self.vocab_size, self.order = vocab_size, order
        memo = {} if memo is None else memo

        def kgram_counts(k: int) -> tuple[np.ndarray, np.ndarray]:  # distinct k-grams, counts
            if k not in memo:
                memo[k] = np.unique(_kgrams(train, k, vocab_size), return_counts=True)
            return memo[k]

        self.levels = []
        for k in range(1, order + 1):
            if k == order:  # raw counts c(h w)
                keys, counts = kgram_counts(k)
            else:  # continuation counts N1+(. h w)
                keys, counts = np.unique(kgram_counts(k + 1)[0] % vocab_size**k, return_counts=True)
            n1, n2 = np.count_nonzero(counts == 1), np.count_nonzero(counts == 2)
            discount = n1 / (n1 + 2 * n2) if n1 + 2 * n2 else 0.5
            contexts, first = np.unique(keys // vocab_size, return_index=True)  # keys sorted
            totals = np.add.reduceat(counts, first)  # c(h), by context
            types = np.diff(np.append(first, len(keys)))  # N1+(h .), by context
            self.levels.append((keys, counts, contexts, totals, types, discount))

    def log_probs(self, ids: np.ndarray) -> np.ndarray:
        """ln P(ids[i] | the order - 1 tokens before it) for every i (shorter histories at
        the start): (N,)."""
        n = len(ids)
        p = np.full(n, 1.0 / self.vocab_size)  # (N,)
        for k, (keys, counts, contexts, totals, types, discount) in enumerate(self.levels, 1):
            grams = np.zeros(n, dtype=np.int64)
            grams[k - 1 :] = _kgrams(ids, k, self.vocab_size)  # (N,) the k-gram ending at i
            c_hw = _lookup(keys, counts, grams)
            c_h = _lookup(contexts, totals, grams // self.vocab_size)
            types_h = _lookup(contexts, types, grams // self.vocab_size)
            seen = (np.arange(n) >= k - 1) & (c_h > 0)
            mixed = (np.maximum(c_hw - discount, 0) + discount * types_h * p) / np.maximum(c_h, 1)
            p = np.where(seen, mixed, p)
        return np.log(p)

    def loss(self, ids: np.ndarray) -> float:
        """Mean -ln P per token over `ids`, in nats."""
        return float(-self.log_probs(ids).mean())


def max_order(vocab_size: int, cap: int = 10) -> int:
    """The highest n-gram order whose keys fit in 62 bits, at most `cap`."""
    return max(1, min(cap, int(62 / math.log2(max(vocab_size, 2)) - 1e-9)))


@dataclass(frozen=True)
class Baselines:
    """Count-based models scored on the same split as the RNN, in nats per token."""

    unigram: dict[str, float]  # split -> loss
    ngram_order: int  # picked on validation
    ngram: dict[str, float]  # split -> loss of that order
    ngram_by_order: dict[int, float]  # validation loss of every order tried


def count_baselines(train: Tensor, val: Tensor, test: Tensor, vocab_size: int) -> Baselines:
    """The unigram and the Kneser-Ney n-gram of the best validation order (tried from 2 up,
    stopping once validation gets worse twice in a row), scored on validation and test."""
    train_ids, val_ids, test_ids = (t.numpy() for t in (train, val, test))
    unigram = {
        "val": unigram_loss(train_ids, val_ids, vocab_size),
        "test": unigram_loss(train_ids, test_ids, vocab_size),
    }
    by_order: dict[int, float] = {}
    best: KneserNey | None = None
    memo: dict = {}
    for order in range(2, max_order(vocab_size) + 1):
        model = KneserNey(train_ids, vocab_size, order, memo)
        by_order[order] = model.loss(val_ids)
        if best is None or by_order[order] < by_order[best.order]:
            best = model
        elif order - best.order >= 2:
            break
    if best is None:  # a vocabulary too large for bigram keys: the unigram is all there is
        return Baselines(unigram, 1, dict(unigram), {})
    ngram = {"val": by_order[best.order], "test": best.loss(test_ids)}
    return Baselines(unigram, best.order, ngram, by_order)


def describe_loss(loss: float, level: str) -> str:
    """A loss in nats per token with its usual companion: bits per character or perplexity."""
    if level == "char":
        return f"{loss:.4f} nats/char = {loss / math.log(2):.3f} bits/char"
    return f"{loss:.4f} nats/word = perplexity {math.exp(loss):.1f}"


# --- data -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextSplits:
    """A corpus cut 90/5/5, its vocabulary, and each part as token ids."""

    corpus: Corpus
    vocab: Vocabulary
    train: Tensor  # (N_train,) int64
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
    built from it unless `vocab` (a saved run's) is given."""
    loaded = load_corpus(corpus, data_dir=data_dir, text_file=text_file, progress=progress)
    train, val, test = split_text(loaded.text)
    if vocab is None:
        vocab = build_vocabulary(loaded.text, train, level, words)
    return TextSplits(loaded, vocab, encode(train, vocab), encode(val, vocab), encode(test, vocab))


def stream_text(write: Callable[[str], object] = sys.stdout.write) -> Callable[[str], None]:
    """A writer that flushes after each piece, so generated text appears as it comes."""

    def write_and_flush(piece: str) -> None:
        write(piece)
        sys.stdout.flush()

    return write_and_flush
