"""fit and evaluate on tiny synthetic problems: what they compute, write, refuse and resume."""

import json
import math
import shutil

import numpy as np
import pytest
import torch
import torch.distributed as dist
from sklearn.metrics import confusion_matrix
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from rnnlab.report import read_metrics
from rnnlab.train import (
    TIMING_KEYS,
    CheckpointError,
    NonFiniteLossError,
    RunRecord,
    TrainConfig,
    evaluate,
    fit,
    load_checkpoint,
    resolve_device,
)
from rnnlab.train.loop import cross_entropy, with_label_smoothing
from rnnlab.train.run_dir import choose_run_dir


class LastStep(nn.Module):
    """A one-layer RNN classifying a sequence from its last hidden state: (B, T, I) -> (B, C)."""

    def __init__(self, inputs=3, hidden=8, classes=3):
        super().__init__()
        self.rnn = nn.RNN(inputs, hidden, batch_first=True)
        self.out = nn.Linear(hidden, classes)

    def forward(self, x):
        h, _ = self.rnn(x)  # (B, T, H)
        return self.out(h[:, -1])  # (B, C)


class EveryStep(LastStep):
    """The same RNN tagging every step: (B, T, I) -> (B, T, C)."""

    def forward(self, x):
        h, _ = self.rnn(x)  # (B, T, H)
        return self.out(h)  # (B, T, C)


def make_problem(seed=0, generator=True, model_cls=LastStep, n_train=96, n_val=48):
    """Model and loaders for 3 classes read off (B, 5, 3) sequences, all built from `seed`."""
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(n_train + n_val, 5, 3, generator=g)  # (N, T, I)
    if model_cls is EveryStep:
        y = (x[..., 0] > 0).long() + (x[..., 1] > 1).long()  # (N, T)
    else:
        y = (x[..., 0].sum(1) > 0).long() + (x[..., 1].sum(1) > 1).long()  # (N,)
    torch.manual_seed(seed)
    model = model_cls()
    train = DataLoader(
        TensorDataset(x[:n_train], y[:n_train]),
        batch_size=16,
        shuffle=True,
        generator=torch.Generator() if generator else None,
    )
    val = DataLoader(TensorDataset(x[n_train:], y[n_train:]), batch_size=32)
    return model, train, val


def make_config(tmp_path, **overrides):
    settings = dict(
        name="run", out_dir=str(tmp_path), epochs=2, lr=0.02, device="cpu", progress=False
    )
    return TrainConfig(**{**settings, "plots": False, **overrides})


def without_timing(records):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


def test_fit_learns_and_writes_the_run_folder(tmp_path):
    model, train, val = make_problem()
    config = make_config(tmp_path, epochs=6, plots=True)
    result = fit(model, train, val, config, class_names=["low", "mid", "high"])

    run = tmp_path / "run"
    names = {p.name for p in run.iterdir()}
    expected = {"config.json", "metrics.jsonl", "checkpoint.pt", "best.pt", "summary.json", ".lock"}
    assert expected | {"loss.png", "accuracy.png", "confusion.png"} == names
    assert RunRecord.read(run).train == config.settings()
    records = read_metrics(run)
    assert [r["epoch"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert records == result.history
    assert records[-1]["val_loss"] < 0.8 * records[0]["val_loss"]
    assert records[-1]["val_acc"] > records[0]["val_acc"] + 0.1

    best = max(records, key=lambda r: r["val_acc"])
    assert (result.best_epoch, result.best_score) == (best["epoch"], best["val_acc"])
    best_state = torch.load(run / "best.pt", weights_only=True)
    assert (best_state["epoch"], best_state["score"]) == (best["epoch"], best["val_acc"])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best_epoch"] == best["epoch"]
    assert summary["final"] == records[-1]
    checkpoint = load_checkpoint(run / "checkpoint.pt")
    assert checkpoint["epoch"] == 6
    assert {"model", "optimizer", "scheduler", "rng", "config", "history"} <= checkpoint.keys()


def test_same_seed_gives_identical_metrics_and_weights(tmp_path):
    runs = []
    for name, seed in [("a", 0), ("b", 0), ("c", 1)]:
        model, train, val = make_problem(seed=seed)
        result = fit(model, train, val, make_config(tmp_path, name=name, seed=seed))
        runs.append((without_timing(result.history), model.state_dict()))
    (metrics_a, weights_a), (metrics_b, weights_b), (metrics_c, _) = runs
    assert metrics_a == metrics_b
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert metrics_a != metrics_c


def test_per_step_logits_are_scored_per_element(tmp_path):
    model, train, val = make_problem(model_cls=EveryStep)
    fit(model, train, val, make_config(tmp_path, epochs=1))
    result = evaluate(model, val, predictions=True, confusion=True)

    x, y = val.dataset.tensors  # (48, 5, 3), (48, 5)
    with torch.no_grad():
        logits = model(x)  # (48, 5, 3)
    expected = nn.functional.cross_entropy(logits.reshape(-1, 3), y.reshape(-1))
    assert result.count == 48 * 5
    assert result.loss == pytest.approx(expected.item(), rel=1e-6)
    assert torch.equal(result.predictions, logits.argmax(-1).reshape(-1))
    assert result.accuracy == (result.predictions == y.reshape(-1)).double().mean().item()
    assert result.confusion.sum() == 48 * 5


def test_evaluate_confusion_matrix_matches_sklearn_and_keeps_the_mode(tmp_path):
    model, _, val = make_problem()
    model.train()
    result = evaluate(model, val, confusion=True, predictions=True)
    y = val.dataset.tensors[1]
    expected = confusion_matrix(y.numpy(), result.predictions.numpy(), labels=[0, 1, 2])
    assert np.array_equal(result.confusion.numpy(), expected)
    assert result.accuracy == pytest.approx(np.trace(expected) / len(y))
    assert model.training


def test_logits_that_do_not_fit_the_targets_are_refused():
    model, _, _ = make_problem()
    loader = DataLoader(TensorDataset(torch.randn(4, 5, 3), torch.zeros(4, 5, dtype=torch.long)))
    with pytest.raises(ValueError, match=r"logits of shape \(1, 3\) must have the targets' shape"):
        evaluate(model, loader)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("schedule", ["none", "cosine", "onecycle"])
def test_every_optimizer_and_schedule_trains_and_ends_at_the_right_rate(
    tmp_path, optimizer, schedule
):
    model, train, _ = make_problem()
    config = make_config(tmp_path, optimizer=optimizer, schedule=schedule, weight_decay=1e-4)
    history = fit(model, train, None, config).history
    assert all(math.isfinite(r["train_loss"]) for r in history)
    assert "val_acc" not in history[-1]
    if schedule == "none":
        assert history[-1]["lr"] == config.lr
    else:  # both schedules anneal to (nearly) nothing by the last step
        assert history[-1]["lr"] < config.lr / 20


def test_grad_clip_bounds_the_norm_of_each_update(tmp_path):
    changes = {}
    for clip in (0.0, 1e-3):
        model, train, _ = make_problem()
        before = nn.utils.parameters_to_vector(model.parameters()).clone()
        config = make_config(
            tmp_path, name=f"clip{clip}", optimizer="sgd", momentum=0.0, lr=1.0, grad_clip=clip,
            epochs=1, limit_batches=1,
        )  # fmt: skip
        fit(model, train, None, config)
        changes[clip] = (nn.utils.parameters_to_vector(model.parameters()) - before).norm().item()
    assert changes[1e-3] == pytest.approx(1e-3, rel=1e-4)
    assert changes[0.0] > 10 * changes[1e-3]


def test_label_smoothing_is_torchs_and_smooths_only_the_training_loss(tmp_path):
    logits, targets = torch.randn(7, 4), torch.randint(0, 4, (7,))  # (N, C), (N,)
    smoothed = with_label_smoothing(cross_entropy, 0.2)(logits, targets)
    torch.testing.assert_close(smoothed, F.cross_entropy(logits, targets, label_smoothing=0.2))
    assert with_label_smoothing(cross_entropy, 0.0) is cross_entropy
    losses = {}
    for smoothing in (0.0, 0.3):
        model, train, val = make_problem()
        config = make_config(
            tmp_path, name=f"ls{smoothing}", epochs=1, lr=1e-9, label_smoothing=smoothing
        )
        (record,) = fit(model, train, val, config).history
        losses[smoothing] = record
    # a rate of 1e-9 leaves the weights where they started: the same validation loss, another
    # training loss
    assert losses[0.3]["val_loss"] == pytest.approx(losses[0.0]["val_loss"], abs=1e-6)
    assert losses[0.3]["train_loss"] != pytest.approx(losses[0.0]["train_loss"], abs=1e-3)


def test_limit_batches_cuts_every_epoch_short(tmp_path):
    model, train, val = make_problem()
    history = fit(model, train, val, make_config(tmp_path, limit_batches=2)).history
    assert [r["step"] for r in history] == [2, 4]


class NaNAt(nn.Module):
    """Wraps a model; its `at`-th training forward returns NaN logits."""

    def __init__(self, inner, at):
        super().__init__()
        self.inner, self.at, self.calls = inner, at, 0

    def forward(self, x):
        logits = self.inner(x)
        if self.training:
            self.calls += 1
            if self.calls == self.at:
                logits = logits * float("nan")
        return logits


def test_nan_loss_stops_the_run_naming_epoch_and_batch_and_keeps_the_last_checkpoint(tmp_path):
    inner, train, val = make_problem()  # 6 batches per epoch
    model = NaNAt(inner, at=9)
    after_epoch_1 = {}

    def remember(epoch, model, metrics):
        if epoch == 1:
            after_epoch_1.update({k: v.clone() for k, v in model.state_dict().items()})

    with pytest.raises(NonFiniteLossError) as info:
        fit(model, train, val, make_config(tmp_path, epochs=3), on_epoch_end=remember)
    message = str(info.value)
    assert "loss is nan at epoch 2, batch 3/6 (global step 9)" in message
    assert "checkpoint.pt (epoch 1), is unchanged" in message

    run = tmp_path / "run"
    checkpoint = load_checkpoint(run / "checkpoint.pt")
    assert checkpoint["epoch"] == 1
    assert all(torch.equal(checkpoint["model"][k], v) for k, v in after_epoch_1.items())
    assert [r["epoch"] for r in read_metrics(run)] == [1]
    assert not [p for p in run.iterdir() if p.name.startswith(".") and p.name != ".lock"]


def test_epoch_hook_output_joins_metrics_and_the_epoch_line(tmp_path, capsys):
    model, train, val = make_problem()

    def predicted(epoch, model, metrics):
        assert not model.training and not torch.is_grad_enabled()
        assert metrics["epoch"] == epoch and {"train_loss", "val_loss"} <= metrics.keys()
        return {"predicted": "ohlol"[:epoch]}

    history = fit(model, train, val, make_config(tmp_path), on_epoch_end=predicted).history
    assert [r["predicted"] for r in history] == ["o", "oh"]
    assert [r["predicted"] for r in read_metrics(tmp_path / "run")] == ["o", "oh"]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("epoch 1/2 | train loss ")
    assert "samples/s" in lines[0] and lines[0].endswith("| predicted 'o'")


def test_epoch_hook_must_return_scalars_or_strings(tmp_path):
    model, train, val = make_problem()
    with pytest.raises(TypeError, match="'logits' must be an int, float, str, bool or None"):
        fit(model, train, val, make_config(tmp_path), on_epoch_end=lambda e, m, r: {"logits": [1]})


def test_progress_bar_goes_to_stderr_and_one_line_per_epoch_to_stdout(tmp_path, capsys):
    model, train, val = make_problem()
    fit(model, train, val, make_config(tmp_path, progress=True))
    captured = capsys.readouterr()
    assert "epoch 1/2" in captured.err and "batch" in captured.err
    lines = captured.out.splitlines()
    assert len(lines) == 2
    assert "val loss" in lines[1] and "acc" in lines[1] and "samples/s" in lines[1]


@pytest.mark.parametrize("generator", [True, False], ids=["loader-generator", "global-rng"])
def test_resume_drops_metrics_the_checkpoint_lacks_and_ends_as_if_never_stopped(
    tmp_path, generator
):
    """A kill after epoch 2's metrics line but before its checkpoint, replayed in process."""
    run = tmp_path / "run"
    saved = tmp_path / "epoch1.pt"

    def keep_epoch_1_checkpoint(epoch, model, metrics):
        if epoch == 2:  # the hook runs before epoch 2's checkpoint replaces epoch 1's
            shutil.copy(run / "checkpoint.pt", saved)

    model, train, val = make_problem(generator=generator)
    config = make_config(tmp_path, epochs=3, schedule="onecycle", grad_clip=0.5)
    uninterrupted = fit(model, train, val, config, on_epoch_end=keep_epoch_1_checkpoint)
    final_weights = model.state_dict()

    shutil.copy(saved, run / "checkpoint.pt")
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 4, "train_')  # and a torn line for good measure
    model, train, val = make_problem(seed=99, generator=generator)  # init is overwritten
    resumed = fit(
        model, train, val, make_config(tmp_path, epochs=3, schedule="onecycle", grad_clip=0.5,
                                       resume=True),
        on_epoch_end=keep_epoch_1_checkpoint,
    )  # fmt: skip

    assert without_timing(resumed.history) == without_timing(uninterrupted.history)
    assert read_metrics(run)[0] == uninterrupted.history[0]  # kept as written, timing too
    assert without_timing(read_metrics(run)) == without_timing(uninterrupted.history)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in final_weights.items())
    assert (resumed.best_epoch, resumed.best_score) == (
        uninterrupted.best_epoch,
        uninterrupted.best_score,
    )


def test_resume_without_a_checkpoint_starts_a_fresh_run(tmp_path):
    model, train, val = make_problem()
    history = fit(model, train, val, make_config(tmp_path, resume=True)).history
    assert [r["epoch"] for r in history] == [1, 2]


def test_fresh_run_refuses_a_folder_that_holds_a_checkpoint(tmp_path):
    model, train, val = make_problem()
    fit(model, train, val, make_config(tmp_path, epochs=1))
    with pytest.raises(FileExistsError, match="already holds this run; resume it"):
        fit(model, train, val, make_config(tmp_path, epochs=1))


def test_resume_refuses_a_different_config_naming_the_changes(tmp_path):
    model, train, val = make_problem()
    fit(model, train, val, make_config(tmp_path, epochs=1))
    with pytest.raises(ValueError, match=r"epochs: 1 -> 2; lr: 0.02 -> 0.1\)"):
        fit(model, train, val, make_config(tmp_path, epochs=2, lr=0.1, resume=True))


def test_a_run_saved_before_label_smoothing_existed_is_the_same_run(tmp_path):
    model, train, val = make_problem()
    config = make_config(tmp_path, epochs=1)
    fit(model, train, val, config)
    path = tmp_path / "run" / "config.json"
    saved = json.loads(path.read_text())
    del saved["train"]["label_smoothing"]  # as a run written before the option was
    path.write_text(json.dumps(saved))
    record = RunRecord(experiment="", config={}, train=config.settings())
    assert choose_run_dir(tmp_path, "run", record, explicit=True) == tmp_path / "run"


def test_resume_refuses_a_corrupted_checkpoint(tmp_path):
    model, train, val = make_problem()
    fit(model, train, val, make_config(tmp_path, epochs=1))
    path = tmp_path / "run" / "checkpoint.pt"
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(CheckpointError, match="unreadable"):
        fit(model, train, val, make_config(tmp_path, epochs=2, resume=True))


def test_device_auto_picks_what_torch_sees():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="'cuda:1' was asked for but torch sees no CUDA"):
            resolve_device("cuda:1")


def test_fit_runs_under_torch_distributed_with_a_wrapped_model(tmp_path):
    """One gloo process: all-reduced sums, DistributedSampler.set_epoch, unprefixed state."""
    model, train, val = make_problem()
    sampler = DistributedSampler(train.dataset, num_replicas=1, rank=0, seed=0)
    loader = DataLoader(train.dataset, batch_size=16, sampler=sampler)
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        wrapped = nn.parallel.DistributedDataParallel(model)
        history = fit(wrapped, loader, val, make_config(tmp_path)).history
    finally:
        dist.destroy_process_group()
    assert sampler.epoch == 2
    assert history[-1]["val_acc"] == evaluate(model, val).accuracy
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["model"].keys() == (
        model.state_dict().keys()
    )
