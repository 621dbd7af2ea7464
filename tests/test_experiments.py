"""The experiment commands end to end, on data the tests make: seq2seq learns "hello" ->
"ohlol"; every command's --dry-run works; evaluate and predict rebuild a saved run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rnnlab.cli import main
from rnnlab.experiments.mnist import MnistConfig, RowClassifier
from rnnlab.experiments.seq2seq import Seq2SeqConfig, SequenceTagger, load_data
from rnnlab.models import make_rnn

QUIET = ["--no-progress", "--no-plots"]


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_seq2seq_default_learns_hello_to_ohlol(tmp_path, capsys):
    assert main(["seq2seq", "--out-dir", str(tmp_path), *QUIET]) == 0
    history = metrics(tmp_path / "seq2seq")
    assert len(history) == 15
    assert history[0]["val_acc"] < 1.0  # it starts wrong ...
    assert history[-1]["val_acc"] == 1.0  # ... and ends right
    assert history[-1]["predicted"] == "ohlol"
    assert "predicted 'ohlol'" in capsys.readouterr().out


@pytest.mark.parametrize("impl", ["rnnlab", "rnnlab-reference", "torch"])
def test_seq2seq_with_embedding_reaches_full_accuracy_on_every_impl(tmp_path, impl):
    args = ["seq2seq", "--embedding", "10", "--impl", impl, "--out-dir", str(tmp_path), *QUIET]
    assert main(args) == 0
    assert metrics(tmp_path / "seq2seq")[-1]["val_acc"] == 1.0


def test_seq2seq_impls_give_the_same_metrics(tmp_path):
    """The same seed and data through rnnlab's fast path and torch.nn.RNN: the same run."""
    runs = {}
    for impl in ("rnnlab", "torch"):
        out = tmp_path / impl
        assert main(["seq2seq", "--impl", impl, "--out-dir", str(out), *QUIET]) == 0
        runs[impl] = metrics(out / "seq2seq")
    for ours, theirs in zip(runs["rnnlab"], runs["torch"], strict=True):
        assert ours["predicted"] == theirs["predicted"]
        assert ours["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-4, abs=1e-5)


def test_seq2seq_word_pairs_of_unequal_length_are_padded_and_learned(tmp_path):
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("the cat sat\tDET NOUN VERB\na dog ran far\tDET NOUN VERB ADV\n")
    args = ["seq2seq", "--pairs", str(pairs), "--level", "word", "--epochs", "30"]
    assert main([*args, "--out-dir", str(tmp_path), *QUIET]) == 0
    last = metrics(tmp_path / "seq2seq")[-1]
    assert last["val_acc"] == 1.0
    assert last["predicted"] == "DET NOUN VERB"


def test_seq2seq_pair_of_unequal_length_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"'hello' has 5 characters, target 'oh' has 2"):
        load_data(Seq2SeqConfig(input="hello", target="oh"))


def test_evaluate_and_predict_rebuild_a_seq2seq_run(tmp_path, capsys):
    assert main(["seq2seq", "--out-dir", str(tmp_path), *QUIET]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "seq2seq")]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == 1.0
    assert main(["predict", str(tmp_path / "seq2seq"), "--text", "hello"]) == 0
    assert capsys.readouterr().out.strip() == "ohlol"


def test_mnist_dry_run_scores_the_test_split_and_leaves_nothing_behind(
    tiny_mnist, tmp_path, capsys
):
    args = ["mnist", "--data-dir", str(tiny_mnist), "--val-size", "5", "--hidden", "8"]
    assert main([*args, "--dry-run", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out
    assert not Path(out.split(" in ")[1].split()[0]).exists()  # the temporary folder is gone


def test_mnist_run_writes_a_complete_run_folder(tiny_mnist_run, capsys):
    run_dir = tiny_mnist_run
    for name in (
        "config.json",
        "metrics.jsonl",
        "checkpoint.pt",
        "best.pt",
        "test.json",
        "summary.json",
    ):
        assert (run_dir / name).is_file(), name
    test = json.loads((run_dir / "test.json").read_text())
    assert test["count"] == 10 and 0 <= test["test_acc"] <= 1


@pytest.mark.parametrize("impl", ["rnnlab", "rnnlab-reference", "torch"])
@pytest.mark.parametrize("init", ["default", "identity", "orthogonal"])
def test_mnist_trains_with_every_impl_and_init(tiny_mnist, tmp_path, impl, init):
    args = [
        "mnist",
        "--data-dir",
        str(tiny_mnist),
        "--val-size",
        "5",
        "--hidden",
        "8",
        "--layers",
        "2",
        "--epochs",
        "2",
        "--batch-size",
        "5",
        "--impl",
        impl,
        "--init",
        init,
    ]
    assert main([*args, "--out-dir", str(tmp_path), *QUIET]) == 0
    name = "mnist" if impl == "rnnlab" else f"mnist-{impl}"
    history = metrics(tmp_path / name)
    assert [r["epoch"] for r in history] == [1, 2]
    assert all(np.isfinite(r["train_loss"]) for r in history)


def test_mnist_evaluate_and_predict_from_index_and_png(
    tiny_mnist, tiny_mnist_run, tmp_path, capsys
):
    run_dir = tiny_mnist_run
    capsys.readouterr()
    assert main(["evaluate", str(run_dir), "--data-dir", str(tiny_mnist)]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 10
    assert main(["predict", str(run_dir), "--index", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("predicted: ") and "true label" in out
    assert len(out.strip().splitlines()) == 11  # the answer, then all ten probabilities
    png = tmp_path / "digit.png"
    Image.fromarray(np.full((28, 28), 200, dtype=np.uint8)).save(png)
    assert main(["predict", str(run_dir), "--image", str(png), "--invert"]) == 0
    probabilities = [float(line.split()[-1]) for line in capsys.readouterr().out.splitlines()[1:]]
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-3)


def test_predict_refuses_an_image_of_the_wrong_size(tiny_mnist_run, tmp_path, capsys):
    png = tmp_path / "big.png"
    Image.fromarray(np.zeros((32, 32), dtype=np.uint8)).save(png)
    assert main(["predict", str(tiny_mnist_run), "--image", str(png)]) == 2
    assert "expected a 28x28 image, got 32x32" in capsys.readouterr().err


def test_evaluate_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnlab evaluate: error: ") and "not an rnnlab run folder" in err
    assert "Traceback" not in err


def test_a_finished_run_is_not_overwritten_without_resume(tmp_path, capsys):
    assert main(["seq2seq", "--out-dir", str(tmp_path), *QUIET]) == 0
    before = (tmp_path / "seq2seq" / "metrics.jsonl").read_text()
    assert main(["seq2seq", "--out-dir", str(tmp_path), *QUIET]) == 2
    assert "resume" in capsys.readouterr().err
    assert main(["seq2seq", "--out-dir", str(tmp_path), "--resume", *QUIET]) == 0
    assert (tmp_path / "seq2seq" / "metrics.jsonl").read_text() == before


def test_a_named_run_refuses_changed_experiment_settings(tmp_path, capsys):
    assert main(["seq2seq", "--out-dir", str(tmp_path), *QUIET]) == 0
    before = (tmp_path / "seq2seq" / "metrics.jsonl").read_text()
    args = ["seq2seq", "--hidden", "16", "--name", "seq2seq", "--out-dir", str(tmp_path)]
    assert main([*args, "--resume", *QUIET]) == 2
    assert "config.hidden: 8 -> 16" in capsys.readouterr().err
    assert (tmp_path / "seq2seq" / "metrics.jsonl").read_text() == before  # never overwritten


def test_a_run_with_other_settings_gets_a_folder_of_its_own(tmp_path, capsys):
    assert main(["seq2seq", "--out-dir", str(tmp_path), *QUIET]) == 0
    capsys.readouterr()
    assert main(["seq2seq", "--embedding", "10", "--out-dir", str(tmp_path), *QUIET]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"run folder: {tmp_path / 'seq2seq-2'}"
    assert main(["seq2seq", "--out-dir", str(tmp_path), "--resume", *QUIET]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"run folder: {tmp_path / 'seq2seq'}"
    assert main(["seq2seq", "--embedding", "10", "--out-dir", str(tmp_path), "--resume"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"run folder: {tmp_path / 'seq2seq-2'}"


def test_bad_option_values_end_in_one_line_not_a_traceback(capsys):
    assert main(["seq2seq", "--input", "hello", "--target", "ohlo", *QUIET]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnlab seq2seq: error: pair 0: source 'hello' has 5 characters")
    assert "Traceback" not in err


def test_bad_choices_are_refused_listing_the_valid_ones(capsys):
    assert main(["mnist", "--impl", "keras"]) == 2
    assert "choose from 'rnnlab', 'rnnlab-reference', 'torch'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="impl must be one of rnnlab, rnnlab-reference, torch"):
        make_rnn("rnn", "keras", 3, 4)
    with pytest.raises(ValueError, match="cell must be one of rnn, gru, lstm"):
        make_rnn("elman", "rnnlab", 3, 4)


def test_bench_dry_run_prints_the_comparison_table(capsys):
    assert main(["bench", "--dry-run", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "torch ms" in out and "rnnlab ms" in out and "vs torch" in out
    assert "dry-run" in out and "fwd+bwd" in out
    assert "dry-packed" in out  # a PackedSequence of unequal lengths, as langid feeds it


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_models_map_shapes_as_documented(cell):
    def rnn_of(hidden, layers):
        return lambda size: make_rnn(cell, "rnnlab", size, hidden, layers)

    tagger = SequenceTagger(vocab_size=5, num_classes=3, make_rnn=rnn_of(4, 2))
    assert tagger(torch.zeros(2, 7, dtype=torch.int64)).shape == (2, 7, 3)
    embedded = SequenceTagger(vocab_size=5, num_classes=3, make_rnn=rnn_of(4, 1), embedding_dim=6)
    assert embedded(torch.zeros(2, 7, dtype=torch.int64)).shape == (2, 7, 3)
    classifier = RowClassifier(rnn_of(8, 3)(28))
    assert classifier(torch.rand(4, 28, 28)).shape == (4, 10)


def test_seq2seq_dry_run_trains_one_epoch_into_a_temporary_folder(tmp_path, capsys):
    assert main(["seq2seq", "--dry-run", *QUIET]) == 0
    out = capsys.readouterr().out
    folder = Path(out.split(" in ")[1].split()[0])
    assert folder.name.startswith("rnnlab-dry-run-")  # not under ./runs
    assert "epoch 1/1" in out and not folder.exists()


def test_evaluate_dry_run_scores_at_most_two_batches(tiny_mnist, tiny_mnist_run, capsys):
    capsys.readouterr()
    evaluate = ["evaluate", str(tiny_mnist_run), "--data-dir", str(tiny_mnist), "--dry-run"]
    assert main(evaluate) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 10  # one batch of 1000 holds all ten


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"impl": "keras"}, "impl must be one of rnnlab, rnnlab-reference, torch; got 'keras'"),
        ({"nonlinearity": "gelu"}, "nonlinearity must be one of tanh, relu; got 'gelu'"),
        ({"hidden": 0}, "hidden must be at least 1, got 0"),
        ({"batch_size": 0}, "batch_size must be >= 1, got 0"),
    ],
)
def test_experiment_configs_refuse_bad_settings_naming_them(settings, message):
    for config_class in (MnistConfig, Seq2SeqConfig):
        with pytest.raises(ValueError, match=re.escape(message)):
            config_class(**settings)


def test_predict_and_evaluate_name_tokens_the_run_never_saw(tmp_path, capsys):
    assert main(["seq2seq", "--out-dir", str(tmp_path), *QUIET]) == 0
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "seq2seq"), "--text", "hexxo"]) == 2
    assert "holds tokens this run was never trained on: 'x'" in capsys.readouterr().err
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("hallo\tohlol\n")
    assert main(["evaluate", str(tmp_path / "seq2seq"), "--pairs", str(pairs)]) == 2
    assert "never trained on: 'a'; it knows 'e', 'h', 'l', 'o'" in capsys.readouterr().err


def test_the_recurrent_network_options_refuse_what_the_cell_lacks(capsys):
    assert main(["seq2seq", "--cell", "gru", "--nonlinearity", "relu", *QUIET]) == 2
    assert "a GRU has its own" in capsys.readouterr().err
    assert main(["seq2seq", "--forget-bias", "1", *QUIET]) == 2
    assert "--cell rnn has none" in capsys.readouterr().err


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_every_cell_builds_the_network_its_options_describe(cell):
    from rnnlab.experiments.seq2seq import Seq2SeqConfig

    extra = {"forget_bias": 2.0} if cell == "lstm" else {}
    config = Seq2SeqConfig(cell=cell, hidden=6, layers=2, init="orthogonal", **extra)
    rnn = config.build_rnn(4)
    assert type(rnn).__name__ == cell.upper() and rnn.num_layers == 2 and rnn.hidden_size == 6
    assert rnn.batch_first
    if cell == "lstm":
        assert torch.equal(rnn.bias_ih_l1[6:12], torch.full((6,), 2.0))
    torch_rnn = Seq2SeqConfig(cell=cell, impl="torch").build_rnn(4)
    assert type(torch_rnn) is getattr(torch.nn, cell.upper())
