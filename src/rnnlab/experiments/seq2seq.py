"""Sequence to sequence: `rnnlab seq2seq` learns "hello" -> "ohlol", 100% from its 2nd epoch.

    rnnlab seq2seq                             # 15 epochs, 5.5 s; docs/results/seq2seq.md
    rnnlab seq2seq --embedding 10              # the tutorial's second model
    rnnlab predict runs/seq2seq --text hello   # prints ohlol

One output token per input token, as in the tutorial. Characters (or words) become ids from
one vocabulary built over sources and targets; the tagger reads them one-hot (the tutorial's
first model) or through an Embedding (its second), runs an RNN, and classifies every step.
Pairs of unequal length in one batch are padded: sources with id 0, targets with IGNORE_INDEX,
which the training loop does not score. The pairs are also the validation set: a model is
scored after its epoch's updates, so best.pt is a model that really tags the pairs that well.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pad_sequence

from rnnlab.data import LEVELS, PairDataset, Vocabulary, read_pairs, sequence_pairs, tokenize
from rnnlab.experiments.experiment import Data, Experiment, Explain, RunCommand, SavedRun
from rnnlab.models import CELLS, RNNOptions, hidden_option
from rnnlab.options import check_choices, check_range, option
from rnnlab.train import IGNORE_INDEX

SHOWN_CHARACTERS = 200  # a prediction longer than this is cut in the epoch line and metrics
EXPLAINED_PAIRS = 12  # pairs the explain page shows by default


@dataclass
class Seq2SeqConfig(RNNOptions):
    hidden: int = hidden_option(8)
    input: str = option("hello", "the source sequence")
    target: str = option("ohlol", "its target, a token per source token")
    pairs: str | None = option(
        None, "a TSV file of 'source<TAB>target' lines, instead of --input/--target"
    )
    level: str = option("char", "tokens are characters or space-separated words", choices=LEVELS)
    embedding: int = option(0, "embedding size; 0 feeds the tokens one-hot")
    batch_size: int = option(32, "pairs per batch")

    def __post_init__(self) -> None:
        check_choices(self)
        self.check_rnn()
        check_range("batch_size", self.batch_size, 1)
        check_range("embedding", self.embedding, 0)


def load_data(config: Seq2SeqConfig, meta: dict | None = None) -> Data:
    """The pairs (of --pairs FILE, else --input/--target) as ids of one vocabulary over sources
    and targets, as in the tutorial (h, e, l, o); a saved run's own vocabulary when `meta` is
    its."""
    if config.pairs is not None:
        pairs = read_pairs(config.pairs, config.level)
        identity = {"source": config.pairs, "sha256": {"pairs": _sha256(config.pairs)}}
    else:
        pairs = sequence_pairs([(config.input, config.target)], config.level)
        identity = {"source": "--input/--target"}
    texts = [text for p in pairs for text in (p.source, p.target)]
    if meta is None:
        vocab = Vocabulary.build(texts, config.level)
    else:
        vocab = Vocabulary.from_dict(meta["vocabulary"])
        check_known(vocab, texts, f"pairs file {config.pairs}" if config.pairs else "--input")
    dataset = PairDataset(pairs, vocab)
    first = pairs[0]
    return Data(
        train=dataset,
        val=dataset,
        test=None,
        identity=identity,
        meta={"vocabulary": vocab.to_dict()},
        description=f"{len(pairs)} pair(s), vocabulary of {len(vocab)}: "
        f"{shorten(first.source)!r} -> {shorten(first.target)!r}",
        class_names=[vocab.token(i) for i in range(len(vocab))],
    )


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class SequenceTagger(nn.Module):
    """Tokens in, one class per step out: (B, T) ids -> (B, T, num_classes) logits.

    With `embedding_dim` None the tokens enter one-hot (the tutorial's first model);
    otherwise through a learned `nn.Embedding` (its second). `make_rnn(input_size)` builds
    the batch-first recurrent network of any cell; a Linear maps every h_t to logits.
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        make_rnn: Callable[[int], nn.Module],
        embedding_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, embedding_dim) if embedding_dim else None
        self.rnn = make_rnn(embedding_dim or vocab_size)
        self.head = nn.Linear(self.rnn.hidden_size, num_classes)

    def forward(self, tokens: Tensor) -> Tensor:
        if self.embedding is not None:
            x = self.embedding(tokens)  # (B, T, E)
        else:
            x = F.one_hot(tokens, self.vocab_size).to(self.head.weight.dtype)  # (B, T, V)
        h, _ = self.rnn(x)  # (B, T, H)
        return self.head(h)  # (B, T, C)


def build_model(config: Seq2SeqConfig, meta: dict) -> SequenceTagger:
    size = len(Vocabulary.from_dict(meta["vocabulary"]))
    return SequenceTagger(size, size, config.build_rnn, embedding_dim=config.embedding or None)


def collate(batch: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Pairs of (T_i,) ids -> sources (B, T) padded with 0, targets (B, T) with IGNORE_INDEX."""
    sources, targets = zip(*batch, strict=True)
    return (
        pad_sequence(list(sources), batch_first=True, padding_value=0),  # (B, T)
        pad_sequence(list(targets), batch_first=True, padding_value=IGNORE_INDEX),  # (B, T)
    )


def check_known(vocab: Vocabulary, texts: list[str], what: str) -> None:
    """Refuse texts with tokens the vocabulary never saw, naming them and the known ones."""
    unknown = sorted({t for text in texts for t in tokenize(text, vocab.level) if t not in vocab})
    if unknown:
        raise ValueError(
            f"{what} holds tokens this run was never trained on: {', '.join(map(repr, unknown))}; "
            f"it knows {', '.join(map(repr, vocab.tokens))}"
        )


def translate(model: SequenceTagger, vocab: Vocabulary, text: str) -> str:
    """The model's output for one source text: the arg-max token at every step."""
    ids = torch.tensor([vocab.encode(text)], dtype=torch.int64)  # (1, T)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        predicted = model(ids).argmax(dim=-1)[0]  # (T,)
    model.train(was_training)
    joiner = "" if vocab.level == "char" else " "
    return joiner.join(vocab.token(int(i)) for i in predicted)


def shorten(text: str) -> str:
    """`text`, cut to SHOWN_CHARACTERS with an ellipsis: what an epoch line shows."""
    return text if len(text) <= SHOWN_CHARACTERS else text[:SHOWN_CHARACTERS] + "..."


def show_prediction(config: Seq2SeqConfig, data: Data, model, metrics, run_dir) -> dict:
    """The first pair's prediction after each epoch, for the log line and metrics."""
    vocab = Vocabulary.from_dict(data.meta["vocabulary"])
    source = data.train.pairs[0].source
    return {"predicted": shorten(translate(_unwrapped(model), vocab, source))}


def _unwrapped(model):
    return getattr(model, "module", model)


@dataclass
class PredictOptions:
    text: str | None = option(None, "the source sequence to tag")


def predict(saved: SavedRun, options: PredictOptions) -> None:
    """Print the output sequence for one source text."""
    if not options.text:
        raise ValueError("a seq2seq run predicts from --text SOURCE (a non-empty text)")
    vocab = Vocabulary.from_dict(saved.record.meta["vocabulary"])
    check_known(vocab, [options.text], f"--text {shorten(options.text)!r}")
    print(translate(saved.model, vocab, options.text))


@dataclass
class ExplainOptions:
    text: str | None = option(
        None, f"a source sequence to show; default: the run's first {EXPLAINED_PAIRS} pairs"
    )


def explain(saved: SavedRun, options: ExplainOptions) -> dict:
    """The explain page's data: the output distribution (softmax of the logits) at every step
    of each pair's source, beside its target."""
    vocab = Vocabulary.from_dict(saved.record.meta["vocabulary"])
    if options.text:
        check_known(vocab, [options.text], f"--text {shorten(options.text)!r}")
        pairs = [(options.text, None)]
    else:
        data = load_data(saved.config, saved.record.meta)
        pairs = [(p.source, p.target) for p in data.train.pairs[:EXPLAINED_PAIRS]]
    shown = []
    for source, target in pairs:
        ids = torch.tensor([vocab.encode(source)], dtype=torch.int64)  # (1, T)
        probs = saved.model(ids).softmax(dim=-1)[0]  # (T, V)
        shown.append(
            {
                "source": tokenize(source, vocab.level),
                "target": None if target is None else tokenize(target, vocab.level),
                "predicted": probs.argmax(dim=-1).tolist(),
                "probs": probs.tolist(),
            }
        )
    return {
        "kind": "seq2seq",
        "title": "seq2seq: what the tagger outputs at each step",
        "how": [
            "The tagger reads the input one token at a time and, after each, outputs a "
            "distribution over the vocabulary (a softmax of the Linear applied to h_t). Each "
            "column of the grid is one step; move the slider to read a step's numbers."
        ],
        "vocab": list(vocab.tokens),
        "joiner": "" if vocab.level == "char" else " ",
        "pairs": shown,
    }


EXPERIMENT = Experiment(
    name="seq2seq",
    help='a per-step tagger: "hello" -> "ohlol", one-hot or embedded',
    config=Seq2SeqConfig,
    # The tutorial's recipe: Adam at 0.1 for 15 epochs, one step each on the single pair.
    train_defaults=dict(epochs=15, lr=0.1),
    load_data=load_data,
    build_model=build_model,
    collate=collate,
    on_epoch_end=show_prediction,
    predict=RunCommand("predict", "tag one source text", PredictOptions, predict),
    explain=Explain("a page of each step's output distribution", ExplainOptions, explain),
    evaluate_fields=("pairs",),
    where_fields=(),
    # what runs from before --cell (and --init) did
    legacy_defaults=dict(cell="rnn", init="default"),
    search_space={
        "cell": list(CELLS),
        "lr": {"low": 0.01, "high": 0.3, "log": True},
        "hidden": [4, 8, 16, 32],
        "embedding": [0, 4, 8],
    },
)
