"""Writing a file so that a reader sees the old one or the whole new one, never a part; and
the names of the files a run folder holds, defined once for every layer.

`atomic_write` is the one helper every layer uses for the files it leaves behind (cache
entries, checkpoints, metrics, summaries, run records); this module imports nothing from rnnlab.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

# The files of a run folder (rnnlab.train.run_dir says what each holds).
CONFIG_FILE = "config.json"  # the run record: what defines the run
METRICS_FILE = "metrics.jsonl"  # one line per epoch
CHECKPOINT_FILE = "checkpoint.pt"  # the whole state after the last finished epoch
BEST_FILE = "best.pt"  # the weights of the best epoch by validation
TEST_FILE = "test.json"  # the best model scored on the test split
BASELINES_FILE = "baselines.json"  # what non-RNN methods score on the same split
SAMPLES_FILE = "samples.txt"  # a language model's text sample after each epoch
SUMMARY_FILE = "summary.json"  # best and final epochs, total time
EXPLAIN_FILE = "explain.html"  # `rnnlab explain`: the model at work on a few examples
LOCK_FILE = ".lock"  # held by the one process writing the folder


def atomic_write(path: str | os.PathLike, data: bytes | bytearray) -> None:
    """Write `data` to `path` atomically and durably.

    The bytes go to a temporary file in the same folder (so the rename stays on one file
    system), are fsynced, and replace `path` in one `os.replace`; the folder is then fsynced
    so that the rename itself survives a power cut.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if os.name == "posix":
                os.fchmod(f.fileno(), 0o644)  # mkstemp's 0600 would hide a shared cache
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if os.name == "posix":  # Windows cannot open a folder to fsync it
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
