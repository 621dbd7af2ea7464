"""`rnnlab seq2seq`: teach an RNN to turn one sequence into another, a token per step."""

from __future__ import annotations

import argparse

from rnnlab.cli import options
from rnnlab.cli.options import add_rnn_arguments, add_train_arguments, train_config_from_args
from rnnlab.experiments import seq2seq


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "seq2seq",
        help='the seed\'s per-step tagger: "hello" -> "ohlol", one-hot or embedded',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_experiment_arguments(parser)
    add_train_arguments(parser, **seq2seq.TRAIN_DEFAULTS)
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
    add_rnn_arguments(group, d)
    group.add_argument("--batch-size", type=int, default=d.batch_size, help="pairs per batch")


def config_from_args(args: argparse.Namespace) -> seq2seq.Seq2SeqConfig:
    return options.config_from_args(seq2seq.Seq2SeqConfig, args)


def run(args: argparse.Namespace) -> int:
    train_config = train_config_from_args(args, seq2seq.NAME)
    seq2seq.run(config_from_args(args), train_config, args.threads or None)
    return 0
