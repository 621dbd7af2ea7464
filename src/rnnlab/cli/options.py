"""The command line derived from the config dataclasses: every `option` field becomes a flag
with its default and help; `--config FILE` (YAML or JSON) sets options; `--print-config`
prints the resolved settings.

Precedence: a field's default, then the experiment's recipe, then the --config file, then the
flags typed. A run's own config.json is a valid --config file, so a run can be repeated.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import yaml

from rnnlab.options import declared_fields

MAX_CONFIG_BYTES = 1 << 20  # a settings file is small; anything larger is refused unread
MAX_CONFIG_DEPTH = 20  # nesting of a settings file's lists and mappings; settings need 3


class UsageError(ValueError):
    """A command line argparse cannot read: said in one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but a command line it cannot read is one line (and --help's pointer), not
    the usage block: `main` prints it and returns 2."""

    def error(self, message: str):
        raise UsageError(f"{message} (see {self.prog} --help)")


@dataclasses.dataclass
class RunOptions:
    """Where a run lives and how it shows: options of every training command, not settings."""

    name: str | None = dataclasses.field(
        default=None,
        metadata={
            "help": "the run's folder is OUT_DIR/NAME; by default the experiment's own name, "
            "or NAME-2, NAME-3, ... when that folder holds a run with other settings",
            "choices": None,
        },
    )
    out_dir: str = dataclasses.field(
        default="runs", metadata={"help": "parent folder of the runs", "choices": None}
    )
    resume: bool = dataclasses.field(
        default=False,
        metadata={"help": "continue the run from its last checkpoint", "choices": None},
    )
    threads: int = dataclasses.field(
        default=0, metadata={"help": "torch CPU threads; 0 keeps torch's default", "choices": None}
    )
    progress: bool = dataclasses.field(
        default=True, metadata={"help": "a progress bar per epoch", "choices": None}
    )
    plots: bool = dataclasses.field(
        default=True, metadata={"help": "PNG plots at the end", "choices": None}
    )
    dry_run: bool = dataclasses.field(
        default=False,
        metadata={
            "help": "one epoch of 2 batches into a temporary folder, removed at the end: "
            "checks the command in seconds",
            "choices": None,
        },
    )


def add_options(parser, cls, defaults: dict | None = None, title: str | None = None, only=None):
    """A flag per `option` field of `cls` (--field-name), or of those named in `only`, in an
    argument group when `title`; `defaults` override the fields' own."""
    group = parser.add_argument_group(title) if title else parser
    defaults = defaults or {}
    for f, kind in declared_fields(cls):
        if only is not None and f.name not in only:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = defaults.get(f.name, f.default)
        help_ = f.metadata["help"]
        if kind is bool:
            action = argparse.BooleanOptionalAction if default else "store_true"
            group.add_argument(flag, action=action, default=default, dest=f.name, help=help_)
        else:
            group.add_argument(
                flag,
                type=_parser_of(kind),
                default=default,
                choices=f.metadata["choices"],
                dest=f.name,
                metavar=f.name.upper() if f.metadata["choices"] is None else None,
                help=help_,
            )
    return group


def _parser_of(kind: type):
    def parse(text: str):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def values_of(args: argparse.Namespace, cls) -> dict:
    """The values of `cls`'s option fields, as parsed."""
    return {f.name: getattr(args, f.name) for f, _ in declared_fields(cls)}


class _SettingsLoader(yaml.SafeLoader):
    """safe_load's loader that refuses, before anything expands, what no settings file needs:
    aliases (457 bytes of nested `*a` references expand to gigabytes) and nesting deeper than
    MAX_CONFIG_DEPTH (a thousand `[` exhaust Python's recursion)."""

    depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _Refused(
                f"the alias *{event.anchor} (line {event.start_mark.line + 1}) is refused in a "
                "settings file; write the value out"
            )
        self.depth += 1
        if self.depth > MAX_CONFIG_DEPTH:
            raise _Refused(f"nested deeper than {MAX_CONFIG_DEPTH} levels; settings need 3")
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


class _Refused(yaml.YAMLError):
    """What _SettingsLoader refuses, said as it is."""


def read_settings_file(path: str, flag: str, what: str) -> dict:
    """The mapping of option names to `what` in a small YAML or JSON file given as `flag`
    (plain data only, no aliases, at most MAX_CONFIG_DEPTH deep; an empty file is an empty
    mapping), or one line saying why not."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{flag} {path}: no such file")
    if file.stat().st_size > MAX_CONFIG_BYTES:
        raise ValueError(f"{flag} {path}: {file.stat().st_size} bytes, a settings file is small")
    try:
        values = yaml.load(file.read_text(encoding="utf-8-sig"), Loader=_SettingsLoader)
    except _Refused as e:
        raise ValueError(f"{flag} {path}: {e}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        first = str(e).splitlines()[0]
        raise ValueError(f"{flag} {path}: not a YAML or JSON file ({first})") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ValueError(f"{flag} {path}: expected a mapping of option names to {what}")
    return values


def read_config_file(path: str, classes: dict[str, type], experiment: str) -> dict:
    """The options set in a YAML or JSON file, checked against the fields of `classes` (the
    experiment's config, TrainConfig...). A run's config.json is accepted as it is: its
    'config' and 'train' sections are the options, the rest describes the run."""
    values = read_settings_file(path, "--config", "values")
    if {"experiment", "config", "train"} <= values.keys():  # a run's config.json
        if values["experiment"] != experiment:
            raise ValueError(
                f"--config {path} is a {values['experiment']!r} run's, not {experiment!r}'s"
            )
        for section in ("config", "train"):
            if not isinstance(values[section], dict):
                raise ValueError(
                    f"--config {path}: a run record's {section!r} must be a mapping of option "
                    f"names to values, got {type(values[section]).__name__}"
                )
        values = {**values["config"], **values["train"]}
        # fields that are settings but not options (limit_batches of a dry run) stay behind
        for cls in classes.values():
            for f in dataclasses.fields(cls):
                if "help" not in f.metadata:
                    values.pop(f.name, None)
    fields = {f.name: (f, kind) for cls in classes.values() for f, kind in declared_fields(cls)}
    settings = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in fields:
            raise ValueError(
                f"--config {path}: unknown option {key!r}; expected some of "
                f"{', '.join(sorted(fields))}"
            )
        settings[name] = _checked_value(fields[name], value, path)
    return settings


def _checked_value(field_and_kind, value, path: str):
    f, kind = field_and_kind
    if value is None and f.default is None:
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"--config {path}: {f.name} must be {kind.__name__}, got {value!r}")
    choices = f.metadata["choices"]
    if choices is not None and value not in choices:
        raise ValueError(
            f"--config {path}: {f.name} must be one of {', '.join(map(str, choices))}; "
            f"got {value!r}"
        )
    return value


def print_config(experiment: str, sections: dict[str, object]) -> None:
    """The resolved settings, in the shape of a run's config.json (a valid --config file)."""
    record = {"experiment": experiment}
    for name, obj in sections.items():
        record[name] = {f.name: getattr(obj, f.name) for f, _ in declared_fields(type(obj))}
    print(json.dumps(record, indent=2))
