"""MNIST read pixel by pixel (784 steps of one pixel), in order or in one fixed permutation
that the run records; and the non-recurrent baseline every MNIST run is compared with."""

from __future__ import annotations

import json
import re

import pytest
import torch

from rnnlab.cli import main
from rnnlab.experiments import mnist
from rnnlab.experiments.mnist import MnistConfig, PixelSequence, build_model, load_data, pixel_order

QUIET = ["--no-progress", "--no-plots"]


def test_pixel_sequence_reads_one_pixel_per_step_in_the_given_order():
    images = torch.arange(2 * 2 * 3, dtype=torch.float32).view(2, 2, 3)  # (B, rows, cols)
    steps = PixelSequence()(images)  # (B, 6, 1)
    assert steps.shape == (2, 6, 1) and torch.equal(steps[1, :, 0], images[1].flatten())
    order = [5, 0, 3, 1, 4, 2]
    permuted = PixelSequence(order)(images)  # (B, 6, 1)
    assert torch.equal(permuted[0, :, 0], images[0].flatten()[order])


def test_the_permutation_is_fixed_by_its_seed_and_nothing_else():
    first = pixel_order(MnistConfig(sequence="permuted", permutation_seed=3))
    torch.manual_seed(123)  # the global generator does not move it
    assert pixel_order(MnistConfig(sequence="permuted", permutation_seed=3)) == first
    assert sorted(first) == list(range(784)) and first != list(range(784))
    assert pixel_order(MnistConfig(sequence="permuted", permutation_seed=4)) != first
    assert pixel_order(MnistConfig(sequence="pixels")) is None


@pytest.mark.parametrize("sequence", ["pixels", "permuted"])
def test_a_pixel_run_trains_records_its_order_and_is_rebuilt_the_same(
    sequence, tiny_mnist, tmp_path, capsys
):
    args = ["mnist", "--data-dir", str(tiny_mnist), "--val-size", "5", "--hidden", "8"]
    args += ["--layers", "1", "--nonlinearity", "relu", "--init", "identity"]
    args += ["--sequence", sequence, "--epochs", "1", "--out-dir", str(tmp_path), *QUIET]
    assert main(args) == 0
    run_dir = tmp_path / f"mnist-{sequence}"
    record = json.loads((run_dir / "config.json").read_text())
    config = MnistConfig(**record["config"])
    if sequence == "permuted":
        assert record["meta"]["pixel_order"] == pixel_order(config)
    else:
        assert "pixel_order" not in record["meta"]
    model = build_model(config, record["meta"])
    assert model[1].rnn.input_size == 1
    capsys.readouterr()
    assert main(["predict", str(run_dir), "--index", "2"]) == 0
    assert capsys.readouterr().out.startswith("predicted: ")


def test_a_saved_permuted_run_keeps_its_recorded_order(tiny_mnist):
    config = MnistConfig(sequence="permuted", data_dir=str(tiny_mnist), val_size=5, layers=1)
    meta = load_data(config).meta
    meta = {**meta, "pixel_order": list(reversed(range(784)))}  # as if drawn otherwise
    assert build_model(config, meta)[0].order.tolist() == meta["pixel_order"]


def test_an_unknown_sequence_is_one_line_and_status_2(capsys):
    assert main(["mnist", "--sequence", "columns"]) == 2
    assert "invalid choice: 'columns'" in capsys.readouterr().err


def test_the_baseline_scores_validation_and_test_and_is_cached(tiny_mnist, monkeypatch):
    config = MnistConfig(data_dir=str(tiny_mnist), val_size=5)
    data = load_data(config)
    result = mnist.baselines(config, data)
    scores = result[mnist.BASELINE]
    assert set(scores) == {"val_acc", "test_acc"}
    assert all(0.0 <= value <= 1.0 for value in scores.values())
    import sklearn.linear_model

    def refuse(*args, **kwargs):
        raise AssertionError("the cached baseline was fitted again")

    monkeypatch.setattr(sklearn.linear_model, "LogisticRegression", refuse)
    assert mnist.baselines(config, data) == result


def test_the_baseline_is_fitted_on_one_blas_thread_whatever_the_cores(tiny_mnist, monkeypatch):
    # L-BFGS stops at its cap, where the BLAS's thread count changes the path: on MNIST the
    # test figure was 92.39% on one thread and 92.52% on two
    import sklearn.linear_model
    from threadpoolctl import threadpool_info

    fitted = sklearn.linear_model.LogisticRegression.fit
    threads = []

    def fit(self, *args, **kwargs):
        threads.extend(
            pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"
        )
        return fitted(self, *args, **kwargs)

    monkeypatch.setattr(sklearn.linear_model.LogisticRegression, "fit", fit)
    config = MnistConfig(data_dir=str(tiny_mnist), val_size=5)
    mnist.baselines(config, load_data(config))
    assert threads and set(threads) == {1}


def test_bench_run_dry_run_prints_the_ratio_and_the_phases(tiny_mnist, no_network, capsys):
    from rnnlab.data import load_mnist

    load_mnist("mnist", data_dir=tiny_mnist)  # into the test's cache, where both runs read it
    assert main(["bench", "--run", "--dry-run", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "whole rnnlab training / one tutorial script epoch:" in out
    assert "tutorial script epoch 1:" in out
    for phase in ("data", "forward", "backward", "optimiser", "evaluation"):
        assert re.search(rf"^  {phase} +[0-9.]+ s", out, re.MULTILINE), phase
