"""`rnnlab langid` on wordfreq-style lists of 18 made-up languages written here (no network):
the lists come through --data-dir and their checksums; a packed batch scores each word as if it
were alone; the n-gram baseline; train, evaluate, predict and stratified cv end to end."""

from __future__ import annotations

import gzip
import json

import msgpack
import numpy as np
import pytest
import torch
from scipy.stats import binomtest
from torch.nn.utils.rnn import pack_sequence

from rnnlab.cli import main
from rnnlab.data import LANGUAGES
from rnnlab.experiments import langid
from rnnlab.models import make_rnn
from rnnlab.train.loop import _to_device

pytestmark = pytest.mark.usefixtures("no_network")
QUIET = ["--no-progress", "--no-plots"]
TINY = ["--words", "20", "--hidden", "8", "--embedding", "6", "--batch-size", "16"]


def test_langid_dry_run_reads_the_lists_through_data_dir(lists, capsys):
    assert main(["langid", "--dry-run", "--data-dir", str(lists), *TINY, *QUIET]) == 0
    out = capsys.readouterr().out
    assert "360 words of 18 languages (0 in two or more top-20 lists dropped)" in out
    assert "288 train, 36 validation, 36 test" in out
    assert "test macro f1" in out and "test acc per language" in out


def test_a_list_that_does_not_match_its_checksum_is_refused(lists, capsys):
    (lists / "small_fi.msgpack.gz").write_bytes(gzip.compress(msgpack.packb([{}, ["x"]])))
    assert main(["langid", "--dry-run", "--data-dir", str(lists), *TINY, *QUIET]) == 2
    assert "small_fi.msgpack.gz" in capsys.readouterr().err


def rnn_of(hidden: int, layers: int = 1, cell: str = "rnn", impl: str = "rnnlab", **kwargs):
    """A factory of the classifier's recurrent network (input size -> module)."""
    return lambda size: make_rnn(cell, impl, size, hidden, layers, **kwargs)


@pytest.mark.parametrize("impl", ["rnnlab", "rnnlab-reference", "torch"])
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_a_packed_batch_scores_each_word_as_if_it_were_alone(impl, cell, bidirectional):
    model = langid.WordClassifier(
        vocab_size=9, num_classes=4, embedding_dim=3,
        make_rnn=rnn_of(5, 2, cell, impl, bidirectional=bidirectional),
    ).eval()  # fmt: skip
    ids = ([1, 2, 3], [4, 5, 6, 7, 8, 1, 2], [3, 3, 3, 3], [8])
    words = [torch.tensor(w)[:, None] for w in ids]  # (T_i, 1): characters alone
    batch = model(pack_sequence(words, enforce_sorted=False))  # (4, 4)
    alone = torch.cat([model(pack_sequence([w])) for w in words])  # (4, 4)
    torch.testing.assert_close(batch, alone)
    if not bidirectional:  # forwards, padding after a word's end changes none of its steps
        torch.testing.assert_close(batch, padded_and_masked(model, words))


def padded_and_masked(model: langid.WordClassifier, words: list) -> torch.Tensor:
    """The classifier's logits from a padded batch, the pads masked out of every pooling."""
    lengths = torch.tensor([len(w) for w in words])  # (B,)
    ids = torch.nn.utils.rnn.pad_sequence(words, batch_first=True)[..., 0]  # (B, T), 0 past the end
    h, _ = model.rnn(model.embedding(ids))  # (B, T, H): steps past the end are garbage
    real = (torch.arange(ids.shape[1])[None] < lengths[:, None])[..., None]  # (B, T, 1)
    pooled = {
        "last": h[torch.arange(len(words)), lengths - 1],  # (B, H)
        "max": h.masked_fill(~real, float("-inf")).amax(dim=1),  # (B, H)
        "mean": (h * real).sum(dim=1) / lengths[:, None],  # (B, H)
    }
    return model.head(torch.cat([pooled[p] for p in model.pool], dim=-1))  # (B, C)


@pytest.mark.parametrize("pool", [("mean",), ("max", "last"), ("last", "mean")])
def test_each_pool_scores_a_packed_batch_as_padded_and_masked(pool):
    model = langid.WordClassifier(
        vocab_size=9, num_classes=4, make_rnn=rnn_of(5), embedding_dim=3, pool=pool,
    ).eval()  # fmt: skip
    assert model.head.in_features == 5 * len(pool)
    words = [torch.tensor(w)[:, None] for w in ([1, 2, 3], [4, 5, 6, 7, 8, 1, 2], [8])]
    batch = model(pack_sequence(words, enforce_sorted=False))  # (3, 4)
    torch.testing.assert_close(batch, padded_and_masked(model, words))


def test_one_hot_characters_and_a_packed_batch_survive_the_move_to_a_device():
    model = langid.WordClassifier(vocab_size=6, num_classes=3, make_rnn=rnn_of(4)).eval()
    packed, labels = langid.collate([(torch.tensor([[1], [2], [5]]), torch.tensor(2))] * 2)
    moved = _to_device(packed, torch.device("cpu"))
    assert type(moved) is type(packed)
    torch.testing.assert_close(model(moved), model(packed))
    assert labels.tolist() == [2, 2]


def test_characters_are_numbered_from_training_and_unknown_ones_are_zero():
    vocabulary = langid.WordEncoder({"characters": "$^ab"})
    assert vocabulary.encode("abz").tolist() == [[2], [3], [4], [0], [1]]


def test_each_step_reads_the_ngrams_seen_twice_that_end_at_its_character():
    grams = langid.ngram_list(["ab", "ab", "ba"], 3, min_count=2)
    assert grams == ["^a", "^ab", "ab", "ab$", "b$"]  # ^b, ba, a$, ^ba, ba$ are seen once
    everything = langid.ngram_list(["ab", "ab", "ba"], 3, min_count=1)
    assert everything == sorted([*grams, "^b", "ba", "a$", "^ba", "ba$"])
    vocabulary = langid.WordEncoder({"characters": "$^ab", "order": 3, "ngrams": grams})
    #  ^      a         b          $
    assert vocabulary.encode("ab").tolist() == [
        [2, 0, 0], [3, 1, 0], [4, 3, 2], [1, 5, 4]
    ]  # fmt: skip
    assert vocabulary.encode("ba").tolist() == [[2, 0, 0], [4, 0, 0], [3, 0, 0], [1, 0, 0]]
    longer = langid.WordEncoder({"characters": "$^ab", "order": 6, "ngrams": grams})
    assert longer.encode("a").tolist() == [
        [2, 0, 0, 0, 0, 0],
        [3, 1, 0, 0, 0, 0],
        [1, 0, 0, 0, 0, 0],
    ]  # a word shorter than an n-gram has none of that length


@pytest.mark.parametrize("impl", ["rnnlab", "torch"])
def test_ngram_embeddings_add_to_the_character_and_keep_words_independent(impl):
    model = langid.WordClassifier(
        vocab_size=6, num_classes=3, make_rnn=rnn_of(4, impl=impl), embedding_dim=5, ngrams=7
    ).eval()
    assert model.ngram_embedding.weight.abs().sum() == 0  # untrained n-grams read as unseen
    with torch.no_grad():
        model.ngram_embedding.weight[1:].normal_()  # as if trained
    words = [torch.tensor([[1, 0, 0], [2, 3, 0], [5, 4, 7]]), torch.tensor([[2, 0, 0], [4, 1, 0]])]
    batch = model(pack_sequence(words, enforce_sorted=False))  # (2, 3)
    alone = torch.cat([model(pack_sequence([w])) for w in words])  # (2, 3)
    torch.testing.assert_close(batch, alone)
    assert model.ngram_embedding.weight[langid.UNKNOWN].abs().sum() == 0  # an unseen n-gram adds 0
    without = words[0].clone()
    without[2, 1:] = 0  # the last step's n-grams unseen: the word's logits change
    assert not torch.allclose(model(pack_sequence([without])), alone[:1])


def test_the_ngram_baseline_tells_the_made_up_languages_apart(lists):
    config = langid.LangidConfig(words=20, data_dir=str(lists))
    (name, scores), *others = langid.baselines(config, langid.load_data(config)).items()
    assert name == "char 1-4-gram tf-idf + linear SVM" and not others
    assert sorted(scores) == ["test_acc", "test_macro_f1", "val_acc", "val_macro_f1"]
    assert min(scores.values()) > 0.9  # neighbouring languages share one of their 3 letters


def test_the_paired_comparison_counts_the_words_one_method_alone_gets_right():
    truth = np.zeros(14, dtype=int)
    # words 0-8: the RNN alone right; 9: the baseline alone; 10: both; 11-13: neither
    rnn = np.array([0] * 9 + [1] + [0] + [1, 1, 1])
    baseline = np.array([1] * 9 + [0] + [0] + [1, 2, 2])
    got = langid.versus_baseline(truth, rnn, baseline)
    assert got["test_right_rnn_only"] == 9 and got["test_right_baseline_only"] == 1
    # two-sided exact binomial at 1/2: 2 P(X <= 1), X ~ B(10, 1/2)
    assert got["test_mcnemar_p"] == pytest.approx(2 * (1 + 10) / 2**10)
    swapped = langid.versus_baseline(truth, baseline, rnn)
    assert swapped["test_mcnemar_p"] == pytest.approx(got["test_mcnemar_p"])  # two-sided
    level = langid.versus_baseline(truth, rnn, rnn)  # no word splits them
    assert (level["test_right_rnn_only"], level["test_mcnemar_p"]) == (0, 1.0)


def test_train_evaluate_predict_and_stratified_cv(lists, tmp_path, capsys):
    out = str(tmp_path / "runs")
    args = ["langid", "--data-dir", str(lists), *TINY, "--epochs", "4", "--lr", "0.03"]
    assert main([*args, "--out-dir", out, *QUIET]) == 0
    run = tmp_path / "runs" / "langid"
    test = json.loads((run / "test.json").read_text())
    assert set(test["test_acc_per_language"]) == set(LANGUAGES)
    assert 0.3 < test["test_acc"] <= 1.0 and 0 < test["test_macro_f1"] <= 1
    baseline = json.loads((run / "baselines.json").read_text())[langid.BASELINE]
    assert baseline["test_acc"] > 0.9
    # the paired counts are the two accuracies' difference, word by word, on the same words
    gap = test["test_right_rnn_only"] - test["test_right_baseline_only"]
    assert gap == round((test["test_acc"] - baseline["test_acc"]) * test["count"])
    discordant = test["test_right_rnn_only"] + test["test_right_baseline_only"]
    exact = binomtest(test["test_right_rnn_only"], discordant).pvalue if discordant else 1.0
    assert test["test_mcnemar_p"] == pytest.approx(exact)
    capsys.readouterr()
    assert main(["predict", str(run), "--text", "Abc ghi xyzÿ"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["abc", "ghi", "xyzÿ"]
    for line in lines:
        probs = [float(part.split()[1]) for part in line.split(": ")[1].split(", ")]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True)
    assert main(["predict", str(run), "--text", "  "]) == 2
    assert "--text WORDS" in capsys.readouterr().err
    assert main(["evaluate", str(run)]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 36
    cv = ["cv", *args[:-4], "--epochs", "1", "--folds", "2", "--out-dir", out, *QUIET]
    assert main(cv) == 0
    assert "288 training samples in 2 stratified folds" in capsys.readouterr().out


def test_ngram_dropout_hides_ngrams_in_training_only():
    model = langid.WordClassifier(
        vocab_size=6, num_classes=3, make_rnn=rnn_of(4), embedding_dim=5, ngrams=7,
        ngram_dropout=1.0,
    )  # fmt: skip
    with torch.no_grad():
        model.ngram_embedding.weight[1:].normal_()  # as if trained
    word = torch.tensor([[1, 0, 0], [2, 3, 0], [5, 4, 7]])
    bare = word.clone()
    bare[:, 1:] = langid.UNKNOWN
    trained = model.train()(pack_sequence([word]))  # (1, 3): every n-gram dropped
    torch.testing.assert_close(trained, model.eval()(pack_sequence([bare])))
    assert not torch.allclose(model(pack_sequence([word])), trained)  # eval reads them all


def test_a_run_with_ngrams_records_them_and_predicts_from_them(lists, tmp_path, capsys):
    out = str(tmp_path / "runs")
    args = ["langid", "--data-dir", str(lists), *TINY, "--epochs", "2", "--ngrams", "3"]
    assert main([*args, "--out-dir", out, *QUIET]) == 0
    run = tmp_path / "runs" / "langid"
    meta = json.loads((run / "config.json").read_text())["meta"]
    assert meta["order"] == 3 and meta["ngrams"]
    assert all(2 <= len(g) <= 3 for g in meta["ngrams"])
    data = langid.load_data(langid.LangidConfig(words=20, data_dir=str(lists), ngrams=3), meta)
    assert data.train[0][0].shape[1] == 3  # each step: its character, its 2-gram and 3-gram
    capsys.readouterr()
    assert main(["predict", str(run), "--text", "abc"]) == 0
    assert capsys.readouterr().out.startswith("abc: ")
    assert main(["evaluate", str(run)]) == 0


def test_the_ngram_min_count_and_the_pool_reach_the_data_and_the_model(lists):
    counted = {}
    for min_count in (1, 2):
        config = langid.LangidConfig(
            words=20, data_dir=str(lists), ngrams=3, ngram_min_count=min_count, pool="max"
        )
        data = langid.load_data(config)
        counted[min_count] = set(data.meta["ngrams"])
        model = langid.build_model(config, data.meta)
        assert model.pool == ("max",) and model.head.in_features == 2 * config.hidden
    assert counted[2] < counted[1]  # the n-grams seen once are in only one list


def test_a_one_hot_run_saved_before_ngrams_existed_still_evaluates_and_predicts(
    lists, tmp_path, capsys
):
    out = str(tmp_path / "runs")
    old_model = [
        "--embedding",
        "0",
        "--ngrams",
        "1",
        "--ngram-dropout",
        "0",
        "--pool",
        "last+max+mean",
    ]
    args = ["langid", "--data-dir", str(lists), *TINY, *old_model]
    assert main([*args, "--epochs", "1", "--out-dir", out, *QUIET]) == 0
    record = tmp_path / "runs" / "langid" / "config.json"
    saved = json.loads(record.read_text())
    for key in ("ngrams", "ngram_dropout", "ngram_min_count", "pool"):
        del saved["config"][key]  # as an older rnnlab wrote it
    record.write_text(json.dumps(saved))
    capsys.readouterr()
    assert main(["evaluate", str(record.parent)]) == 0
    assert main(["predict", str(record.parent), "--text", "abc"]) == 0
    assert "abc: " in capsys.readouterr().out
    # the same command again finds the same run in its folder, finished
    assert main([*args, "--epochs", "1", "--out-dir", out, "--resume", *QUIET]) == 0
    assert not (tmp_path / "runs" / "langid-2").exists()


def test_bad_langid_options_are_one_line_and_status_2(lists, capsys):
    assert main(["langid", "--ngrams", "3", "--embedding", "0", "--dry-run"]) == 2
    assert "--ngrams 3 needs --embedding > 0" in capsys.readouterr().err
    assert main(["langid", "--ngrams", "9", "--dry-run"]) == 2
    assert "ngrams must be" in capsys.readouterr().err
    for pool in ("mex", "mean+mean", ""):
        assert main(["langid", "--pool", pool, "--dry-run"]) == 2
        assert "pool must join some of last, max, mean by +" in capsys.readouterr().err
    assert main(["langid", "--ngram-min-count", "0", "--dry-run"]) == 2
    assert "ngram_min_count must be >= 1, got 0" in capsys.readouterr().err
    assert main(["langid", "--words", "0", "--dry-run"]) == 2
    assert "--words must be >= 20" in capsys.readouterr().err
    assert main(["langid", "--words", "31", "--data-dir", str(lists), "--dry-run"]) == 2
    assert "n=31 is more than the 30 words" in capsys.readouterr().err
