"""Data for rnnlab's experiments: MNIST-family images as row sequences, and text.

`load_mnist` fetches, checks and caches MNIST or Fashion-MNIST and returns the splits as arrays
plus a torch Dataset of 28 time steps of 28 pixels; `Vocabulary`, `SequencePair`, `read_pairs`
and `PairDataset` serve the character and word experiments. The building blocks (the IDX
reader, the cache, the restricted unpickler) are public too. Nothing here imports a model.
"""

from rnnlab.data.brown import (
    BROWN,
    TAGSETS,
    UNIVERSAL_TAGS,
    BrownCorpus,
    BrownSpec,
    brown_tag,
    load_brown,
    universal_tag,
)
from rnnlab.data.cache import CacheError, default_root
from rnnlab.data.download import ChecksumError, FetchError
from rnnlab.data.idx import IDXError, encode_idx, parse_idx, read_idx, write_idx
from rnnlab.data.mnist import (
    FASHION_MNIST,
    MNIST,
    SPECS,
    DatasetUnavailableError,
    MNISTData,
    MNISTSpec,
    RowImages,
    load_mnist,
)
from rnnlab.data.safe_pickle import UnsafePickleError, load_array_pickle
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
from rnnlab.data.wordlists import (
    LANGUAGES,
    WORDFREQ,
    WordfreqSpec,
    WordLists,
    load_wordlists,
    split_indices,
)

__all__ = [
    "BROWN",
    "FASHION_MNIST",
    "HELLO",
    "LANGUAGES",
    "LEVELS",
    "MNIST",
    "SPECS",
    "TAGSETS",
    "UNIVERSAL_TAGS",
    "UNK",
    "WORDFREQ",
    "BrownCorpus",
    "BrownSpec",
    "CacheError",
    "ChecksumError",
    "DatasetUnavailableError",
    "FetchError",
    "IDXError",
    "MNISTData",
    "MNISTSpec",
    "PairDataset",
    "RowImages",
    "SequencePair",
    "UnsafePickleError",
    "Vocabulary",
    "WordLists",
    "WordfreqSpec",
    "brown_tag",
    "default_root",
    "encode_idx",
    "load_array_pickle",
    "load_brown",
    "load_mnist",
    "load_wordlists",
    "parse_idx",
    "read_idx",
    "read_pairs",
    "sequence_pairs",
    "split_indices",
    "tokenize",
    "universal_tag",
    "write_idx",
]
