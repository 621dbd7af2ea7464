"""Checkpoint files: atomic writes, weights_only loads, and corruption that is caught, not used."""

import os

import pytest
import torch

from rnnlab.train import CheckpointError, load_checkpoint, save_checkpoint


def _state():
    torch.manual_seed(0)
    model = torch.nn.Linear(32, 32)
    return {"epoch": 3, "model": model.state_dict(), "betas": (0.9, 0.999), "note": None}


def test_checkpoint_round_trips_and_loads_with_plain_weights_only_torch_load(tmp_path):
    path = tmp_path / "checkpoint.pt"
    state = _state()
    save_checkpoint(state, path)
    loaded = load_checkpoint(path)
    assert loaded.keys() == state.keys()
    assert torch.equal(loaded["model"]["weight"], state["model"]["weight"])
    assert loaded["betas"] == (0.9, 0.999)
    raw = torch.load(path, weights_only=True)
    assert len(raw["sha256"]) == 64


def test_failed_write_leaves_the_previous_checkpoint_and_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"epoch": 1}, path)

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_truncated_checkpoint_raises_checkpoint_error_naming_the_file(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(_state(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"checkpoint\.pt is unreadable"):
        load_checkpoint(path)


def test_flipped_byte_in_tensor_data_is_caught_by_the_digest(tmp_path):
    path = tmp_path / "checkpoint.pt"
    state = _state()
    save_checkpoint(state, path)
    data = bytearray(path.read_bytes())
    at = data.find(state["model"]["weight"].numpy().tobytes()[:64])
    assert at > 0
    data[at + 100] ^= 0x01  # torch.load alone returns the altered tensor without complaint
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted: its contents hash to sha256"):
        load_checkpoint(path)


def test_missing_checkpoint_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nope.pt")


def test_checkpoint_refuses_objects_that_weights_only_could_not_load(tmp_path):
    with pytest.raises(TypeError, match="got Linear"):
        save_checkpoint({"model": torch.nn.Linear(2, 2)}, tmp_path / "c.pt")
