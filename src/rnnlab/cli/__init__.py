"""The `rnnlab` command line: parses argv and hands each subcommand to its module.

Nothing imports this package; it is the top of the house and may import everything below.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from rnnlab.cli import bench, cv, data, evaluate, mnist, predict, seq2seq
from rnnlab.data import DatasetUnavailableError
from rnnlab.train import CheckpointError, NonFiniteLossError

# What a user's input or files can cause: reported as one line and exit status 2. Anything
# else is a bug and keeps its traceback.
USER_ERRORS = (
    ValueError,
    FileNotFoundError,
    FileExistsError,
    DatasetUnavailableError,
    CheckpointError,
    NonFiniteLossError,
)

# Each command module has `add_parser(subparsers)` and `run(args) -> int`.
COMMANDS = (seq2seq, mnist, cv, evaluate, predict, data, bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rnnlab", description="Recurrent neural networks from their equations."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except USER_ERRORS as error:  # a bad value or file, said in one line: no traceback
        print(f"rnnlab {args.command}: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `rnnlab ... | head` closed the pipe: the reader is done, not us
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
