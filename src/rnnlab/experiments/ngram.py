"""Count-based language models, the baselines a language model must beat: the unigram and
an interpolated Kneser-Ney n-gram whose order is picked on validation, scored on the same
split in nats per token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from torch import Tensor


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
    train_ids, val_ids, test_ids = (t.numpy().astype(np.int64) for t in (train, val, test))
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
