"""Vocabularies (char and word level, stable ids, unknown tokens) and sequence pairs."""

from __future__ import annotations

import json

import pytest
import torch

from rnnlab.data import (
    HELLO,
    UNK,
    PairDataset,
    SequencePair,
    Vocabulary,
    read_pairs,
    sequence_pairs,
    tokenize,
)


def test_char_vocabulary_ids_are_sorted_so_data_order_does_not_change_them():
    a = Vocabulary.build(["hello", "ohlol"])
    b = Vocabulary.build(["lolho", "olleh"])
    assert a.tokens == b.tokens == ("e", "h", "l", "o")
    assert a == b and a.encode("hello") == [1, 0, 2, 2, 3]


def test_word_vocabulary_splits_on_whitespace():
    vocab = Vocabulary.build(["the cat  sat", "the\tdog"], level="word")
    assert vocab.tokens == ("cat", "dog", "sat", "the")
    assert vocab.encode("the dog sat") == [3, 1, 2]
    assert vocab.decode([3, 0]) == "the cat"


def test_encode_then_decode_gives_the_text_back():
    vocab = Vocabulary.build(["hello world"])
    assert vocab.decode(vocab.encode("hello world")) == "hello world"
    assert vocab.decode(torch.tensor(vocab.encode("low"))) == "low"
    assert vocab.tokens == (" ", "d", "e", "h", "l", "o", "r", "w")
    assert vocab.encode(["h", "o"]) == [3, 5]  # a list is taken as tokens already


def test_one_hot_has_one_row_per_token_with_a_single_one_at_its_id():
    vocab = Vocabulary.build([HELLO.source, HELLO.target])
    rows = vocab.one_hot("hello")
    assert rows.shape == (5, 4) and rows.dtype == torch.float32
    assert rows.sum(dim=1).tolist() == [1.0] * 5
    assert rows.argmax(dim=1).tolist() == vocab.encode("hello")


def test_an_unknown_token_is_an_error_naming_it_by_default():
    vocab = Vocabulary.build(["hello"])
    with pytest.raises(ValueError, match=r"token 'z' is not in the vocabulary \(4 tokens: 'e'"):
        vocab.encode("hez")


def test_an_unknown_token_maps_to_unk_when_asked():
    vocab = Vocabulary.build(["hello"], unk=True)
    assert vocab.tokens[0] == UNK and vocab.unk_id == 0
    assert vocab.encode("hez") == [vocab.index("h"), vocab.index("e"), 0]
    assert vocab.decode(vocab.encode("hez")) == "he<unk>"


def test_unk_in_the_data_is_not_a_second_unk():
    vocab = Vocabulary.build(["a <unk> b"], level="word", unk=True)
    assert vocab.tokens.count(UNK) == 1 and vocab.tokens[0] == UNK


def test_decode_refuses_an_id_outside_the_vocabulary():
    vocab = Vocabulary.build(["ab"])
    with pytest.raises(ValueError, match=r"id 2 is out of range for a vocabulary of 2 tokens"):
        vocab.decode([0, 2])


def test_a_vocabulary_refuses_duplicates_and_unknown_levels():
    with pytest.raises(ValueError, match="token 'a' appears twice, at ids 0 and 2"):
        Vocabulary(["a", "b", "a"])
    with pytest.raises(ValueError, match="level must be 'char' or 'word', got 'byte'"):
        Vocabulary(["a"], level="byte")
    with pytest.raises(ValueError, match="level must be 'char' or 'word', got 'byte'"):
        tokenize("a", "byte")


def test_a_vocabulary_survives_a_json_round_trip():
    vocab = Vocabulary.build(["to be or not"], level="word", unk=True)
    assert Vocabulary.from_dict(json.loads(json.dumps(vocab.to_dict()))) == vocab


def test_the_seed_pair_is_one_target_per_source_character():
    vocab = Vocabulary.build([HELLO.source, HELLO.target])
    (source, target) = PairDataset([HELLO], vocab)[0]
    assert SequencePair("hello", "ohlol") == HELLO
    assert source.tolist() == vocab.encode("hello") and target.tolist() == vocab.encode("ohlol")
    assert source.dtype == target.dtype == torch.int64


def test_pairs_of_unequal_length_are_an_error_naming_the_pair():
    with pytest.raises(ValueError, match=r"pair 1: source 'abc' has 3 characters, target 'ab' has"):
        sequence_pairs([("hello", "ohlol"), ("abc", "ab")])


def test_word_pairs_are_compared_in_words():
    pairs = sequence_pairs([("the cat sat", "DET NOUN VERB")], level="word")
    assert pairs == [SequencePair("the cat sat", "DET NOUN VERB")]
    with pytest.raises(ValueError, match="pair 0: source 'the cat' has 2 words, target 'DET'"):
        sequence_pairs([("the cat", "DET")], level="word")


def test_read_pairs_reads_a_tsv_skipping_blank_lines_and_keeping_spaces(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_bytes(b"hello\tohlol\r\n\nab c\tc ba\n")
    assert read_pairs(path) == [SequencePair("hello", "ohlol"), SequencePair("ab c", "c ba")]


def test_read_pairs_names_the_line_of_a_pair_of_unequal_length(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("hello\tohlol\n\nabc\tab\n")
    with pytest.raises(ValueError, match=rf"^{path}:3: source 'abc' has 3 characters, target 'ab'"):
        read_pairs(path)


def test_read_pairs_names_the_line_without_exactly_one_tab(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("hello\tohlol\nhello ohlol\n")
    with pytest.raises(ValueError, match=rf"{path}:2: expected 'source<TAB>target', found 0 tabs"):
        read_pairs(path)


def test_read_pairs_refuses_a_file_without_pairs(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("\n\n")
    with pytest.raises(ValueError, match="no pairs"):
        read_pairs(path)
