"""The language model's parts: streams and truncated BPTT, the carried state, generation,
the count-based baselines and the word tokens. Tiny sizes; no corpus is downloaded."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader

from rnnlab.data import Vocabulary, lm_text
from rnnlab.data import text as text_module
from rnnlab.experiments import lm, ngram
from rnnlab.experiments.lm import LanguageModel
from rnnlab.models import make_rnn

V, E, H, L = 5, 3, 4, 2


def rnn_of(hidden: int, layers: int, cell: str = "rnn", impl: str = "rnnlab", dropout: float = 0.0):
    """A factory of the language model's recurrent network (input size -> module)."""
    return lambda size: make_rnn(cell, impl, size, hidden, layers, dropout=dropout)


def tiny_model(impl: str = "rnnlab", cell: str = "rnn", **kwargs) -> LanguageModel:
    torch.manual_seed(0)
    return LanguageModel(V, E, rnn_of(H, L, cell, impl), **kwargs).double()


def random_ids(n: int, vocab_size: int = V) -> torch.Tensor:
    return torch.randint(0, vocab_size, (n,), generator=torch.Generator().manual_seed(1))


# --- streams and truncated BPTT -------------------------------------------------------------


def test_batches_of_stream_windows_are_each_streams_next_window_with_shifted_targets():
    ids = torch.arange(23)
    windows = lm_text.StreamWindows(ids, streams=2, bptt=4)  # streams of 11: windows of 4, 4
    batches = list(DataLoader(windows, batch_size=None))
    assert len(windows) == len(batches) == 2
    (x0, y0), (x1, y1) = batches
    assert x0.tolist() == [[0, 1, 2, 3], [11, 12, 13, 14]]
    assert x1.tolist() == [[4, 5, 6, 7], [15, 16, 17, 18]]
    assert torch.equal(y0, x0 + 1) and torch.equal(y1, x1 + 1)


def test_a_text_shorter_than_a_window_is_one_window_and_too_short_a_text_is_refused():
    assert len(lm_text.StreamWindows(torch.arange(7), streams=2, bptt=100)) == 1  # streams of 3
    with pytest.raises(ValueError, match="2 tokens cannot make 2 streams"):
        lm_text.StreamWindows(torch.arange(2), streams=2, bptt=4)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_the_carried_state_makes_windows_compute_what_one_long_pass_computes(cell):
    model = tiny_model(cell=cell).eval()
    ids = random_ids(41)
    windows = lm_text.StreamWindows(ids, streams=2, bptt=5)
    pieces = [model(x) for x, _ in windows]  # (2, 5, V) each
    whole, _ = model.step(windows.inputs[:, : 5 * len(pieces)])  # (2, 20, V)
    torch.testing.assert_close(torch.cat(pieces, dim=1), whole, rtol=0, atol=1e-12)


def _gradients(model, loss) -> list[torch.Tensor]:
    return [g.clone() for g in torch.autograd.grad(loss, list(model.parameters()))]


def _windowed_gradients(model, ids, bptt) -> list[torch.Tensor]:
    """Sum of the gradients of each window's summed loss, windows read with carried state."""
    model.reset_state()
    total = [torch.zeros_like(p) for p in model.parameters()]
    for x, y in lm_text.StreamWindows(ids, streams=2, bptt=bptt):
        loss = F.cross_entropy(model(x).reshape(-1, V), y.reshape(-1), reduction="sum")
        total = [t + g for t, g in zip(total, _gradients(model, loss), strict=True)]
    return total


@pytest.mark.parametrize("impl", ["rnnlab", "rnnlab-reference", "torch"])
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_carried_state_tbptt_equals_one_long_bptt_when_the_window_covers_it(impl, cell):
    model = tiny_model(impl, cell)
    ids = random_ids(41)
    streams = lm_text.StreamWindows(ids, streams=2, bptt=10**6)
    logits, _ = model.step(streams.inputs)  # (2, 20, V): full BPTT over each stream
    full = _gradients(
        model, F.cross_entropy(logits.reshape(-1, V), streams.targets.reshape(-1), reduction="sum")
    )
    for got, want in zip(_windowed_gradients(model, ids, bptt=20), full, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    # shorter windows truncate the gradient, and so differ from full BPTT
    truncated = _windowed_gradients(model, ids, bptt=5)
    assert any(not torch.allclose(t, f) for t, f in zip(truncated, full, strict=True))


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_the_carried_state_is_per_mode_and_forgotten_on_reset_and_on_loading_weights(cell):
    model = tiny_model(cell=cell)
    x = random_ids(6).view(2, 3)
    fresh = model.step(x)[0]
    model(x)  # carries a training state
    model.eval()
    torch.testing.assert_close(model(x), fresh)  # eval starts afresh: no training state leaks
    assert not torch.allclose(model(x), fresh)  # ...then carries its own
    model.load_state_dict(model.state_dict())
    torch.testing.assert_close(model(x), fresh)
    model.reset_state()
    torch.testing.assert_close(model(x), fresh)


def test_tied_weights_share_one_tensor_and_need_equal_sizes():
    model = LanguageModel(V, 4, rnn_of(4, 1), tied=True)
    assert model.head.weight is model.embedding.weight
    with pytest.raises(ValueError, match="needs --embedding equal to --hidden; got embedding 3"):
        LanguageModel(V, 3, rnn_of(4, 1), tied=True)


# --- generation -----------------------------------------------------------------------------

CHARS = Vocabulary(list("abcd\n"), level="char")


def test_generation_is_reproducible_with_a_seed():
    model = LanguageModel(len(CHARS), E, rnn_of(H, L))
    first = lm.sample_text(model, CHARS, "ab", 40, temperature=1.0, seed=7)
    assert first == lm.sample_text(model, CHARS, "ab", 40, temperature=1.0, seed=7)
    assert first.startswith("ab") and len(first) == 42
    assert first != lm.sample_text(model, CHARS, "ab", 40, temperature=1.0, seed=8)


def test_generated_text_is_streamed_piece_by_piece_as_it_is_returned():
    pieces = []
    model = LanguageModel(len(CHARS), E, rnn_of(H, L))
    text = lm.sample_text(model, CHARS, "a", 10, seed=0, write=pieces.append)
    assert "".join(pieces) == text and len(pieces) == 11


def test_top_k_1_always_draws_the_most_likely_token():
    model = LanguageModel(len(CHARS), E, rnn_of(H, L)).eval()
    ids = list(lm.generate_ids(model, [0], 1, top_k=1, generator=torch.Generator().manual_seed(3)))
    assert ids == [int(model.step(torch.tensor([[0]]))[0][0, -1].argmax())]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(temperature=0.0), "temperature must be a positive number, got 0.0"),
        (dict(top_k=0), "top_k must be >= 1, got 0"),
    ],
)
def test_bad_sampling_settings_are_refused(kwargs, message):
    model = LanguageModel(len(CHARS), E, rnn_of(H, L))
    with pytest.raises(ValueError, match=message):
        lm.sample_text(model, CHARS, "a", 5, **kwargs)


def test_a_prompt_character_outside_the_vocabulary_is_an_error_naming_it():
    model = LanguageModel(len(CHARS), E, rnn_of(H, L))
    with pytest.raises(ValueError, match="token 'z' is not in the vocabulary"):
        lm.sample_text(model, CHARS, "az", 5)


def test_a_repeated_abcd_is_learned_to_near_zero_loss_and_generated_back():
    text = "abcd" * 300
    vocab = Vocabulary.build([text], "char")
    ids = lm_text.encode(text, vocab)
    torch.manual_seed(0)
    model = LanguageModel(len(vocab), 8, rnn_of(16, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    batches = lm_text.StreamWindows(ids, streams=4, bptt=10)
    for _ in range(5):
        for x, y in batches:
            loss = F.cross_entropy(model(x).reshape(-1, len(vocab)), y.reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    assert loss.item() < 0.02
    assert lm.sample_text(model, vocab, "a", 23, seed=0) == "abcd" * 6


# --- tokens ---------------------------------------------------------------------------------


def test_char_encoding_uses_the_vocabulary_ids_and_names_an_unknown_character():
    assert lm_text.encode("dab\n", CHARS).tolist() == [3, 0, 1, 4]
    with pytest.raises(ValueError, match="token 'é' is not in the vocabulary"):
        lm_text.encode("abé", CHARS)


def test_word_tokens_keep_newlines_and_punctuation_and_join_back_into_text():
    text = "ROMEO:\nO, she doth teach the torches to burn bright!\nIt seems she hangs o'er."
    tokens = text_module.tokenize(text, "word")
    assert tokens[:6] == ["ROMEO", ":", "\n", "O", ",", "she"] and "o'er" in tokens
    assert text_module.detokenize(tokens, "word") == text


def test_the_word_vocabulary_is_the_most_frequent_training_words_plus_unk():
    train = "a a a b b c\n"
    vocab = lm_text.build_vocabulary(train + "d d d d", train, "word", words=2)
    assert vocab.tokens == ("<unk>", "a", "b")
    assert lm_text.encode("a c d", vocab).tolist() == [1, 0, 0]


# --- baselines ------------------------------------------------------------------------------


@pytest.mark.parametrize("order", [1, 2, 4])
def test_kneser_ney_gives_a_distribution_over_the_next_token_after_any_history(order):
    train = random_ids(500)[:500].numpy() * (np.arange(500) % 3 != 0)  # some structure
    model = ngram.KneserNey(train, V, order)
    for history in ([0, 0, 0], [4, 3, 2], [1, 4, 4]):  # seen and unseen histories
        candidates = np.array([[*history, w] for w in range(V)])
        total = sum(math.exp(model.log_probs(row)[-1]) for row in candidates)
        assert total == pytest.approx(1.0, abs=1e-12)


def test_the_ngram_baseline_picks_its_order_on_validation_and_beats_the_unigram():
    rng = np.random.default_rng(0)
    # a text whose next token depends on exactly the two before it
    table = rng.integers(0, V, (V, V))
    ids = [0, 1]
    for _ in range(6000):
        ids.append(int(table[ids[-2], ids[-1]]) if rng.random() < 0.9 else int(rng.integers(V)))
    ids = torch.tensor(ids)
    baselines = ngram.count_baselines(ids[:5000], ids[5000:5500], ids[5500:], V)
    assert baselines.ngram_order == 3
    assert baselines.ngram["val"] < baselines.unigram["val"] - 0.5
    assert set(baselines.ngram_by_order) >= {2, 3, 4}


def test_losses_have_bits_per_char_or_perplexity_beside_them():
    assert lm.companion(math.log(2), "char") == pytest.approx(1.0)
    assert lm.companion(math.log(100), "word") == pytest.approx(100.0)
