"""An experiment is one declaration: a tiny experiment declared here gets its command, cv,
evaluate and predict with no change under cli/; options come from its dataclass, --config
files set them, --print-config shows them, and a run's config.json repeats the run."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from rnnlab.cli import main
from rnnlab.experiments import EXPERIMENTS, Data, Experiment, RunCommand
from rnnlab.options import check_range, option
from rnnlab.train import TIMING_KEYS

QUIET = ["--no-progress", "--no-plots"]


@dataclass
class ToyConfig:
    width: int = option(4, "hidden units of the toy classifier")
    batch_size: int = option(8, "samples per batch")

    def __post_init__(self) -> None:
        check_range("width", self.width, 1)


def toy_data(config: ToyConfig, meta: dict | None = None) -> Data:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=g)  # (N, 3)
    y = (x[:, 0] > 0).long()  # (N,)
    return Data(
        train=TensorDataset(x[:24], y[:24]),
        val=TensorDataset(x[24:32], y[24:32]),
        test=TensorDataset(x[32:], y[32:]),
        meta={"classes": ["low", "high"]},
        labels=y[:24].numpy(),
    )


def toy_model(config: ToyConfig, meta: dict) -> nn.Module:
    return nn.Sequential(nn.Linear(3, config.width), nn.Tanh(), nn.Linear(config.width, 2))


@dataclass
class ToyPredict:
    value: float = option(0.0, "the first feature of the sample to classify")


def toy_predict(saved, options: ToyPredict) -> None:
    logits = saved.model(torch.tensor([[options.value, 0.0, 0.0]]))  # (1, 2)
    print(saved.record.meta["classes"][int(logits.argmax())])


TOY = Experiment(
    name="toy",
    help="a toy classifier declared inside a test",
    config=ToyConfig,
    train_defaults=dict(epochs=3, lr=0.05),
    load_data=toy_data,
    build_model=toy_model,
    predict=RunCommand("predict", "classify one sample", ToyPredict, toy_predict),
    where_fields=(),
)
ALL = (*EXPERIMENTS, TOY)


def metrics(run_dir) -> list[dict]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


def test_a_declared_experiment_gets_its_command_cv_evaluate_and_predict(tmp_path, capsys):
    out = str(tmp_path)
    assert main(["toy", "--width", "6", "--out-dir", out, *QUIET], experiments=ALL) == 0
    assert [r["epoch"] for r in metrics(tmp_path / "toy")] == [1, 2, 3]
    assert (tmp_path / "toy" / "test.json").is_file()
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "toy")], experiments=ALL) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 8
    assert main(["predict", str(tmp_path / "toy"), "--value", "2.5"], experiments=ALL) == 0
    assert capsys.readouterr().out.strip() in ("low", "high")
    cv = ["cv", "toy", "--folds", "3", "--out-dir", out, *QUIET]
    assert main(cv, experiments=ALL) == 0
    assert "mean ± std" in capsys.readouterr().out
    assert main(["toy", "--width", "0"], experiments=ALL) == 2
    assert "width must be >= 1, got 0" in capsys.readouterr().err


def test_a_run_config_json_fed_back_repeats_the_run_exactly(tmp_path, capsys):
    out = str(tmp_path)
    assert main(["seq2seq", "--embedding", "6", "--epochs", "4", "--out-dir", out, *QUIET]) == 0
    config = tmp_path / "seq2seq" / "config.json"
    assert main(["seq2seq", "--config", str(config), "--name", "again", "--out-dir", out]) == 0
    assert metrics(tmp_path / "again") == metrics(tmp_path / "seq2seq")
    again = json.loads((tmp_path / "again" / "config.json").read_text())
    assert again == json.loads(config.read_text())


def test_a_yaml_config_sets_options_and_typed_flags_win(tmp_path, capsys):
    settings = tmp_path / "settings.yaml"
    settings.write_text("hidden: 12\nlr: 0.05\nbatch-size: 4\n")
    assert main(["seq2seq", "--config", str(settings), "--lr", "0.2", "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["experiment"] == "seq2seq"
    assert printed["config"]["hidden"] == 12 and printed["config"]["batch_size"] == 4
    assert printed["train"]["lr"] == 0.2 and printed["train"]["epochs"] == 15


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hiden: 12\n", "unknown option 'hiden'"),
        ("hidden: twelve\n", "hidden must be int, got 'twelve'"),
        ("level: phoneme\n", "level must be one of char, word; got 'phoneme'"),
        ("- 1\n- 2\n", "expected a mapping"),
        ("a: [\n", "not a YAML or JSON file"),
    ],
)
def test_a_bad_config_file_is_one_line_naming_the_problem(tmp_path, capsys, text, message):
    settings = tmp_path / "bad.yaml"
    settings.write_text(text)
    assert main(["seq2seq", "--config", str(settings), "--print-config"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_another_experiments_run_is_not_a_config_for_this_one(tmp_path, capsys):
    assert main(["seq2seq", "--epochs", "1", "--out-dir", str(tmp_path), *QUIET]) == 0
    config = str(tmp_path / "seq2seq" / "config.json")
    assert main(["mnist", "--config", config, "--print-config"]) == 2
    assert "is a 'seq2seq' run's, not 'mnist''s" in capsys.readouterr().err
