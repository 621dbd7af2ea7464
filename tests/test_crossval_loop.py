"""cross_validate on a tiny synthetic problem: fresh weights per fold, reproducible, parallel
equal to sequential, resumable, shared out between torchrun ranks."""

import json

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from rnnlab.crossval import (
    CURVES_FILE,
    CV_FILE,
    FOLD_FILE,
    cross_validate,
    fold_dir,
    fold_seed,
    format_table,
)
from rnnlab.report import read_metrics
from rnnlab.train import (
    TIMING_KEYS,
    RunRecord,
    TrainConfig,
    cross_entropy,
    load_checkpoint,
    seed_everything,
)

N, CLASSES, FOLDS, BATCH = 30, 3, 3, 8  # 20 samples to train on per fold: 3 batches


class LastStep(nn.Module):
    """A one-layer RNN classifying a sequence from its last hidden state: (B, T, I) -> (B, C)."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.RNN(3, 8, batch_first=True)
        self.out = nn.Linear(8, CLASSES)

    def forward(self, x):
        h, _ = self.rnn(x)  # (B, T, H)
        return self.out(h[:, -1])  # (B, C)


class Recording:
    """A model factory that keeps a copy of the fresh weights of every model it builds."""

    def __init__(self):
        self.initial = []

    def __call__(self):
        model = LastStep()
        self.initial.append({k: v.clone() for k, v in model.state_dict().items()})
        return model


class Interrupted(Exception):
    pass


class FailingLoss:
    """Cross-entropy that raises on its (calls + 1)-th call: a run killed in the middle."""

    def __init__(self, calls):
        self.left = calls

    def __call__(self, logits, targets):
        self.left -= 1
        if self.left < 0:
            raise Interrupted
        return cross_entropy(logits, targets)


def make_loader(dataset, shuffle):
    return DataLoader(dataset, batch_size=BATCH, shuffle=shuffle, generator=torch.Generator())


def make_data(n=N):
    """(n, 5, 3) sequences whose class (10 of each) shifts their mean, and the labels (n,)."""
    g = torch.Generator().manual_seed(1234)
    y = torch.arange(n) % CLASSES  # (n,)
    x = torch.randn(n, 5, 3, generator=g) + y[:, None, None]  # (n, T, I)
    return TensorDataset(x, y), y.numpy()


def make_config(tmp_path, name="cv", **overrides):
    settings = dict(name=name, out_dir=str(tmp_path), epochs=2, progress=False, plots=False)
    return TrainConfig(**{**settings, **overrides})


def run_cv(tmp_path, name="cv", build_model=LastStep, workers=1, loss_fn=cross_entropy, **kw):
    dataset, labels = make_data()
    config_overrides = {k: kw.pop(k) for k in list(kw) if k in ("epochs", "seed", "plots")}
    return cross_validate(
        build_model,
        dataset,
        labels,
        folds=FOLDS,
        config=make_config(tmp_path, name, **config_overrides),
        make_loader=make_loader,
        workers=workers,
        loss_fn=loss_fn,
        **kw,
    )


def untimed(result):
    """The fold results without their timings, which differ between identical runs."""
    return [{k: v for k, v in vars(f).items() if k != "seconds"} for f in result.folds]


def untimed_metrics(run_dir, fold):
    return [
        {k: v for k, v in r.items() if k not in TIMING_KEYS}
        for r in read_metrics(fold_dir(run_dir, fold))
    ]


def weights(run_dir, fold):
    return load_checkpoint(fold_dir(run_dir, fold) / "best.pt")["model"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_each_fold_trains_on_the_others_and_validates_on_its_own(tmp_path):
    result = run_cv(tmp_path)
    assert [f.fold for f in result.folds] == [0, 1, 2]
    assert all((f.train_size, f.val_size) == (20, 10) for f in result.folds)
    for f in result.folds:
        history = read_metrics(fold_dir(result.run_dir, f.fold))
        assert len(history) == f.epochs == 2
        best = history[f.best_epoch - 1]
        assert (f.val_acc, f.val_loss) == (best["val_acc"], best["val_loss"])
        assert f.test_acc is None


def test_every_fold_starts_from_fresh_weights_and_a_fresh_optimiser(tmp_path):
    factory = Recording()
    result = run_cv(tmp_path, build_model=factory)
    assert len(factory.initial) == FOLDS
    for i, initial in enumerate(factory.initial):
        seed_everything(fold_seed(0, i))
        assert_same_weights(initial, LastStep().state_dict())  # built from (seed, fold) alone
        if i:
            trained = weights(result.run_dir, i - 1)
            assert not torch.equal(initial["out.weight"], trained["out.weight"])
        state = load_checkpoint(fold_dir(result.run_dir, i) / "checkpoint.pt")
        adam_steps = {int(s["step"]) for s in state["optimizer"]["state"].values()}
        assert adam_steps == {2 * 3}  # this fold's own 2 epochs of 3 batches, not cumulative
    assert len({fold_seed(0, i) for i in range(FOLDS)}) == FOLDS


def test_the_same_seed_gives_the_same_result_and_another_seed_another(tmp_path):
    first, again = run_cv(tmp_path, "a"), run_cv(tmp_path, "b")
    assert untimed(first) == untimed(again)
    for i in range(FOLDS):
        assert_same_weights(weights(first.run_dir, i), weights(again.run_dir, i))
    other = run_cv(tmp_path, "c", seed=1)
    assert untimed(other) != untimed(first)


def test_parallel_workers_give_the_sequential_result(tmp_path):
    sequential = run_cv(tmp_path, "sequential", workers=1)
    parallel = run_cv(tmp_path, "parallel", workers=2)
    assert untimed(parallel) == untimed(sequential)
    assert [f.threads for f in parallel.folds] == [1, 1, 1]  # the same count: bitwise equal
    for i in range(FOLDS):
        assert untimed_metrics(parallel.run_dir, i) == untimed_metrics(sequential.run_dir, i)
        assert_same_weights(weights(parallel.run_dir, i), weights(sequential.run_dir, i))


def test_a_rerun_skips_finished_folds_and_resumes_the_interrupted_one(tmp_path, capsys):
    reference = run_cv(tmp_path, "reference")
    # 5 loss calls per epoch (3 training batches, 2 validation): fold 0 finishes, fold 1 is
    # killed in its second epoch, after its first checkpoint; fold 2 never starts.
    with pytest.raises(Interrupted):
        run_cv(tmp_path, loss_fn=FailingLoss(2 * 5 + 5 + 1))
    run_dir = tmp_path / "cv"
    assert (fold_dir(run_dir, 0) / FOLD_FILE).is_file()
    assert not (fold_dir(run_dir, 1) / FOLD_FILE).exists()
    assert (fold_dir(run_dir, 1) / "checkpoint.pt").is_file()
    assert not fold_dir(run_dir, 2).exists()
    assert not (run_dir / CV_FILE).exists()
    fold0 = (fold_dir(run_dir, 0) / FOLD_FILE).read_bytes()
    capsys.readouterr()

    factory = Recording()
    result = run_cv(tmp_path, build_model=factory)
    out = capsys.readouterr().out
    assert len(factory.initial) == 2  # folds 1 and 2 only
    assert "fold 0: finished earlier" in out
    assert f"fold 1 | resuming {fold_dir(run_dir, 1)} after epoch 1" in out
    assert (fold_dir(run_dir, 0) / FOLD_FILE).read_bytes() == fold0
    assert untimed(result) == untimed(reference)
    for i in range(FOLDS):
        assert untimed_metrics(run_dir, i) == untimed_metrics(reference.run_dir, i)

    factory = Recording()
    assert untimed(run_cv(tmp_path, build_model=factory)) == untimed(reference)
    assert factory.initial == []  # all done: nothing is trained again


def test_a_rerun_with_other_settings_is_refused(tmp_path):
    run_cv(tmp_path, epochs=1)
    with pytest.raises(ValueError, match=r"other settings \(train.epochs: 1 -> 2\)"):
        run_cv(tmp_path, epochs=2)


def test_a_plan_written_before_an_option_existed_continues(tmp_path):
    settings = make_config(tmp_path, epochs=1).settings()
    record = RunRecord(experiment="x", config={"kept": 1, "added": 0}, train=settings)
    first = run_cv(tmp_path, epochs=1, record=record)
    path = tmp_path / "cv" / "cv_plan.json"
    plan = json.loads(path.read_text())  # as written before label_smoothing and "added"
    del plan["train"]["label_smoothing"], plan["run"]["train"]["label_smoothing"]
    del plan["run"]["config"]["added"]
    path.write_text(json.dumps(plan))
    with pytest.raises(ValueError, match=r"run.config.added: \(none\) -> 0"):
        run_cv(tmp_path, epochs=1, record=record)
    again = run_cv(tmp_path, epochs=1, record=record, legacy_defaults={"added": 0})
    assert untimed(again) == untimed(first)


def test_torchrun_ranks_share_the_folds_and_rank_0_reports(tmp_path, monkeypatch):
    reference = run_cv(tmp_path, "reference")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    factory = Recording()
    assert run_cv(tmp_path, build_model=factory) is None
    assert len(factory.initial) == 1  # fold 1 of 0..2
    assert [p.name for p in sorted((tmp_path / "cv").glob("fold-*"))] == ["fold-1"]
    assert not (tmp_path / "cv" / CV_FILE).exists()
    monkeypatch.setenv("RANK", "0")
    result = run_cv(tmp_path, build_model=factory)
    assert len(factory.initial) == 3  # folds 0 and 2 here
    assert untimed(result) == untimed(reference)
    assert (tmp_path / "cv" / CV_FILE).is_file()


def test_an_initialised_process_group_is_refused(tmp_path):
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        with pytest.raises(RuntimeError, match=r"torch\.distributed must not be initialised"):
            run_cv(tmp_path)
    finally:
        dist.destroy_process_group()


def test_cv_json_holds_every_fold_the_mean_and_std_and_the_record(tmp_path):
    dataset, _ = make_data(12)
    result = run_cv(
        tmp_path,
        plots=True,
        test_dataset=dataset,
        record=RunRecord(experiment="toy", config={"hidden": 8}, train={}),
    )
    cv = json.loads((result.run_dir / CV_FILE).read_text())
    assert cv["run"]["experiment"] == "toy" and cv["run"]["config"] == {"hidden": 8}
    assert (cv["folds"], cv["samples"], cv["stratified"], cv["shuffle"]) == (3, 30, True, True)
    assert cv["train"]["epochs"] == 2
    assert [f["fold"] for f in cv["per_fold"]] == [0, 1, 2]
    for metric in ("val_acc", "val_loss", "test_acc", "test_loss"):
        values = [f[metric] for f in cv["per_fold"]]
        assert cv["summary"][metric]["mean"] == pytest.approx(np.mean(values))
        assert cv["summary"][metric]["std"] == pytest.approx(np.std(values))
        assert all(v is not None for v in values)
    assert cv["summary"] == result.summary
    assert (result.run_dir / CURVES_FILE).stat().st_size > 0


def test_the_table_has_a_row_per_fold_and_mean_plus_minus_std():
    folds = [
        dict(fold=i, train_size=20, val_size=10, best_epoch=2, val_loss=0.5, val_acc=acc, seconds=1)
        for i, acc in enumerate((0.8, 0.9))
    ]
    summary = {"val_acc": {"mean": 0.85, "std": 0.05}, "val_loss": {"mean": 0.5, "std": 0.0}}
    lines = format_table(folds, summary).splitlines()
    headers = ["fold", "train", "val", "best epoch", "val loss", "val acc", "seconds"]
    assert [h.strip() for h in lines[0].split("  ") if h.strip()] == headers
    assert lines[2].split() == ["0", "20", "10", "2", "0.5000", "80.00%", "1.0"]
    assert lines[-1].split() == ["mean", "±", "std", "0.5000", "±", "0.0000", "85.00", "±", "5.00%"]


def test_each_line_a_fold_prints_names_the_fold(tmp_path, capsys):
    run_cv(tmp_path)
    lines = capsys.readouterr().out.splitlines()
    epochs = [line for line in lines if "| epoch" in line]
    assert [line.split(" | ")[0] for line in epochs] == ["fold 0"] * 2 + ["fold 1"] * 2 + [
        "fold 2"
    ] * 2
