"""Language identification: `rnnlab langid` scores 81.01% on test, the n-gram SVM 81.18%.

    rnnlab langid                 # 25 epochs, 6 min 50 s at 1 thread; docs/results/langid.md
    rnnlab langid --dry-run       # two batches, in seconds
    rnnlab predict runs/langid --text "bonjour hello"

Which of 18 languages a single word is written in, from its letters.

The words are the top `--words` of each language in wordfreq's lists (`load_wordlists`), minus
the words two or more languages share; the split is seeded 80/10/10, stratified by language. A
word is read as its characters between the markers '^' and '$', one-hot or embedded, by a
(bidirectional) RNN; with `--ngrams N` each step's vector also sums the embeddings of the 2..N
character n-grams that end there (fastText's subwords, read in order by the RNN). Words differ
in length, so a batch goes in as a `PackedSequence`: no step of padding is computed. The word's
vector pools the top layer's outputs over the word's steps (`--pool`: their mean, their
maximum, the last state of each direction); a Linear maps it to the 18 languages. Beside the
RNN the module scores the baseline it must beat, a bag of character 1-4-grams (tf-idf) with a
linear SVM from scikit-learn, on the same split, and after training counts the test words only
one of the two gets right, with McNemar's exact test on them: is the gap more than the draw?

`rnnlab predict RUN_DIR --text "bonjour hello"` prints each word's three likeliest languages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from scipy.stats import binomtest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import f1_score, recall_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.svm import LinearSVC
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils.rnn import PackedSequence, pack_sequence, pad_packed_sequence
from torch.utils.data import Dataset

from rnnlab.data import LANGUAGES, UNK, Vocabulary, load_wordlists
from rnnlab.data.text import nfc
from rnnlab.data.wordlists import WORDFREQ
from rnnlab.experiments.experiment import (
    Data,
    Experiment,
    Explain,
    RunCommand,
    SavedRun,
    printable,
    some_wrong,
)
from rnnlab.models import CELLS, RNNOptions, hidden_of, hidden_option
from rnnlab.options import check_choices, check_range, option
from rnnlab.train import EvalResult
from rnnlab.train.config import MAX_SEED

BEGIN, END = "^", "$"  # around every word, so that the RNN sees where a word starts and ends
UNKNOWN = 0  # the id ('<unk>') of a character the training words never hold
TOP = 3  # languages printed per word by predict
MIN_WORDS = 20  # per language: its 10% val and test shares hold 2, less the shared words dropped
EXPLAINED_WORDS = 12  # test words the explain page shows by default
POOLS = ("last", "max", "mean")  # what the word's vector may hold (--pool)
BASELINE = "char 1-4-gram tf-idf + linear SVM"  # its name in baselines.json


@dataclass
class LangidConfig(RNNOptions):
    hidden: int = hidden_option(256)
    words: int = option(5000, "top words of >= 3 letters taken per language (shared ones dropped)")
    data_dir: str | None = option(
        None,
        "a folder holding the wordfreq 3.1.1 wheel or its small_XX.msgpack.gz lists; default: "
        "an installed wordfreq, the cache, then the wheel from the package index",
    )
    split_seed: int = option(0, "seed of the stratified 80/10/10 split of the words")
    embedding: int = option(64, "character embedding size; 0 feeds the characters one-hot")
    ngrams: int = option(
        4,
        "each step also adds the embeddings of the 2..N-grams that end at its character "
        "(those seen at least --ngram-min-count times in training); 1: the character alone",
    )
    ngram_min_count: int = option(
        2, "an n-gram seen fewer times than this in the training words reads as unseen"
    )
    bidirectional: bool = option(True, "also read each word from its end; --no-bidirectional")
    dropout: float = option(0.3, "dropout on the characters' vectors and the word's vector")
    ngram_dropout: float = option(
        0.4, "in training, each n-gram a step reads is read as unseen with this chance"
    )
    pool: str = option(
        "mean",
        "the word's vector: some of last (each direction's last state), max and mean (over "
        "the word's steps), joined by +",
    )
    batch_size: int = option(64, "words per batch")

    def __post_init__(self) -> None:
        check_choices(self)
        self.check_rnn()
        if self.words < MIN_WORDS:
            raise ValueError(
                f"--words must be >= {MIN_WORDS}: the 10% validation and test parts of the "
                f"stratified split need words of every language; got {self.words}"
            )
        check_range("split_seed", self.split_seed, 0, MAX_SEED)  # scikit-learn's random_state
        check_range("embedding", self.embedding, 0)
        check_range("ngrams", self.ngrams, 1, 8)
        check_range("ngram_min_count", self.ngram_min_count, 1)
        if self.ngrams > 1 and not self.embedding:
            raise ValueError(
                f"--ngrams {self.ngrams} needs --embedding > 0 (n-grams are embedded) or --ngrams 1"
            )
        check_range("dropout", self.dropout, 0.0, 1.0)
        check_range("ngram_dropout", self.ngram_dropout, 0.0, 1.0)
        check_range("batch_size", self.batch_size, 1)
        pools = self.pool.split("+")
        if not set(pools) <= set(POOLS) or len(set(pools)) != len(pools):
            raise ValueError(
                f"pool must join some of {', '.join(POOLS)} by +, each once, got {self.pool!r}"
            )


class Words(Dataset):
    """Words and their language labels; a sample is ((T, K) ids, label): per character its id
    and the ids of the 2..K-grams ending at it (`WordEncoder.encode`)."""

    def __init__(self, words: tuple[str, ...], labels: np.ndarray, meta: dict) -> None:
        self.words, self.labels = words, labels
        self.vocabulary = WordEncoder(meta)

    def __len__(self) -> int:
        return len(self.words)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.vocabulary.encode(self.words[i]), torch.tensor(int(self.labels[i]))


def ngrams_of(marked: str, n: int) -> list[str]:
    """The n-grams of `marked` (a word between its markers) in order of their last character."""
    return [marked[i : i + n] for i in range(len(marked) - n + 1)]


def ngram_list(words, order: int, min_count: int) -> list[str]:
    """The 2..order-grams seen `min_count` times or more in `words` (with markers), sorted."""
    counts: dict[str, int] = {}
    for word in words:
        marked = BEGIN + nfc(word) + END
        for n in range(2, order + 1):
            for gram in ngrams_of(marked, n):
                counts[gram] = counts.get(gram, 0) + 1
    return sorted(g for g, count in counts.items() if count >= min_count)


class WordEncoder:
    """A run's (its meta's) character and n-gram `Vocabulary`s: characters 1.., n-grams 1..;
    0 ('<unk>') is a character the training words never hold, or an n-gram unseen or running
    past the start. Words are read in NFC, as `tokenize` reads every text."""

    def __init__(self, meta: dict) -> None:
        self.characters = Vocabulary([UNK, *meta["characters"]], "char", unk=True)
        self.ngrams = Vocabulary([UNK, *meta.get("ngrams", ())], "char", unk=True)
        self.order = meta.get("order", 1)

    def encode(self, word: str) -> Tensor:
        """(T, order) ids: column 0 the character, column n-1 the n-gram ending there."""
        marked = BEGIN + nfc(word) + END
        ids = [self.characters.encode(marked)]
        for n in range(2, self.order + 1):
            grams = self.ngrams.encode(ngrams_of(marked, n))
            # nothing ends before step n-1; a word shorter than n-1 steps has no n-gram at all
            ids.append(([UNKNOWN] * (n - 1) + grams)[: len(marked)])
        return torch.tensor(ids).T  # (T, order)


def load_data(config: LangidConfig, meta: dict | None = None) -> Data:
    """The word lists split 80/10/10; characters numbered from the training words (a saved
    run's own numbering when `meta` is its)."""
    lists = load_wordlists(config.words, LANGUAGES, data_dir=config.data_dir, spec=WORDFREQ)
    train, val, test = lists.split(config.split_seed)
    if meta is None:
        characters = "".join(sorted({c for w in train.words for c in BEGIN + nfc(w) + END}))
        meta = {"languages": list(lists.languages), "characters": characters}
        if config.ngrams > 1:
            grams = ngram_list(train.words, config.ngrams, config.ngram_min_count)
            meta |= {"order": config.ngrams, "ngrams": grams}
    parts = [Words(p.words, p.labels, meta) for p in (train, val, test)]
    return Data(
        *parts,
        identity={"source": lists.source, "sha256": lists.sha256},
        meta=meta,
        description=f"{len(lists)} words of {len(lists.languages)} languages ({lists.dropped} "
        f"in two or more top-{config.words} lists dropped): {len(train)} train, {len(val)} "
        f"validation, {len(test)} test, {len(meta['characters'])} characters, from "
        f"{lists.source}",
        labels=train.labels,
        class_names=list(meta["languages"]),
    )


def collate(batch: list[tuple[Tensor, Tensor]]) -> tuple[PackedSequence, Tensor]:
    """Words of (T_i, K) ids -> one PackedSequence of ids (sum T_i, K) and the labels (B,)."""
    words, labels = zip(*batch, strict=True)
    return pack_sequence(list(words), enforce_sorted=False), torch.stack(labels)


class WordClassifier(nn.Module):
    """A packed batch of words (character ids) -> (B, num_classes) logits.

    Characters enter one-hot (`embedding_dim` None) or embedded; with `ngrams` (the number of
    known n-grams) each step adds the embeddings of the n-grams ending at its character,
    x_t = E c_t + sum_n G g_t,n, and in training each g_t,n is read as unseen (a zero vector)
    with chance `ngram_dropout`. The word's vector joins the `pool`s of the top layer's states
    ("last": h_T of each direction, "max": max_t h_t, "mean": mean_t h_t), then dropout and a
    Linear.
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        make_rnn: Callable[[int], nn.Module],
        embedding_dim: int | None = None,
        dropout: float = 0.0,
        ngrams: int = 0,
        ngram_dropout: float = 0.0,
        pool: tuple[str, ...] = POOLS,
    ) -> None:
        super().__init__()
        if not pool or not set(pool) <= set(POOLS):
            raise ValueError(f"pool must be some of {', '.join(POOLS)}, got {pool!r}")
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, embedding_dim) if embedding_dim else None
        self.ngram_embedding = None
        if ngrams:
            # zeros: an n-gram no training step reaches (under cv, one only the held-out fold
            # holds) stays what an unseen one is, a zero vector
            self.ngram_embedding = nn.Embedding(ngrams + 1, embedding_dim, padding_idx=UNKNOWN)
            nn.init.zeros_(self.ngram_embedding.weight)
        self.rnn = make_rnn(embedding_dim or vocab_size)
        self.directions = 2 if self.rnn.bidirectional else 1
        self.dropout = nn.Dropout(dropout)
        self.ngram_dropout = ngram_dropout
        self.pool = pool
        self.head = nn.Linear(len(pool) * self.directions * self.rnn.hidden_size, num_classes)

    def forward(self, words: PackedSequence) -> Tensor:
        ids = words.data  # (N, K) every step of every word, N = sum of lengths
        if self.embedding is not None:
            x = self.embedding(ids[:, 0])  # (N, E)
        else:
            x = F.one_hot(ids[:, 0], self.vocab_size).to(self.head.weight.dtype)  # (N, V)
        if self.ngram_embedding is not None:
            grams = ids[:, 1:]  # (N, K-1)
            if self.training and self.ngram_dropout:
                dropped = torch.rand(grams.shape, device=grams.device) < self.ngram_dropout
                grams = grams.masked_fill(dropped, UNKNOWN)  # (N, K-1)
            x = x + self.ngram_embedding(grams).sum(dim=1)  # (N, E) + sum of (N, K-1, E)
        x = PackedSequence(self.dropout(x), *words[1:])  # same batch sizes and order
        out, h_n = self.rnn(x)  # (N, D*H) packed, (D*L, B, H) in the batch's order
        h, lengths = pad_packed_sequence(out, batch_first=True)  # (B, T, D*H), (B,)
        word = torch.cat([self._pooled(p, h, lengths, h_n) for p in self.pool], dim=-1)
        return self.head(self.dropout(word))  # (B, P*D*H) -> (B, C)

    def _pooled(self, pool: str, h: Tensor, lengths: Tensor, h_n: Tensor) -> Tensor:
        """(B, D*H): one pool of the padded top-layer states h (B, T, D*H)."""
        if pool == "last":
            return torch.cat(list(hidden_of(h_n)[-self.directions :]), dim=-1)  # h_T per direction
        if pool == "mean":
            return h.sum(dim=1) / lengths.to(h)[:, None]  # pads are 0 in h
        steps = torch.arange(h.shape[1])[None, :] < lengths[:, None]  # (B, T)
        mask = steps.to(h.device)[..., None]  # (B, T, 1)
        return h.masked_fill(~mask, float("-inf")).amax(dim=1)  # max over the word's steps


def build_model(config: LangidConfig, meta: dict) -> WordClassifier:
    make_rnn = partial(
        config.build_rnn,
        dropout=config.dropout if config.layers > 1 else 0.0,
        bidirectional=config.bidirectional,
    )
    return WordClassifier(
        vocab_size=len(meta["characters"]) + 1,
        num_classes=len(meta["languages"]),
        make_rnn=make_rnn,
        embedding_dim=config.embedding or None,
        dropout=config.dropout,
        ngrams=len(meta.get("ngrams", ())),
        ngram_dropout=config.ngram_dropout,
        pool=tuple(config.pool.split("+")),
    )


def classify(model: nn.Module, words: list[str], meta: dict, batch: int = 1000) -> Tensor:
    """(len(words), C) probabilities of each language, in eval mode without gradients."""
    vocabulary = WordEncoder(meta)
    return probabilities(model, [vocabulary.encode(w) for w in words], batch)


def probabilities(model: nn.Module, encoded: list[Tensor], batch: int = 1000) -> Tensor:
    """(len(encoded), C) probabilities of each language for words already encoded ((T_i, K)
    ids each, `WordEncoder.encode`), in eval mode without gradients."""
    model = getattr(model, "module", model)
    was_training = model.training
    model.eval()
    parts = []
    with torch.no_grad():
        for i in range(0, len(encoded), batch):
            packed = pack_sequence(encoded[i : i + batch], enforce_sorted=False)
            parts.append(model(packed).softmax(dim=-1))  # (b, C)
    model.train(was_training)
    return torch.cat(parts)  # (W, C)


def test_metrics(config: LangidConfig, data: Data, model: nn.Module, scored: EvalResult) -> dict:
    """Macro-F1, each language's accuracy (its recall) and the paired comparison with the
    baseline (`versus_baseline`, the baseline fitted afresh) on the whole test split; the
    comparison only when the loop scored the whole split too (not a --dry-run's two batches)."""
    truth = data.test.labels
    predicted = classify(model, list(data.test.words), data.meta).argmax(dim=-1).numpy()
    labels = list(range(len(data.class_names)))
    per_language = recall_score(truth, predicted, labels=labels, average=None, zero_division=0)
    metrics = {
        "test_macro_f1": float(f1_score(truth, predicted, labels=labels, average="macro")),
        "test_acc_per_language": {
            language: round(float(a), 4)
            for language, a in zip(data.class_names, per_language, strict=True)
        },
    }
    if scored.count == len(truth):  # a full run, not a dry one
        baseline = fit_baseline(data).predict(data.test.words)
        metrics |= versus_baseline(truth, predicted, baseline)
    return metrics


def versus_baseline(
    truth: np.ndarray, rnn_predicted: np.ndarray, baseline_predicted: np.ndarray
) -> dict:
    """The words only the RNN gets right, those only the baseline gets right, and McNemar's
    exact test on them: the chance of a split at least that uneven if both methods had the
    same error rate on words drawn like these (two-sided binomial test of the discordant
    words at 1/2). p > 0.05: no difference shown, which is not the same as none."""
    rnn_right, baseline_right = rnn_predicted == truth, baseline_predicted == truth
    rnn_only = int(np.sum(rnn_right & ~baseline_right))
    baseline_only = int(np.sum(~rnn_right & baseline_right))
    discordant = rnn_only + baseline_only
    p = binomtest(rnn_only, discordant).pvalue if discordant else 1.0
    return {
        "test_right_rnn_only": rnn_only,
        "test_right_baseline_only": baseline_only,
        "test_mcnemar_p": float(p),
    }


def fit_baseline(data: Data) -> Pipeline:
    """A bag of the word's character 1-4-grams, the word padded by a space at each end
    (char_wb, as '^' and '$' mark it for the RNN), tf-idf weighted (sublinear), and a linear
    SVM (random_state=0, for bit-for-bit repeatability), fitted on the training split."""
    pipeline = make_pipeline(
        TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), sublinear_tf=True),
        LinearSVC(C=0.5, random_state=0),
    )
    return pipeline.fit(data.train.words, data.train.labels)


def baselines(config: LangidConfig, data: Data) -> dict[str, dict[str, float]]:
    """The baseline (`fit_baseline`, fitted on train): accuracy and macro-F1 on validation and
    test."""
    baseline = fit_baseline(data)
    scores = {}
    for part, split in (("val", data.val), ("test", data.test)):
        predicted = baseline.predict(split.words)
        scores[f"{part}_acc"] = float(np.mean(predicted == split.labels))
        scores[f"{part}_macro_f1"] = float(f1_score(split.labels, predicted, average="macro"))
    return {BASELINE: scores}


def default_name(config: LangidConfig) -> str:
    return "langid" if config.impl == "rnnlab" else f"langid-{config.impl}"


@dataclass
class PredictOptions:
    text: str | None = option(None, "one or more words, separated by spaces")


def predict(saved: SavedRun, options: PredictOptions) -> None:
    """Print, for each word of --text, its three likeliest languages and their probabilities."""
    words = (options.text or "").lower().split()
    if not words:
        raise ValueError("a langid run predicts from --text WORDS (at least one word)")
    languages = saved.record.meta["languages"]
    probs = classify(saved.model, words, saved.record.meta)  # (W, C)
    for word, p in zip(words, probs, strict=True):
        best = p.argsort(descending=True)[:TOP].tolist()
        print(f"{printable(word)}: " + ", ".join(f"{languages[i]} {p[i]:.3f}" for i in best))


@dataclass
class ExplainOptions:
    text: str | None = option(
        None,
        f"words to show, separated by spaces; default: {EXPLAINED_WORDS} test words, some of "
        "them ones the model gets wrong",
    )


def explain(saved: SavedRun, options: ExplainOptions) -> dict:
    """The explain page's data: for each word, the languages' probabilities after each of its
    steps (the model applied to the steps read so far, as though the word ended there), and
    with each letter removed in turn."""
    meta = saved.record.meta
    words = (options.text or "").lower().split()
    labels: list[int | None] = [None] * len(words)
    if not words:
        test = load_data(saved.config, meta).test
        predicted = classify(saved.model, list(test.words), meta).argmax(dim=-1)  # (N,)
        right = predicted.numpy() == test.labels  # (N,)
        order = _round_robin(test.labels)  # one word of each language in turn
        chosen = [order[j] for j in some_wrong(right[order].tolist(), EXPLAINED_WORDS)]
        words = [test.words[i] for i in chosen]
        labels = [int(test.labels[i]) for i in chosen]
    vocabulary = WordEncoder(meta)
    shown = []
    for word, label in zip(words, labels, strict=True):
        ids = vocabulary.encode(word)  # (T, K): n-grams look back only, so a prefix is ids[:t]
        read = probabilities(saved.model, [ids[:t] for t in range(1, len(ids) + 1)])  # (T, C)
        without = [word[:i] + word[i + 1 :] for i in range(len(word))]
        removed = classify(saved.model, without, meta).tolist() if without else []  # (len, C)
        shown.append(
            {
                "word": word,
                "label": label,
                "steps": list(BEGIN + word + END),
                "probs": read.tolist(),
                "removed": removed,  # row i: the word without its letter i
            }
        )
    direction = "both directions" if saved.config.bidirectional else "one direction"
    return {
        "kind": "langid",
        "title": "langid: a word's language as the model reads it",
        "how": [
            f"The RNN reads a word's characters in {direction}, between the markers ^ and $, "
            "and its Linear maps the pooled states to the languages. The slider shows what "
            "the model answers for the characters read so far, as though the word ended "
            "there"
            + (
                " (the backward direction then reads those characters only)."
                if saved.config.bidirectional
                else ": for a model that reads one way this is its state as it reads."
            )
        ],
        "removal_how": "Each letter removed in turn, the word classified again: the bar is "
        "the probability of the whole word's answer without that letter; a letter whose "
        "removal drops it is one the answer rests on.",
        "languages": list(meta["languages"]),
        "bidirectional": saved.config.bidirectional,
        "words": shown,
    }


def _round_robin(labels: np.ndarray) -> list[int]:
    """The indices of `labels` (N,) reordered so that the classes take turns: the first of
    each, then the second of each, and so on."""
    counts: dict[int, int] = {}
    turn = []  # how many of its class come before each sample
    for c in labels.tolist():
        turn.append(counts.get(c, 0))
        counts[c] = turn[-1] + 1
    return sorted(range(len(labels)), key=lambda i: (turn[i], labels[i]))


EXPERIMENT = Experiment(
    name="langid",
    help="a word's language from its characters: 18 languages, packed batches -> RNN -> Linear",
    config=LangidConfig,
    train_defaults=dict(
        epochs=25, optimizer="adamw", lr=2e-3, weight_decay=0.1, schedule="cosine", grad_clip=1.0
    ),
    load_data=load_data,
    build_model=build_model,
    default_name=default_name,
    collate=collate,
    predict=RunCommand("predict", "the likeliest languages of each word", PredictOptions, predict),
    explain=Explain(
        "a page of each word's languages as it is read, and with each letter removed",
        ExplainOptions,
        explain,
    ),
    evaluate_fields=("data_dir",),
    # what runs from before --ngrams, --ngram-min-count, --pool, --cell and --init did
    legacy_defaults=dict(
        ngrams=1,
        ngram_dropout=0.0,
        ngram_min_count=2,
        pool="last+max+mean",
        cell="rnn",
        init="default",
    ),
    baselines=baselines,
    test_metrics=test_metrics,
    search_space={
        "cell": list(CELLS),
        "lr": {"low": 5e-4, "high": 5e-3, "log": True},
        "weight_decay": {"low": 0.0, "high": 0.3},
        "dropout": {"low": 0.0, "high": 0.5},
        "ngram_dropout": {"low": 0.0, "high": 0.6},
        "hidden": [128, 256, 384],
    },
)
