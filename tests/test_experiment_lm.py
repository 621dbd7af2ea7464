"""`rnnlab lm` end to end on a small play written by the test: baselines, samples, the best
epoch by validation loss, generate, evaluate, resume, cv, dry run, word level, shards of
streams."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest
import torch

from rnnlab.cli import main
from rnnlab.data.lm_text import StreamWindows
from rnnlab.experiments import lm
from rnnlab.experiments.experiment import train
from rnnlab.train import TrainConfig

QUIET = ["--no-progress", "--no-plots"]
SMALL = ["--hidden", "24", "--embedding", "12", "--bptt", "20", "--batch-size", "4"]
SMALL += ["--sample-length", "40", "--threads", "1"]


@pytest.fixture(scope="module")
def play(tmp_path_factory) -> Path:
    """A little play in the corpus's layout: speaker, colon, a line of speech, blank line."""
    rng = random.Random(0)
    words = ["to", "be", "or", "not", "that", "is", "the", "question", "whether", "tis"]
    lines = []
    for i in range(150):
        lines += ["HAMLET:" if i % 2 else "OPHELIA:", " ".join(rng.choices(words, k=7)) + ".", ""]
    path = tmp_path_factory.mktemp("play") / "play.txt"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def run_lm(play: Path, out: Path, *extra: str) -> int:
    return main(["lm", "--text-file", str(play), "--out-dir", str(out), *SMALL, *QUIET, *extra])


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_run_prints_its_baselines_samples_each_epoch_and_keeps_the_lowest_val_loss(
    play, tmp_path, capsys
):
    assert run_lm(play, tmp_path, "--epochs", "3") == 0
    out = capsys.readouterr().out
    run = tmp_path / "lm"
    baselines = json.loads((run / "baselines.json").read_text())
    unigram, ngram = baselines
    assert unigram == "unigram" and ngram.startswith("Kneser-Ney ")
    assert baselines["unigram"]["val_bpc"] == pytest.approx(
        baselines["unigram"]["val_loss"] / torch.log(torch.tensor(2.0)).item()
    )
    assert "baseline unigram: val loss " in out
    samples = (run / "samples.txt").read_text()
    assert [f"--- epoch {e} ---" in samples for e in (1, 2, 3)] == [True] * 3
    assert out.count("--- sample after epoch") == 3
    history = metrics(run)
    assert all("val_bpc" in r for r in history)
    best = min(history, key=lambda r: r["val_loss"])
    assert torch.load(run / "best.pt", weights_only=True)["epoch"] == best["epoch"]
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["best_metric"], summary["best_epoch"]) == ("val_loss", best["epoch"])
    test = json.loads((run / "test.json").read_text())
    assert test["epoch"] == best["epoch"] and test["test_bpc"] > 0
    assert history[-1]["val_loss"] < baselines["unigram"]["val_loss"]  # it learned something


def test_generate_streams_the_same_text_for_the_same_seed(play, tmp_path, capsys):
    assert run_lm(play, tmp_path, "--epochs", "1") == 0
    capsys.readouterr()
    texts = []
    for seed in ("1", "1", "2"):
        args = ["generate", str(tmp_path / "lm"), "--prompt", "HAMLET:", "--length", "80"]
        assert main([*args, "--seed", seed, "--top-k", "5"]) == 0
        texts.append(capsys.readouterr().out)
    assert texts[0] == texts[1] != texts[2]
    assert texts[0].startswith("HAMLET:") and len(texts[0]) == len("HAMLET:") + 80 + 1


def test_evaluate_scores_the_test_text_again_with_the_carried_state(play, tmp_path, capsys):
    assert run_lm(play, tmp_path, "--epochs", "1") == 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "lm")]) == 0
    scored = json.loads(capsys.readouterr().out)
    test = json.loads((tmp_path / "lm" / "test.json").read_text())
    assert scored["loss"] == pytest.approx(test["test_loss"], rel=1e-6)
    assert scored["test_bpc"] == pytest.approx(test["test_bpc"], rel=1e-6)


def test_a_prompt_character_the_run_never_saw_is_one_line_and_status_2(play, tmp_path, capsys):
    assert run_lm(play, tmp_path, "--epochs", "1") == 0
    capsys.readouterr()
    assert main(["generate", str(tmp_path / "lm"), "--prompt", "Zebra@"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'Z' is not in the vocabulary" in err


def test_a_resumed_run_ends_exactly_like_an_uninterrupted_one(play, tmp_path):
    config = lm.LMConfig(
        text_file=str(play), hidden=16, embedding=8, bptt=20, batch_size=4, sample_length=0
    )
    settings = dict(epochs=3, lr=3e-3, schedule="cosine", warmup=5, grad_clip=1.0)
    whole = TrainConfig(**settings, out_dir=str(tmp_path), name="whole", progress=False)
    train(lm.EXPERIMENT, config, whole)

    def stop_at_epoch_2(config, data, model, metrics, run_dir):
        if metrics["epoch"] == 2:
            raise KeyboardInterrupt  # after epoch 1's checkpoint, before epoch 2's
        return lm.bits_or_perplexity(config, data, model, metrics, run_dir)

    killed = dataclasses.replace(lm.EXPERIMENT, on_epoch_end=stop_at_epoch_2)
    part = dataclasses.replace(whole, name="part")
    with pytest.raises(KeyboardInterrupt):
        train(killed, config, part)
    train(lm.EXPERIMENT, config, dataclasses.replace(part, resume=True))
    timing = ("seconds", "tokens_per_s")
    strip = [{k: v for k, v in r.items() if k not in timing} for r in metrics(tmp_path / "whole")]
    assert strip == [
        {k: v for k, v in r.items() if k not in timing} for r in metrics(tmp_path / "part")
    ]


def test_dry_run_trains_a_few_windows_and_skips_the_baselines(play, capsys):
    args = ["lm", "--text-file", str(play), *SMALL, *QUIET, "--dry-run"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "baselines: not scored" in out and "epoch 1/1" in out and "test bpc" in out


def test_word_level_reports_perplexity(play, tmp_path, capsys):
    assert run_lm(play, tmp_path, "--epochs", "1", "--level", "word", "--words", "10") == 0
    out = capsys.readouterr().out
    assert "11 tokens" in out  # the 10 most frequent tokens (marks and newline too) + <unk>
    assert "val_ppl" in metrics(tmp_path / "lm")[0]
    assert "test ppl" in out


def test_cv_folds_the_training_text_in_contiguous_stretches(play, tmp_path, capsys):
    args = ["cv", "lm", "--text-file", str(play), "--out-dir", str(tmp_path), *SMALL, *QUIET]
    assert main([*args, "--folds", "2", "--epochs", "1"]) == 0
    cv = json.loads((tmp_path / "cv-lm" / "cv.json").read_text())
    assert cv["shuffle"] is False and cv["stratified"] is False
    assert len(cv["per_fold"]) == 2


def test_tied_weights_need_equal_sizes_one_line_and_status_2(play, capsys):
    assert main(["lm", "--text-file", str(play), "--tied", "--dry-run", *QUIET]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--tied needs --embedding equal to --hidden" in err


def test_the_processes_shares_of_streams_make_up_every_stream_once():
    windows = StreamWindows(torch.arange(97), streams=4, bptt=5)
    shares = [windows.shard(rank, 2) for rank in range(2)]
    for w in range(len(windows)):
        x, y = windows[w]
        torch.testing.assert_close(torch.cat([share[w][0] for share in shares]), x)
        torch.testing.assert_close(torch.cat([share[w][1] for share in shares]), y)
    with pytest.raises(ValueError, match="4 streams cannot be shared equally by 3 processes"):
        windows.shard(0, 3)
