"""`rnnlab postag` on a tiny Brown-style corpus written here (no network): the corpus comes
through --data-dir and its checksum; rare words become <unk>; pads are never scored; a packed
batch tags each sentence as if it were alone; the most-frequent-tag baseline; train,
evaluate, predict and cv end to end."""

from __future__ import annotations

import json

import pytest
import torch
from torch.nn.utils.rnn import pack_sequence

from rnnlab.cli import main
from rnnlab.experiments import postag
from rnnlab.models import make_rnn
from rnnlab.train import IGNORE_INDEX

pytestmark = pytest.mark.usefixtures("no_network")
QUIET = ["--no-progress", "--no-plots"]
TINY = ["--hidden", "8", "--embedding", "6", "--batch-size", "8"]


def test_postag_dry_run_reads_the_corpus_through_data_dir(corpus, capsys):
    assert main(["postag", "--dry-run", "--data-dir", str(corpus), *TINY, *QUIET]) == 0
    out = capsys.readouterr().out
    assert "Brown: 60 sentences, 360 tokens: 48 train, 6 validation, 6 test" in out
    assert "test unseen acc" in out and "test f1 per tag" in out


def test_a_corpus_that_does_not_match_its_checksum_is_refused(corpus, capsys):
    text = (corpus / "ca01").read_bytes()
    (corpus / "ca01").write_bytes(text.replace(b"The/at", b"A/at", 1))  # same counts
    assert main(["postag", "--dry-run", "--data-dir", str(corpus), *TINY, *QUIET]) == 2
    err = capsys.readouterr().err
    assert "cannot load the Brown corpus from directory" in err and "sha256" in err


def test_rare_words_map_to_unk_and_tags_come_from_the_whole_corpus():
    train = [[("The", "DET"), ("man", "NOUN")], [("the", "DET"), ("dog", "NOUN")]]
    corpus = [*train, [("ran", "VERB")]]
    meta = postag.vocabulary(train, min_count=2, lowercase=True, corpus=corpus)
    assert meta == {"words": ["<unk>", "the"], "tags": ["DET", "NOUN", "VERB"], "lowercase": True}
    words, _ = postag.vocabularies(meta)
    assert postag.encode(["THE", "man"], words, lowercase=True).tolist() == [1, 0]
    cased = postag.vocabulary(train, min_count=1, lowercase=False, corpus=train)["words"]
    assert cased == ["<unk>", "The", "dog", "man", "the"]


def test_pads_are_never_scored():
    batch = [
        (torch.tensor([1, 2, 3]), torch.tensor([0, 1, 0])),
        (torch.tensor([4]), torch.tensor([1])),
    ]
    packed, tags = postag.collate(batch)
    assert tags.tolist() == [[0, 1, 0], [1, IGNORE_INDEX, IGNORE_INDEX]]
    assert packed.data.numel() == 4  # the pads are not even computed


@pytest.mark.parametrize("impl", ["rnnlab", "rnnlab-reference", "torch"])
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_a_packed_batch_tags_each_sentence_as_if_it_were_alone(impl, cell):
    model = postag.Tagger(
        vocab_size=9,
        num_tags=4,
        embedding_dim=3,
        make_rnn=lambda size: make_rnn(cell, impl, size, 5, bidirectional=True),
    )
    model.eval()
    sentences = [torch.tensor(s) for s in ([1, 2, 3], [4, 5, 6, 7, 8], [3], [2, 2])]
    batch = model(pack_sequence(sentences, enforce_sorted=False))  # (4, 5, 4)
    for i, s in enumerate(sentences):
        alone = model(pack_sequence([s]))[0]  # (T_i, 4)
        torch.testing.assert_close(batch[i, : len(s)], alone)
        assert not batch[i, len(s) :].any()  # past the end: zeros, and IGNORE_INDEX targets


def test_the_most_frequent_tag_baseline(corpus):
    config = postag.PostagConfig(data_dir=str(corpus))
    data = postag.load_data(config)
    scores = postag.baselines(config, data)["most-frequent tag"]
    assert sorted(scores) == ["test_acc", "test_unseen_acc", "val_acc", "val_unseen_acc"]
    # every word of the tiny corpus has one tag: only unseen words can be wrong
    seen = postag.seen_words(data)
    for part, split in (("val", data.val), ("test", data.test)):
        pairs = [(w.lower(), t) for s in split.sentences for w, t in s]
        unseen_right = sum(t == "NOUN" for w, t in pairs if w not in seen)
        right = sum(w in seen for w, _ in pairs) + unseen_right
        assert scores[f"{part}_acc"] == pytest.approx(right / len(pairs))


def test_train_evaluate_predict_and_cv(corpus, tmp_path, capsys):
    out = str(tmp_path / "runs")
    args = ["postag", "--data-dir", str(corpus), *TINY, "--epochs", "6", "--lr", "0.05"]
    assert main([*args, "--out-dir", out, *QUIET]) == 0
    run = tmp_path / "runs" / "postag"
    test = json.loads((run / "test.json").read_text())
    assert test["test_acc"] > 0.6
    baselines = json.loads((run / "baselines.json").read_text())
    assert sorted(baselines["most-frequent tag"]) == [
        "test_acc", "test_unseen_acc", "val_acc", "val_unseen_acc"
    ]  # fmt: skip
    assert set(test["test_f1_per_tag"]) == {".", "ADJ", "DET", "NOUN", "VERB"}
    capsys.readouterr()
    assert main(["predict", str(run), "--text", "The old man saw the boat ."]) == 0
    tokens = capsys.readouterr().out.split()
    assert [t.rsplit("/", 1)[0] for t in tokens] == ["The", "old", "man", "saw", "the", "boat", "."]
    assert tokens[0] == "The/DET" and tokens[-1] == "./."
    assert main(["predict", str(run)]) == 2
    assert "--text" in capsys.readouterr().err
    assert main(["evaluate", str(run)]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 36
    cv = ["cv", *args[:-4], "--epochs", "1", "--folds", "2", "--out-dir", out, *QUIET]
    assert main(cv) == 0
    assert "48 training samples in 2 folds" in capsys.readouterr().out


def test_brown_tags_and_bad_options(corpus, tmp_path, capsys):
    out = str(tmp_path / "runs")
    args = ["postag", "--tagset", "brown", "--data-dir", str(corpus), *TINY, "--epochs", "1"]
    assert main([*args, "--out-dir", out, *QUIET]) == 0
    assert (
        "AT"
        in json.loads((tmp_path / "runs" / "postag-brown" / "test.json").read_text())[
            "test_f1_per_tag"
        ]
    )
    assert main(["postag", "--min-count", "0", "--dry-run"]) == 2
    assert "min_count must be >= 1, got 0" in capsys.readouterr().err
