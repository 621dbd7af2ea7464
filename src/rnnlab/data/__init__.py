"""Data for rnnlab's experiments: MNIST-family images as row sequences, and text.

`load_mnist` fetches, checks and caches MNIST or Fashion-MNIST and returns the splits as arrays
plus a torch Dataset of 28 time steps of 28 pixels; `Vocabulary`, `SequencePair`, `read_pairs`
and `PairDataset` serve the character and word experiments. The building blocks (the IDX
reader, the cache, the restricted unpickler) are public too. Nothing here imports a model.
"""

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

__all__ = [
    "FASHION_MNIST",
    "HELLO",
    "LEVELS",
    "MNIST",
    "SPECS",
    "UNK",
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
    "default_root",
    "encode_idx",
    "load_array_pickle",
    "load_mnist",
    "parse_idx",
    "read_idx",
    "read_pairs",
    "sequence_pairs",
    "tokenize",
    "write_idx",
]
