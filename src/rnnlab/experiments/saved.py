"""What an experiment leaves beside the training loop's files, and how to rebuild from it.

`experiment.json` in the run folder names the experiment and holds its config (and whatever
else the model needs, such as vocabularies), so `rnnlab evaluate` and `rnnlab predict` can
rebuild the model and load `best.pt` (weights_only, digest checked) without the command line
that trained it.
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from rnnlab.files import atomic_write
from rnnlab.train import load_checkpoint

EXPERIMENT_FILE = "experiment.json"
# Config fields that say where the data came from, not what it is (every source is checked
# against the same checksums): a resumed run may read its data from elsewhere.
WHERE_NOT_WHAT = ("data_dir",)
WEIGHTS_FILES = ("best.pt", "checkpoint.pt")  # the best model by validation, else the last


def save_experiment(run_dir: str | Path, experiment: str, config: dict, **extra) -> None:
    """Atomically write run_dir/experiment.json: the experiment's name, config and extras."""
    record = {"experiment": experiment, "config": config, **extra}
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    atomic_write(Path(run_dir) / EXPERIMENT_FILE, json.dumps(record, indent=2).encode())


def claim_experiment(run_dir: str | Path, experiment: str, config: dict, **extra) -> None:
    """Write run_dir/experiment.json for a new run; for a folder that already has one (a run
    being resumed), check that it describes the same experiment, so that a changed option is
    refused before it can meet weights trained with the old ones."""
    record = json.loads(json.dumps({"experiment": experiment, "config": config, **extra}))
    if not (Path(run_dir) / EXPERIMENT_FILE).is_file():
        save_experiment(run_dir, experiment, config, **extra)
        return
    saved = read_experiment(run_dir)
    for settings in (saved.get("config", {}), record["config"]):
        for key in WHERE_NOT_WHAT:
            settings.pop(key, None)
    if saved != record:
        old, new = saved.get("config", {}), record["config"]
        changed = [
            f"{k}: {old.get(k)!r} -> {new.get(k)!r}"
            for k in sorted(old.keys() | new.keys())
            if old.get(k) != new.get(k)
        ]
        what = ", ".join(changed) or f"{saved.get('experiment')!r} -> {experiment!r}, or its data"
        raise ValueError(
            f"{run_dir} holds a run with other settings ({what}); "
            "pass another --name for a new run, or delete the folder"
        )


def read_experiment(run_dir: str | Path) -> dict:
    """The record in run_dir/experiment.json, with a clear error if the folder is not a run."""
    path = Path(run_dir) / EXPERIMENT_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{run_dir} is not an rnnlab run folder: it has no {EXPERIMENT_FILE} "
            "(expected the folder a `rnnlab seq2seq` or `rnnlab mnist` run wrote)"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is corrupted: {e}") from e


def load_weights(model: nn.Module, run_dir: str | Path) -> Path:
    """Load the run's best weights (best.pt, else checkpoint.pt) into `model`; return the file."""
    for name in WEIGHTS_FILES:
        path = Path(run_dir) / name
        if path.is_file():
            model.load_state_dict(load_checkpoint(path)["model"])
            return path
    raise FileNotFoundError(
        f"{run_dir} holds no weights: expected one of {', '.join(WEIGHTS_FILES)}"
    )
