"""Command-line options shared by the experiment commands: how to train, where to write."""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile

import torch

from rnnlab.models import IMPLS
from rnnlab.train import OPTIMIZERS, SCHEDULES, TrainConfig

DRY_RUN_BATCHES = 2  # batches per epoch (and per evaluation) under --dry-run


def add_rnn_arguments(group, defaults) -> None:
    """The RNN's options every experiment shares, with the defaults of its config dataclass."""
    group.add_argument("--hidden", type=int, default=defaults.hidden, help="hidden units per layer")
    group.add_argument("--layers", type=int, default=defaults.layers, help="stacked RNN layers")
    group.add_argument(
        "--nonlinearity",
        choices=("tanh", "relu"),
        default=defaults.nonlinearity,
        help="the RNN's activation",
    )
    group.add_argument(
        "--impl",
        choices=IMPLS,
        default=defaults.impl,
        help="rnnlab's fused path, its reference loop, or torch.nn.RNN",
    )


def config_from_args(config_class, args: argparse.Namespace):
    """An experiment's config dataclass filled from the options of the same names."""
    return config_class(**{f.name: getattr(args, f.name) for f in dataclasses.fields(config_class)})


def add_train_arguments(
    parser: argparse.ArgumentParser,
    *,
    epochs: int,
    lr: float,
    optimizer: str = "adam",
    schedule: str = "none",
    grad_clip: float = 0.0,
) -> None:
    """The training loop's options, with this experiment's defaults."""
    group = parser.add_argument_group("training")
    group.add_argument("--epochs", type=int, default=epochs, help="passes over the training data")
    group.add_argument("--optimizer", choices=OPTIMIZERS, default=optimizer, help="optimiser")
    group.add_argument(
        "--lr",
        type=float,
        default=lr,
        help="learning rate (the peak rate under --schedule onecycle)",
    )
    group.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    group.add_argument("--weight-decay", type=float, default=0.0, help="weight decay")
    group.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default=schedule,
        help="learning-rate schedule over the run",
    )
    group.add_argument(
        "--grad-clip",
        type=float,
        default=grad_clip,
        help="clip the gradient norm at this value; 0 disables",
    )
    group.add_argument("--seed", type=int, default=0, help="seed of every random stream")
    group.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda' or 'cuda:N'")
    group.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads; 0 keeps torch's default"
    )
    run = parser.add_argument_group("run folder")
    run.add_argument(
        "--name",
        default=None,
        help="run name, the folder is OUT_DIR/NAME; None: the experiment's own "
        "(mnist, fashion-mnist-torch, seq2seq, cv-mnist, ...)",
    )
    run.add_argument("--out-dir", default="runs", help="parent folder of the runs")
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in OUT_DIR/NAME from its last checkpoint",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument("--no-plots", action="store_true", help="no PNG plots at the end")
    run.add_argument(
        "--dry-run",
        action="store_true",
        help=f"one epoch of {DRY_RUN_BATCHES} batches into a temporary folder: "
        "checks the command in seconds",
    )


def train_config_from_args(args: argparse.Namespace, default_name: str) -> TrainConfig:
    """The TrainConfig the options describe; sets torch's thread count if asked."""
    if args.threads < 0:
        raise SystemExit(f"--threads must be >= 0, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    out_dir = args.out_dir
    if args.dry_run:
        out_dir = tempfile.mkdtemp(prefix="rnnlab-dry-run-")
        if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 is the one that writes
            print(f"dry run: {DRY_RUN_BATCHES} batches, one epoch, written to {out_dir}")
    return TrainConfig(
        name=args.name or default_name,
        out_dir=out_dir,
        epochs=1 if args.dry_run else args.epochs,
        optimizer=args.optimizer,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        grad_clip=args.grad_clip,
        device=args.device,
        seed=args.seed,
        resume=args.resume,
        limit_batches=DRY_RUN_BATCHES if args.dry_run else 0,
        progress=not args.no_progress,
        plots=not args.no_plots,
    )
