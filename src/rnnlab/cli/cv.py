"""`rnnlab cv mnist|seq2seq`: k-fold cross-validation of an experiment, with its own options.

This is where an experiment meets `rnnlab.crossval`: the command builds the experiment's
config, data and model factory, and hands them to `cross_validate`, which knows neither.
"""

from __future__ import annotations

import argparse
import dataclasses
from functools import partial
from pathlib import Path

from rnnlab.cli import mnist as mnist_cli
from rnnlab.cli import seq2seq as seq2seq_cli
from rnnlab.cli.options import add_train_arguments, train_config_from_args
from rnnlab.crossval import CURVES_FILE, CV_FILE, CVResult, cross_validate, fold_dir, format_table
from rnnlab.data import PairDataset
from rnnlab.experiments import mnist, seq2seq
from rnnlab.experiments.saved import save_experiment
from rnnlab.train import TrainConfig

DESCRIPTION = (
    "Train a fresh model on k-1 folds and validate it on the held-out one, for each fold; "
    "print each fold's scores and their mean ± std. Writes OUT_DIR/NAME/cv.json, "
    "cv_curves.png and a run folder fold-<i> per fold (NAME: cv-<experiment> unless --name "
    "says otherwise). Running the same command again skips "
    "the finished folds and continues the others. Under torchrun the ranks share the folds."
)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "cv",
        help="k-fold cross-validation of an experiment: per-fold scores and mean ± std",
        description=DESCRIPTION,
    )
    experiments = parser.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")

    m = experiments.add_parser(
        "mnist",
        help="cross-validate the row classifier on the training split",
        description=DESCRIPTION,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    mnist_cli.add_experiment_arguments(m)
    m.set_defaults(val_size=0)  # the held-out fold is the validation set
    add_train_arguments(m, **mnist.TRAIN_DEFAULTS)
    group = add_cv_arguments(m)
    group.add_argument(
        "--no-stratify",
        action="store_true",
        help="plain folds; by default each fold keeps the classes' proportions",
    )
    group.add_argument(
        "--test",
        action="store_true",
        help="also score each fold's best model on the test split",
    )
    m.set_defaults(run=run_mnist)

    s = experiments.add_parser(
        "seq2seq",
        help="cross-validate the per-step tagger over the pairs of --pairs FILE",
        description=DESCRIPTION + " The pairs are folded (at least --folds of them); folds are "
        "not stratified, as targets are per step.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    seq2seq_cli.add_experiment_arguments(s)
    add_train_arguments(s, **seq2seq.TRAIN_DEFAULTS)
    add_cv_arguments(s)
    s.set_defaults(run=run_seq2seq)


def add_cv_arguments(parser: argparse.ArgumentParser):
    """Options of every cv command; returns their group for experiment-specific additions."""
    group = parser.add_argument_group("cross-validation")
    group.add_argument("--folds", type=int, default=5, help="k, the number of folds")
    group.add_argument(
        "--workers",
        type=int,
        default=1,
        help="folds trained at once, in separate processes sharing torch's threads",
    )
    group.add_argument(
        "--no-shuffle",
        action="store_true",
        help="contiguous folds in data order; by default the samples are shuffled by --seed",
    )
    return group


def _check_cv_args(args: argparse.Namespace) -> None:
    if args.folds < 2:
        raise SystemExit(f"--folds must be at least 2, got {args.folds}")
    if args.workers < 1:
        raise SystemExit(f"--workers must be at least 1, got {args.workers}")


def run_mnist(args: argparse.Namespace) -> int:
    _check_cv_args(args)
    if args.val_size:
        raise SystemExit(
            f"--val-size must be 0 under cv, where the held-out fold validates; got {args.val_size}"
        )
    config = mnist_cli.config_from_args(args)
    train_config = train_config_from_args(args, f"cv-{mnist_cli.default_name(config)}")
    data = mnist.load_data(config)
    train, _, test = mnist.splits(config, data)
    stratified = not args.no_stratify
    print(
        f"{data.name}: {len(train)} training images in {args.folds} "
        f"{'stratified ' if stratified else ''}folds, "
        + (f"{len(test)} test images" if args.test else "test split unused (see --test)")
        + f", from {data.source}"
    )
    result = cross_validate(
        partial(mnist.build_model, config),
        train,
        data.train_labels if stratified else None,
        folds=args.folds,
        config=train_config,
        make_loader=partial(mnist.loader, batch_size=config.batch_size),
        shuffle=not args.no_shuffle,
        test_dataset=test if args.test else None,
        workers=args.workers,
        class_names=list(data.classes),
        record={"experiment": mnist.NAME, "config": dataclasses.asdict(config)},
    )
    if result is not None:
        extras = {"classes": list(data.classes)}
        _finish(result, train_config, mnist.NAME, dataclasses.asdict(config), extras)
    return 0


def run_seq2seq(args: argparse.Namespace) -> int:
    _check_cv_args(args)
    config = seq2seq_cli.config_from_args(args)
    pairs = seq2seq.load_pairs(config)
    if args.folds > len(pairs):
        raise SystemExit(
            f"--folds {args.folds} needs at least {args.folds} pairs to fold, got {len(pairs)}; "
            "give more with --pairs FILE (one 'source<TAB>target' per line)"
        )
    train_config = train_config_from_args(args, f"cv-{seq2seq.NAME}")
    vocab = seq2seq.build_vocabulary(pairs, config.level)
    print(f"{len(pairs)} pairs in {args.folds} folds, vocabulary of {len(vocab)}")
    result = cross_validate(
        partial(seq2seq.build_model, config, vocab),
        PairDataset(pairs, vocab),
        None,  # a pair has a target per step, no one class to stratify by
        folds=args.folds,
        config=train_config,
        make_loader=partial(seq2seq.loader, batch_size=config.batch_size),
        shuffle=not args.no_shuffle,
        workers=args.workers,
        class_names=[vocab.token(i) for i in range(len(vocab))],
        record={
            "experiment": seq2seq.NAME,
            "config": dataclasses.asdict(config),
            "vocabulary": vocab.to_dict(),
        },
    )
    if result is not None:
        extras = {"vocabulary": vocab.to_dict()}
        _finish(result, train_config, seq2seq.NAME, dataclasses.asdict(config), extras)
    return 0


def _finish(
    result: CVResult, train_config: TrainConfig, experiment: str, config: dict, extras: dict
) -> None:
    """Make each fold folder a run `rnnlab evaluate` and `predict` accept; print the table."""
    # Written once every fold is done (not before: a cv run refused for other settings must
    # not touch the folders of the one already there).
    for fold in result.folds:
        save_experiment(fold_dir(result.run_dir, fold.fold), experiment, config, **extras)
    rows = [dataclasses.asdict(fold) for fold in result.folds]
    print(format_table(rows, result.summary))
    acc = result.summary["val_acc"]
    files = [CV_FILE] + ([CURVES_FILE] if train_config.plots else [])
    print(
        f"validation accuracy {100 * acc['mean']:.2f}% ± {100 * acc['std']:.2f}% over "
        f"{len(rows)} folds; {' and '.join(files)} in {Path(result.run_dir)}"
    )
