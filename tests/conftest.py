"""Shared fixtures: one torch thread and a fixed seed for every test, each RNN implementation in
turn, a tiny MNIST release and a private cache, a guard that fails any test that opens a
network connection, a finished tiny `rnnlab mnist` run, and the made-up word lists and tagged
corpus of the langid and postag tests. The helpers they build on live in `rnn_equivalence.py`
(the RNN comparisons), `fake_mnist.py` (the fake releases) and `fake_text.py` (the texts)."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from fake_mnist import TinyRelease, encode_py2_pickle, make_tiny_release
from fake_text import made_up_lists, tiny_corpus
from rnn_equivalence import IMPLS
from rnnlab.cli import main
from rnnlab.data import LANGUAGES, brown
from rnnlab.data import mnist as mnist_module
from rnnlab.data.brown import BrownSpec
from rnnlab.data.wordlists import WordfreqSpec
from rnnlab.experiments import langid, postag
from rnnlab.nn import rnn as rnn_module


@pytest.fixture(autouse=True)
def one_thread():
    """Every test on one torch thread, restored after it: the tensors here are tiny, so
    intra-op threads only add overhead, and on a shared two-core machine they spin against
    other processes (the suite went from ~5 s to ~50 s under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def seed():
    """Every test starts from the same random state, so failures reproduce."""
    torch.manual_seed(0)


@pytest.fixture(params=IMPLS)
def impl(request, monkeypatch):
    """Each of rnnlab.RNN's implementations in turn. The test errors at teardown unless the
    named implementation ran, and the other did not: a pass can never be a silent fallback."""
    calls = dict.fromkeys(rnn_module.IMPLEMENTATIONS, 0)

    def counting(name, layer):
        def run_layer(*args, **kwargs):
            calls[name] += 1
            return layer(*args, **kwargs)

        return run_layer

    for name, layer in list(rnn_module.IMPLEMENTATIONS.items()):
        monkeypatch.setitem(rnn_module.IMPLEMENTATIONS, name, counting(name, layer))
    yield request.param
    assert calls[request.param] > 0, f"impl={request.param!r} was never called"
    others = {name: n for name, n in calls.items() if name != request.param and n}
    assert not others, f"impl={request.param!r} requested but {others} ran"


@pytest.fixture(scope="session")
def tiny_release() -> TinyRelease:
    return make_tiny_release()


@pytest.fixture(scope="session")
def py2_pickle() -> Callable[[object], bytes]:
    """`encode_py2_pickle`: nested tuples of arrays as Python 2's numpy pickled them."""
    return encode_py2_pickle


@pytest.fixture
def cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache folder, also made the default through $RNNLAB_DATA."""
    root = tmp_path / "cache"
    monkeypatch.setenv("RNNLAB_DATA", str(root))
    return root


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt of this process to resolve a host or connect a socket fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"test tried to use the network: {args!r}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def tiny_mnist(tiny_release, tmp_path, cache_root, monkeypatch) -> Path:
    """The tiny 20 + 10 image release as an IDX folder, accepted as 'mnist' by the checks."""
    monkeypatch.setitem(mnist_module.SPECS, "mnist", tiny_release.spec)
    return tiny_release.write(tmp_path / "idx")


@pytest.fixture
def tiny_mnist_run(tiny_mnist, tmp_path) -> Path:
    """The folder of a finished one-epoch `rnnlab mnist` run on the tiny release."""
    args = ["mnist", "--data-dir", str(tiny_mnist), "--val-size", "5", "--hidden", "8"]
    quiet = ["--no-progress", "--no-plots"]
    assert main([*args, "--epochs", "1", "--out-dir", str(tmp_path), *quiet]) == 0
    return tmp_path / "mnist"


@pytest.fixture
def lists(tmp_path, cache_root, monkeypatch) -> Path:
    """A folder of the 18 made-up lists, made the lists `rnnlab langid` expects."""
    files = made_up_lists()
    folder = tmp_path / "lists"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    spec = WordfreqSpec(
        requirement="madeupfreq==1.0",
        sha256={
            lang: hashlib.sha256(files[f"small_{lang}.msgpack.gz"]).hexdigest()
            for lang in LANGUAGES
        },
        cache_name="madeupfreq-1.0",
        package="madeupfreq_not_installed",
    )
    monkeypatch.setattr(langid, "WORDFREQ", spec)
    return folder


@pytest.fixture
def corpus(tmp_path, cache_root, monkeypatch) -> Path:
    """A folder of the tiny corpus, made the corpus `rnnlab postag` expects."""
    return brown_folder(tmp_path / "brown", tiny_corpus(), monkeypatch)


def brown_folder(folder: Path, files: dict[str, bytes], monkeypatch) -> Path:
    """`files` (Brown's layout) written to `folder` and made the corpus `rnnlab postag`
    expects: its counts and sha256 become postag's `BROWN`."""
    folder.mkdir()
    documents, sentences = [], []
    for name, data in sorted(files.items()):
        (folder / name).write_bytes(data)
        parsed = brown.parse_file(data, name)
        documents, sentences = documents + [name] * len(parsed), sentences + parsed
    text = brown.canonical_text(documents, sentences)
    spec = BrownSpec(
        name="tiny-brown",
        files=len(files),
        sentences=len(sentences),
        tokens=sum(map(len, sentences)),
        sha256=hashlib.sha256(text).hexdigest(),
    )
    monkeypatch.setattr(postag, "BROWN", spec)
    return folder
