"""`rnnlab bench`: time rnnlab's RNN against torch.nn.RNN and print the table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from rnnlab.bench import SHAPES, Shape, run_benchmark
from rnnlab.bench_run import compare_with_tutorial
from rnnlab.files import atomic_write
from rnnlab.models import CELLS


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="time rnnlab's RNN, GRU or LSTM (fused and reference paths) against torch.nn's",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=torch.get_num_threads(),
        help="torch threads, pinned for the whole run",
    )
    parser.add_argument(
        "--cell",
        action="append",
        choices=CELLS,
        help="time this cell (repeatable); None: rnn, gru and lstm, a table each",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=7,
        help="interleaved rounds per measurement; the median is reported",
    )
    parser.add_argument(
        "--shape",
        action="append",
        choices=[s.name for s in SHAPES],
        help="run only these shapes (repeatable); None: all of them",
    )
    parser.add_argument(
        "--run",
        dest="whole_run",
        action="store_true",
        help="instead of the RNN table: the whole `rnnlab mnist` run with its defaults against "
        "one epoch of scripts/tutorial_mnist.py, the ratio, and one epoch by phase",
    )
    parser.add_argument("--seed", type=int, default=0, help="--run: the runs' seed")
    parser.add_argument("--json", metavar="FILE", help="also write the rows to this JSON file")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="tiny shapes and one round (--run: 2 batches of one epoch): checks the command, "
        "measures nothing",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {args.threads}")
    if args.rounds < 1:
        raise ValueError(f"--rounds must be at least 1, got {args.rounds}")
    if args.json and (Path(args.json).is_dir() or not Path(args.json).parent.is_dir()):
        raise ValueError(f"--json {args.json}: expected a file path in an existing folder")
    torch.set_num_threads(args.threads)
    if args.whole_run:
        figures = compare_with_tutorial(args.seed, dry_run=args.dry_run)
        if args.json:
            record = {"threads": args.threads, "torch": torch.__version__, **figures}
            atomic_write(args.json, json.dumps(record, indent=2).encode())
        return 0
    shapes = [s for s in SHAPES if not args.shape or s.name in args.shape]
    if args.dry_run:
        shapes = [
            Shape("dry-run", batch=2, steps=3, input_size=4, hidden_size=5, layers=2),
            Shape(
                "dry-packed", batch=3, steps=6, input_size=4, hidden_size=5, layers=2, packed=True
            ),
        ]
    cells = args.cell or list(CELLS)
    rows = []
    for cell in cells:
        if args.dry_run:
            rows += run_benchmark(shapes, cell, rounds=1, min_seconds=0.0)
        else:
            rows += run_benchmark(shapes, cell, rounds=args.rounds)
    if args.json:
        record = {"threads": args.threads, "torch": torch.__version__, "rows": rows}
        atomic_write(args.json, json.dumps(record, indent=2).encode())
    return 0
