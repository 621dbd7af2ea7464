"""The `rnnlab` command line: parses argv and hands each command to the code that does it.

The experiment commands (`rnnlab NAME`, `cv NAME`, `evaluate`, `predict`, an experiment's own
commands) are derived from `rnnlab.experiments.EXPERIMENTS` in `cli.commands`; `data` and
`bench` have modules of their own. Nothing imports this package; it is the top of the house.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from rnnlab.cli import bench, commands, data, tune
from rnnlab.cli.options import Parser, read_config_file
from rnnlab.data import DatasetUnavailableError
from rnnlab.experiments import EXPERIMENTS, Experiment
from rnnlab.experiments.experiment import find_experiment
from rnnlab.files import CONFIG_FILE
from rnnlab.train import CheckpointError, NonFiniteLossError, RunFolderBusyError, RunRecord

# What a user's input or files can cause: reported as one line and exit status 2. Anything
# else is a bug and keeps its traceback.
USER_ERRORS = (
    ValueError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    DatasetUnavailableError,
    CheckpointError,
    NonFiniteLossError,
    RunFolderBusyError,
)


def build_parser(
    experiments: tuple[Experiment, ...] = EXPERIMENTS, saved: Experiment | None = None
) -> Parser:
    parser = Parser(prog="rnnlab", description="Recurrent neural networks from their equations.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parsers(subparsers, experiments, saved)
    tune.add_parser(subparsers, experiments)
    data.add_parser(subparsers)
    bench.add_parser(subparsers)
    parser.set_defaults(experiments=experiments)
    return parser


def main(argv: Sequence[str] | None = None, experiments=EXPERIMENTS) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else ""
    try:
        parser = build_parser(experiments, _saved_experiment(argv, experiments))
        args = parser.parse_args(argv)
        if getattr(args, "config", None):
            settings = read_config_file(args.config, args.settings_classes, args.experiment_name)
            args.parser.set_defaults(**settings)  # the flags typed still win
            args = parser.parse_args(argv)
        return args.run(args)
    except USER_ERRORS as error:  # a bad value or file, said in one line: no traceback
        message = " ".join(str(error).split("\n"))
        print(f"rnnlab {command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: the user's choice, not a bug; checkpoints are whole
        resume = (
            " (--resume continues from the last finished epoch)"
            if command in {e.name for e in experiments}
            else ""
        )
        print(f"rnnlab {command}: interrupted{resume}", file=sys.stderr)
        return 130  # 128 + SIGINT, as shells report it
    except BrokenPipeError:  # `rnnlab ... | head` closed the pipe: the reader is done, not us
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _saved_experiment(argv: list[str], experiments) -> Experiment | None:
    """For a command on a run folder (evaluate, predict, ...), the experiment of the first
    argument that is a run folder, so that the command takes that experiment's options."""
    run_commands = {"evaluate"} | {c.name for e in experiments for c in e.run_commands()}
    if not argv or argv[0] not in run_commands:
        return None
    candidates = [token for token in argv[1:] if not token.startswith("-")]
    for token in candidates:
        if (Path(token) / CONFIG_FILE).is_file():
            record = RunRecord.read(token)
            return find_experiment(experiments, record.experiment, token)
    if candidates:  # no run folder among them: say so, naming the first, before parsing
        RunRecord.read(candidates[0])
    return None
