"""`rnnlab seq2seq`: teach an RNN to turn one sequence into another, a token per step."""

from __future__ import annotations

import argparse

from rnnlab.cli.options import add_train_arguments, train_config_from_args
from rnnlab.experiments import seq2seq
from rnnlab.models import IMPLS

# The seed's recipe: Adam at 0.1 for 15 epochs, one step each on the single pair (shared with
# `rnnlab cv seq2seq`).
TRAIN_DEFAULTS = dict(epochs=15, lr=0.1)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "seq2seq",
        help='the seed\'s per-step tagger: "hello" -> "ohlol", one-hot or embedded',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_experiment_arguments(parser)
    add_train_arguments(parser, **TRAIN_DEFAULTS)
    parser.set_defaults(run=run)


def add_experiment_arguments(parser: argparse.ArgumentParser) -> None:
    """The experiment's own options (shared with `rnnlab cv seq2seq`)."""
    d = seq2seq.Seq2SeqConfig()
    group = parser.add_argument_group("experiment")
    group.add_argument("--input", default=d.input, help="the source sequence")
    group.add_argument("--target", default=d.target, help="its target, a token per source token")
    group.add_argument(
        "--pairs",
        default=d.pairs,
        help="a TSV file of 'source<TAB>target' lines, instead of --input/--target",
    )
    group.add_argument(
        "--level",
        choices=seq2seq.LEVELS,
        default=d.level,
        help="tokens are characters or space-separated words",
    )
    group.add_argument(
        "--embedding",
        type=int,
        default=d.embedding,
        help="embedding size; 0 feeds the tokens one-hot",
    )
    group.add_argument("--hidden", type=int, default=d.hidden, help="hidden units per layer")
    group.add_argument("--layers", type=int, default=d.layers, help="stacked RNN layers")
    group.add_argument(
        "--nonlinearity",
        choices=("tanh", "relu"),
        default=d.nonlinearity,
        help="the RNN's activation",
    )
    group.add_argument(
        "--impl",
        choices=IMPLS,
        default=d.impl,
        help="rnnlab's fused path, its reference loop, or torch.nn.RNN",
    )
    group.add_argument("--batch-size", type=int, default=d.batch_size, help="pairs per batch")


def config_from_args(args: argparse.Namespace) -> seq2seq.Seq2SeqConfig:
    return seq2seq.Seq2SeqConfig(
        input=args.input,
        target=args.target,
        pairs=args.pairs,
        level=args.level,
        embedding=args.embedding,
        hidden=args.hidden,
        layers=args.layers,
        nonlinearity=args.nonlinearity,
        impl=args.impl,
        batch_size=args.batch_size,
    )


def run(args: argparse.Namespace) -> int:
    seq2seq.run(config_from_args(args), train_config_from_args(args, seq2seq.NAME))
    return 0
