"""Sequence to sequence, one output token per input token: "hello" -> "ohlol" as in the seed.

Characters (or words) become ids from one vocabulary built over sources and targets; the
tagger reads them one-hot (the seed's first model) or through an Embedding (its second),
runs an RNN, and classifies every step. Pairs of unequal length in one batch are padded:
sources with id 0, targets with IGNORE_INDEX, which the training loop does not score.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader

from rnnlab.data import (
    LEVELS,
    PairDataset,
    SequencePair,
    Vocabulary,
    read_pairs,
    sequence_pairs,
    tokenize,
)
from rnnlab.experiments.saved import claim_experiment, load_weights
from rnnlab.models import SequenceTagger, check_rnn_settings
from rnnlab.train import (
    IGNORE_INDEX,
    FitResult,
    TrainConfig,
    fit,
    init_distributed,
    make_eval_loader,
    make_loader,
    seed_everything,
    wrap_model,
)

NAME = "seq2seq"
# The seed's recipe: Adam at 0.1 for 15 epochs, one step each on the single pair.
# TrainConfig fields; the command line shows them as its defaults.
TRAIN_DEFAULTS = dict(epochs=15, lr=0.1)


@dataclass
class Seq2SeqConfig:
    input: str = "hello"  # the source sequence of the single pair
    target: str = "ohlol"  # its target, one token per source token
    pairs: str | None = None  # a TSV file of 'source<TAB>target' lines; replaces input/target
    level: str = "char"  # tokens are 'char'acters or space-separated 'word's
    embedding: int = 0  # 0: one-hot inputs (the seed's first model); > 0: Embedding of this size
    hidden: int = 8  # hidden units in each RNN layer
    layers: int = 1  # stacked RNN layers
    nonlinearity: str = "tanh"  # 'tanh' or 'relu'
    impl: str = "rnnlab"  # 'rnnlab' (fused), 'rnnlab-reference' (per-step loop) or 'torch'
    batch_size: int = 32  # pairs per batch

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}; got {self.level!r}")
        check_rnn_settings(self.impl, self.nonlinearity, self.hidden, self.layers)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.embedding < 0:
            raise ValueError(f"embedding must be >= 0, got {self.embedding}")


def load_pairs(config: Seq2SeqConfig) -> list[SequencePair]:
    if config.pairs is not None:
        return read_pairs(config.pairs, config.level)
    return sequence_pairs([(config.input, config.target)], config.level)


def build_vocabulary(pairs: list[SequencePair], level: str) -> Vocabulary:
    """One vocabulary over sources and targets, as in the seed (h, e, l, o)."""
    return Vocabulary.build([text for p in pairs for text in (p.source, p.target)], level)


def build_model(config: Seq2SeqConfig, vocab: Vocabulary) -> SequenceTagger:
    return SequenceTagger(
        vocab_size=len(vocab),
        num_classes=len(vocab),
        hidden_size=config.hidden,
        num_layers=config.layers,
        embedding_dim=config.embedding or None,
        impl=config.impl,
        nonlinearity=config.nonlinearity,
    )


def collate(batch: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Pairs of (T_i,) ids -> sources (B, T) padded with 0, targets (B, T) with IGNORE_INDEX."""
    sources, targets = zip(*batch, strict=True)
    return (
        pad_sequence(list(sources), batch_first=True, padding_value=0),  # (B, T)
        pad_sequence(list(targets), batch_first=True, padding_value=IGNORE_INDEX),  # (B, T)
    )


def loader(dataset: PairDataset, batch_size: int, shuffle: bool) -> DataLoader:
    """Padded batches in one process (cross-validation folds, evaluation of a saved run)."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        collate_fn=collate,
        generator=torch.Generator(),
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


def run(config: Seq2SeqConfig, train_config: TrainConfig, threads: int | None = None) -> FitResult:
    """Train the tagger on the pairs, printing the first pair's prediction every epoch.

    Under torchrun the processes share each global batch (DDP); only rank 0 prints and writes.
    """
    pairs = load_pairs(config)
    vocab = build_vocabulary(pairs, config.level)
    seed_everything(train_config.seed)  # the initial weights, too, follow from the seed
    model = build_model(config, vocab)
    first = pairs[0]

    def show_prediction(epoch: int, _) -> dict:
        return {"predicted": translate(model, vocab, first.source)}

    dataset = PairDataset(pairs, vocab)
    with init_distributed(train_config.device, threads=threads) as ctx:
        if ctx.is_main:
            print(
                f"{len(pairs)} pair(s), vocabulary of {len(vocab)}: "
                f"{first.source!r} -> {first.target!r}"
            )
            run_dir = Path(train_config.out_dir) / train_config.name
            claim_experiment(run_dir, NAME, dataclasses.asdict(config), vocabulary=vocab.to_dict())
        # The pairs are also the validation set: a model is scored after its epoch's updates,
        # so best.pt is a model that really tags the pairs that well (the training accuracy is
        # measured on the weights before each update).
        return fit(
            wrap_model(model, ctx),
            make_loader(
                dataset,
                config.batch_size,
                shuffle=True,
                seed=train_config.seed,
                ctx=ctx,
                collate_fn=collate,
            ),
            make_eval_loader(dataset, config.batch_size, ctx=ctx, collate_fn=collate),
            train_config,
            on_epoch_end=show_prediction,
            class_names=[vocab.token(i) for i in range(len(vocab))],
        )


def restore(run_dir: str | Path, record: dict) -> tuple[Seq2SeqConfig, Vocabulary, SequenceTagger]:
    """The config, vocabulary and best model of a finished run, from its experiment.json."""
    config = Seq2SeqConfig(**record["config"])
    vocab = Vocabulary.from_dict(record["vocabulary"])
    model = build_model(config, vocab)
    load_weights(model, run_dir)
    return config, vocab, model.eval()
