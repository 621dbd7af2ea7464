"""The run folder: its file names, the one record of what defines a run, and its one writer.

`config.json` holds a `RunRecord`: the experiment and its settings, the training settings and
the data's identity (sha256 of its files), plus what the model needs to be rebuilt (`meta`:
class names, vocabularies). It never says where the run lives, so a folder copied or moved
anywhere resumes, evaluates and predicts as before. `settings_diff` is the one comparison of
settings: resume, choosing a run folder, cross-validation plans and the commands that rebuild a
saved run all use it. `run_lock` makes a folder's writer the only one: an OS-level lock that
the OS drops when the process dies, so a killed run never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from rnnlab.files import (
    BASELINES_FILE,
    BEST_FILE,
    CHECKPOINT_FILE,
    CONFIG_FILE,
    LOCK_FILE,
    METRICS_FILE,
    SUMMARY_FILE,
    TEST_FILE,
    atomic_write,
)
from rnnlab.train.config import LEGACY_DEFAULTS

WEIGHTS_FILES = (BEST_FILE, CHECKPOINT_FILE)  # a saved model: the best, else the last
__all__ = [
    "BEST_FILE",
    "CHECKPOINT_FILE",
    "CONFIG_FILE",
    "LOCK_FILE",
    "METRICS_FILE",
    "SUMMARY_FILE",
    "TEST_FILE",
    "WEIGHTS_FILES",
    "RunFolderBusyError",
    "RunRecord",
    "choose_run_dir",
    "fill_legacy_defaults",
    "run_lock",
    "settings_diff",
]

RECORD_VERSION = 1


class RunFolderBusyError(RuntimeError):
    """Another live process is writing this run folder."""


@dataclass
class RunRecord:
    """What defines a run, as config.json holds it."""

    experiment: str  # the experiment's name, e.g. 'mnist'
    config: dict  # the experiment's settings
    train: dict  # TrainConfig.settings(): how it is trained
    data: dict = field(default_factory=dict)  # {"source": ..., "sha256": {file: digest}}
    meta: dict = field(default_factory=dict)  # what rebuilds the model: classes, vocabularies
    where_fields: tuple = ()  # config fields that say where the data is, not what it is
    version: int = RECORD_VERSION

    def settings(self) -> dict:
        """The parts two runs must share to be the same run: not where the data came from."""
        config = {k: v for k, v in self.config.items() if k not in self.where_fields}
        return {
            "experiment": self.experiment,
            "config": config,
            "train": self.train,
            "data": self.data.get("sha256", {}),
        }

    def to_json(self) -> str:
        record = asdict(self)
        record["where_fields"] = list(self.where_fields)
        return json.dumps(record, indent=2) + "\n"

    def write(self, run_dir: str | os.PathLike) -> None:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        atomic_write(Path(run_dir) / CONFIG_FILE, self.to_json().encode())

    @classmethod
    def read(cls, run_dir: str | os.PathLike) -> RunRecord:
        """The record in run_dir/config.json, with one clear error if it is not a run's."""
        path = Path(run_dir) / CONFIG_FILE
        if not Path(run_dir).is_dir() or not path.is_file():
            raise FileNotFoundError(
                f"{run_dir} is not an rnnlab run folder: it has no {CONFIG_FILE} "
                "(expected a folder that `rnnlab mnist`, `rnnlab seq2seq`, ... wrote)"
            )
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
            values["where_fields"] = tuple(values.get("where_fields", ()))
            record = cls(**values)
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as e:
            raise ValueError(f"{path} is not a run record ({type(e).__name__}: {e})") from e
        for name in ("config", "train", "data", "meta"):
            if not isinstance(getattr(record, name), dict):
                raise ValueError(f"{path}: '{name}' must be a JSON object")
        return record


def settings_diff(old, new, prefix: str = "") -> list[str]:
    """Every difference between two JSON-like settings, as 'key.sub: old -> new' lines."""
    if isinstance(old, dict) and isinstance(new, dict):
        lines = []
        for key in sorted(old.keys() | new.keys(), key=str):
            name = f"{prefix}{key}"
            if key not in old:
                lines.append(f"{name}: (none) -> {new[key]!r}")
            elif key not in new:
                lines.append(f"{name}: {old[key]!r} -> (none)")
            else:
                lines.extend(settings_diff(old[key], new[key], f"{name}."))
        return lines
    old, new = json.loads(json.dumps(old)), json.loads(json.dumps(new))  # tuples read as lists
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


def fill_legacy_defaults(settings: dict, legacy_defaults: dict | None = None) -> dict:
    """A saved run's settings (`RunRecord.settings()`, or a cv plan) with the options added
    since it was written set to what they meant then: the training ones (LEGACY_DEFAULTS) and
    the experiment's (`legacy_defaults`), so that an old run compares equal to the same
    run today."""
    filled = dict(settings)
    if "train" in settings:
        filled["train"] = LEGACY_DEFAULTS | settings["train"]
    if "config" in settings:
        filled["config"] = (legacy_defaults or {}) | settings["config"]
    return filled


def choose_run_dir(
    out_dir: str | os.PathLike,
    name: str,
    record: RunRecord,
    explicit: bool,
    legacy_defaults: dict | None = None,
) -> Path:
    """The folder for a run with `record`'s settings: out_dir/name if it is free or holds the
    same run (`fill_legacy_defaults`); else, for a default name, the first of name-2, name-3, ...
    that is; an explicit name holding another run is refused, naming what differs. Nothing is
    ever overwritten."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"--out-dir {out_dir} is a file, expected a folder for the runs")
    for n in range(1, 10_000):
        run_dir = out_dir / (name if n == 1 else f"{name}-{n}")
        if not run_dir.exists():
            return run_dir
        if not run_dir.is_dir():
            if explicit:
                raise NotADirectoryError(f"{run_dir} is a file, expected a run folder")
            continue
        if not (run_dir / CONFIG_FILE).is_file():
            if all(_before_record(p.name) for p in run_dir.iterdir()):
                return run_dir  # empty, or a run that died before its record: it starts again
            if explicit:
                raise FileExistsError(
                    f"{run_dir} is not empty and holds no run ({CONFIG_FILE} is missing); "
                    "pass another --name, or empty the folder"
                )
            continue
        # compared by today's idea of which fields say where the data is, not the saved one's
        saved = replace(RunRecord.read(run_dir), where_fields=record.where_fields).settings()
        saved = fill_legacy_defaults(saved, legacy_defaults)
        changed = settings_diff(saved, record.settings())
        if not changed:
            return run_dir
        if explicit:
            raise FileExistsError(
                f"{run_dir} holds a run with other settings ({'; '.join(changed)}); "
                "pass another --name for a new run, or delete the folder"
            )
    raise FileExistsError(f"{out_dir} holds 9999 runs named {name}-N; pass --name")


def _before_record(name: str) -> bool:
    """Whether a file is one a run may leave before its record: its lock, its baselines, or
    a temporary file of an atomic write cut short."""
    return name in (LOCK_FILE, BASELINES_FILE) or (name.startswith(".") and name.endswith(".tmp"))


# Locks this process holds: folder -> (file descriptor, depth), so that nested holders (an
# experiment around fit) share one lock instead of locking each other out.
_HELD: dict[str, list[int]] = {}


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike) -> Iterator[None]:
    """Hold run_dir's lock for the block; a second writer gets RunFolderBusyError at once,
    naming the live process. Re-entrant within a process."""
    run_dir = Path(run_dir)
    key = str(run_dir.resolve())
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield
        finally:
            _HELD[key][1] -= 1
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EACCES):
            raise RunFolderBusyError(
                f"{run_dir} is being written by process {holder}; wait for it to finish, "
                "or pass another --name"
            ) from None
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _HELD[key] = [fd, 1]
    try:
        yield
    finally:
        del _HELD[key]
        os.close(fd)  # closing the descriptor releases the lock
