"""What a user can do to the text surfaces (lm, generate, evaluate, settings files, predict)
without losing a run, memory or an honest answer: each a crash, a bound or a silent wrong
result found in issue 22, pinned in seconds on tiny files made here."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import pytest
import torch

from rnnlab.cli import main
from rnnlab.data import Vocabulary
from rnnlab.experiments import lm
from rnnlab.experiments.experiment import printable
from rnnlab.experiments.lm import LanguageModel
from rnnlab.files import BASELINES_FILE, BEST_FILE, LOCK_FILE
from rnnlab.models import make_rnn
from rnnlab.train import evaluate, load_checkpoint

QUIET = ["--no-progress", "--no-plots"]
SMALL = ["--hidden", "16", "--embedding", "8", "--bptt", "20", "--batch-size", "4"]
SMALL += ["--sample-length", "30", "--threads", "1", "--epochs", "1"]
NO_NEWLINE = "the cat sat on the mat. " * 40  # 960 characters, not one '\n'


def one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"rnnlab {command}: error: "), err
    return err


@pytest.fixture
def text_run(tmp_path, monkeypatch, capsys) -> Path:
    """A finished lm run of a text without a newline, trained from tmp_path with a relative
    --text-file; the current folder is then another one."""
    monkeypatch.chdir(tmp_path)
    Path("text.txt").write_text(NO_NEWLINE)
    assert main(["lm", "--text-file", "text.txt", *SMALL, *QUIET]) == 0
    capsys.readouterr()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    return tmp_path / "runs" / "lm"


# --- crashes that lost the run -----------------------------------------------------------------


def test_a_text_without_a_newline_trains_samples_and_generates(tmp_path, capsys):
    (tmp_path / "text.txt").write_text(NO_NEWLINE)
    argv = ["lm", "--text-file", str(tmp_path / "text.txt"), *SMALL, *QUIET]
    assert main([*argv, "--out-dir", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "--- sample after epoch 1 --- " in out  # starts from ' ', the text's lowest character
    run = tmp_path / "runs" / "lm"
    assert (run / "samples.txt").read_text().startswith("--- epoch 1 --- ")
    assert main(["generate", str(run), "--length", "10"]) == 0
    assert capsys.readouterr().out.startswith(" ")


@pytest.mark.parametrize("named", [False, True])
def test_a_folder_killed_while_scoring_baselines_is_the_same_run_starting_again(
    tmp_path, capsys, named
):
    (tmp_path / "text.txt").write_text(NO_NEWLINE)
    dead = tmp_path / "runs" / "lm"
    dead.mkdir(parents=True)
    (dead / LOCK_FILE).write_text("12345")
    (dead / BASELINES_FILE).write_text('{"stale": {"val_loss": 9.0}}')  # of settings unknown
    argv = ["lm", "--text-file", str(tmp_path / "text.txt"), *SMALL, *QUIET]
    argv += ["--out-dir", str(tmp_path / "runs"), *(["--name", "lm"] if named else [])]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"run folder: {dead}\n" in out and "baseline stale" not in out
    assert not (tmp_path / "runs" / "lm-2").exists()
    assert "stale" not in (dead / BASELINES_FILE).read_text()


# --- unbounded memory or time ------------------------------------------------------------------


class Fixed(torch.nn.Module):
    """Logits (B, C) of zeros with a parameter, whatever the input."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.classes = classes
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return torch.zeros(len(x), self.classes) + self.weight


def test_no_confusion_matrix_is_counted_past_a_classifiers_class_count():
    batch = [(torch.zeros(4, 1), torch.tensor([0, 1, 2, 3]))]
    assert evaluate(Fixed(10), batch, confusion=True).confusion.shape == (10, 10)
    assert evaluate(Fixed(10_001), batch, confusion=True).confusion is None  # 800 MB avoided


def test_a_word_level_lm_checkpoint_holds_no_vocabulary_squared_matrix(tmp_path, capsys):
    words = " ".join(f"w{i}" for i in range(1200)) + " "  # 1,200 distinct words
    (tmp_path / "words.txt").write_text(words * 3)
    argv = ["lm", "--text-file", str(tmp_path / "words.txt"), "--level", "word"]
    argv += ["--words", "1200", *SMALL, *QUIET, "--out-dir", str(tmp_path)]
    assert main(argv) == 0
    assert load_checkpoint(tmp_path / "lm" / "checkpoint.pt")["best_confusion"] is None


def _alias_bomb() -> str:
    levels = ["&l0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    levels += [f"&l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    return f"hidden: [{', '.join(levels)}]\n"  # 9**9 integers once expanded


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (_alias_bomb(), "the alias *l0 (line 1) is refused in a settings file"),
        ('{"hidden": ' + "[" * 1000 + "]" * 1000 + "}", "nested deeper than 20 levels"),
        ('{"experiment": "lm", "config": [1, 2], "train": {}}', "'config' must be a mapping"),
        ('{"experiment": "lm", "config": {}, "train": null}', "'train' must be a mapping"),
    ],
    ids=["alias-bomb", "depth-1000", "config-list", "train-null"],
)
def test_a_hostile_settings_file_is_one_line_before_anything_expands(
    tmp_path, capsys, text, message
):
    (tmp_path / "settings.yaml").write_text(text)
    assert main(["lm", "--config", str(tmp_path / "settings.yaml"), "--print-config"]) == 2
    assert message in one_line_error(capsys, "lm")


def test_a_vocabulary_whose_batch_cannot_fit_is_refused_naming_its_size(tmp_path, capsys):
    (tmp_path / "cjk.txt").write_text("".join(chr(0x4E00 + i) for i in range(5000)) * 2)
    argv = ["lm", "--text-file", str(tmp_path / "cjk.txt"), "--dry-run"]
    assert main([*argv, "--batch-size", "100000", "--bptt", "100000"]) == 2
    err = one_line_error(capsys, "lm")
    assert "a vocabulary of 5,000 char tokens needs about" in err
    assert "use --level word with --words for fewer tokens, or a smaller --batch-size" in err


class CountingHead(torch.nn.Linear):
    def forward(self, h):
        self.shapes.append(tuple(h.shape))
        return super().forward(h)


def test_generation_runs_the_output_layer_on_the_last_prompt_position_only():
    model = LanguageModel(5, 4, lambda e: make_rnn("gru", "rnnlab", e, 8, 1))
    model.head.__class__, model.head.shapes = CountingHead, []
    ids = list(lm.generate_ids(model, [1] * 2000, 3, generator=torch.Generator()))
    assert len(ids) == 3 and model.head.shapes == [(8,)] * 4  # the prompt's last, then each


def test_a_sample_streams_piece_by_piece_and_its_length_is_bounded(capsys):
    vocab = Vocabulary(list("ab\n"), level="char")
    model = LanguageModel(3, 4, lambda e: make_rnn("rnn", "rnnlab", e, 8, 1))
    pieces = lm.sample_pieces(model, vocab, "a", 10**9)  # taken lazily: nothing piles up
    assert len(list(itertools.islice(pieces, 5))) == 5
    assert main(["lm", "--sample-length", "1000000000", "--print-config"]) == 2
    assert "sample_length must be <= 100000" in one_line_error(capsys, "lm")


# --- tracebacks and silent wrong results -------------------------------------------------------


def test_a_tiny_temperature_draws_the_likeliest_token():
    model = LanguageModel(5, 4, lambda e: make_rnn("lstm", "rnnlab", e, 8, 1)).eval()
    likeliest = list(lm.generate_ids(model, [0, 1], 20, top_k=1, generator=torch.Generator()))
    tiny = list(lm.generate_ids(model, [0, 1], 20, temperature=1e-308))
    assert tiny == likeliest


def test_evaluate_refuses_a_text_changed_in_place_and_names_the_text_it_scored(text_run, capsys):
    assert main(["evaluate", str(text_run)]) == 0  # from another folder: the path is whole
    scored = json.loads(capsys.readouterr().out)
    assert scored["data"] == f"file {text_run.parents[1] / 'text.txt'}"
    (text_run.parents[1] / "text.txt").write_text(NO_NEWLINE.replace("cat", "tac"))
    assert main(["evaluate", str(text_run)]) == 2
    assert "its data changed since the run was trained" in one_line_error(capsys, "evaluate")
    assert main(["explain", str(text_run)]) == 2  # nor is another text explained
    assert "its data changed since the run was trained" in one_line_error(capsys, "explain")
    other = text_run.parents[1] / "text.txt"
    assert main(["evaluate", str(text_run), "--text-file", str(other)]) == 0  # asked for


def test_an_old_record_with_a_relative_text_file_is_still_the_same_run(text_run, capsys):
    record = json.loads((text_run / "config.json").read_text())
    record["config"]["text_file"], record["where_fields"] = "text.txt", ["data_dir"]
    (text_run / "config.json").write_text(json.dumps(record))
    argv = ["lm", "--text-file", str(text_run.parents[1] / "text.txt"), *SMALL, *QUIET]
    assert main([*argv, "--out-dir", str(text_run.parent), "--resume"]) == 0
    assert f"run folder: {text_run}\n" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["lm", "--seed", "4294967296"],
        ["lm", "--seed", "-1"],
        ["langid", "--split-seed", "-1"],
        ["postag", "--split-seed", "4294967296"],
        ["mnist", "--permutation-seed", "4294967296"],
    ],
)
def test_a_seed_outside_what_the_generators_keep_is_one_line(argv, capsys):
    assert main([*argv, "--print-config"]) == 2
    assert "must be" in one_line_error(capsys, argv[0])


def test_generate_refuses_a_64_bit_seed_and_says_when_best_pt_is_missing(text_run, capsys):
    assert main(["generate", str(text_run), "--seed", str(2**64)]) == 2
    assert "seed must be <= 4294967295" in one_line_error(capsys, "generate")
    (text_run / BEST_FILE).unlink()
    assert main(["generate", str(text_run), "--length", "5"]) == 0
    err = capsys.readouterr().err
    assert (
        err == f"rnnlab: note: {text_run} has no best.pt; using checkpoint.pt, the weights "
        "of its last finished epoch\n"
    )


def test_ctrl_c_is_one_line_status_130_and_the_run_resumes(tmp_path, capsys):
    (tmp_path / "text.txt").write_text(NO_NEWLINE)

    def interrupted_at_epoch_2(config, data, model, metrics, run_dir):
        if metrics["epoch"] == 2:
            raise KeyboardInterrupt  # after epoch 1's checkpoint
        return lm.bits_or_perplexity(config, data, model, metrics, run_dir)

    killed = dataclasses.replace(lm.EXPERIMENT, on_epoch_end=interrupted_at_epoch_2)
    argv = ["lm", "--text-file", str(tmp_path / "text.txt"), *SMALL, *QUIET]
    argv = [*argv, "--out-dir", str(tmp_path), "--epochs", "2"]
    assert main(argv, experiments=(killed,)) == 130
    err = capsys.readouterr().err
    assert err == "rnnlab lm: interrupted (--resume continues from the last finished epoch)\n"
    assert main([*argv, "--resume"]) == 0
    out = capsys.readouterr().out
    assert "after epoch 1" in out and "--- sample after epoch 2 --- " in out  # no '\n' held


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["langid", "--words", "1"], "--words must be >= 20"),
        (["langid", "--split-seed", "-1"], "split_seed must be >= 0"),
    ],
)
def test_langid_settings_scikit_learn_would_reject_are_one_line(argv, message, capsys):
    assert main([*argv, "--print-config"]) == 2
    assert message in one_line_error(capsys, "langid")


def test_cv_with_more_folds_than_a_stratified_class_holds_is_one_line(tiny_mnist, capsys):
    argv = ["cv", "mnist", "--data-dir", str(tiny_mnist), "--folds", "15", "--dry-run"]
    assert main(argv) == 2
    assert "stratified folds share out each class" in one_line_error(capsys, "cv")


def test_predicted_input_is_echoed_with_its_control_characters_escaped():
    assert printable("ok\x1b[2J\rword\n") == "ok\\x1b[2J\\rword\\n"
    assert printable("naïve café") == "naïve café"


def test_more_threads_than_cores_is_a_warning(capsys):
    assert main(["lm", "--threads", "1000", "--print-config"]) == 0
    assert "--threads 1000 is more than the" in capsys.readouterr().err


def test_an_lm_counts_tokens_and_calls_its_accuracy_next_token(tmp_path, capsys):
    (tmp_path / "text.txt").write_text(NO_NEWLINE)
    argv = ["lm", "--text-file", str(tmp_path / "text.txt"), *SMALL, *QUIET]
    assert main([*argv, "--out-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert " tokens/s " in out and "samples" not in out
    assert "test next-token accuracy" in out and " tokens, model of epoch 1" in out
    record = json.loads((tmp_path / "lm" / "metrics.jsonl").read_text())
    assert "tokens_per_s" in record and "samples_per_s" not in record
