"""`rnnlab data fetch` and `rnnlab data info` on a tiny release, offline."""

from __future__ import annotations

import dataclasses
import re
import urllib.error
import urllib.request

import pytest

from rnnlab.cli import build_parser, main
from rnnlab.data.mnist import FASHION_MNIST, SPECS

pytestmark = pytest.mark.usefixtures("no_network")


@pytest.fixture
def tiny_mnist(tiny_release, monkeypatch):
    monkeypatch.setitem(SPECS, "mnist", tiny_release.spec)
    return tiny_release


def test_data_is_a_command_of_rnnlab():
    assert "data" in build_parser().format_help()


@pytest.mark.parametrize("action", ["fetch", "info"])
def test_every_data_flag_states_its_default(action, capsys):
    with pytest.raises(SystemExit):
        main(["data", action, "--help"])
    options = " ".join(capsys.readouterr().out.split("options:", 1)[1].split())
    flags = [chunk for chunk in re.split(r" (?=--[a-z])", options) if chunk.startswith("--")]
    assert len(flags) == (4 if action == "fetch" else 2)  # --help too
    for chunk in flags:
        assert chunk.startswith("--help") or "(default" in chunk, chunk


def test_fetch_from_a_data_dir_caches_it_and_prints_counts_and_checksums(
    tiny_mnist, cache_root, tmp_path, capsys
):
    folder = tiny_mnist.write(tmp_path / "idx", compress=True)
    assert main(["data", "fetch", "mnist", "--data-dir", str(folder)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tiny mnist ready in ")
    assert f"mnist: {cache_root / 'mnist'}\n" in out
    assert f"  source   directory {folder}, fetched " in out
    assert "  train    20 images (28, 28), labels per class [2, 2, 2, 2, 2, 2, 2, 2, 2, 2]" in out
    assert "  test     10 images (28, 28), labels per class [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]" in out
    assert out.count("-idx") == 4 and "  sha256   " in out


def test_info_describes_cached_sets_and_names_missing_ones(
    tiny_mnist, cache_root, tmp_path, capsys
):
    main(["data", "fetch", "mnist", "--data-dir", str(tiny_mnist.write(tmp_path / "idx"))])
    capsys.readouterr()
    assert main(["data", "info"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"cache: {cache_root}\nmnist: {cache_root / 'mnist'}\n")
    assert "fashion-mnist: not cached (rnnlab data fetch fashion-mnist)" in out


def test_info_flags_a_corrupted_entry_and_exits_1(tiny_mnist, tmp_path, capsys):
    root = tmp_path / "c"
    folder = tiny_mnist.write(tmp_path / "idx")
    main(["data", "fetch", "mnist", "--data-dir", str(folder), "--root", str(root)])
    (root / "mnist" / "t10k-labels-idx1-ubyte").write_bytes(b"tampered")
    capsys.readouterr()
    assert main(["data", "info", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert f"mnist: CORRUPTED at {root / 'mnist'}: " in out
    assert f"fix: rnnlab data fetch mnist --root {root}" in out


def test_fetch_that_fails_exits_2_with_what_was_tried_and_the_fix_in_one_line(
    cache_root, tmp_path, monkeypatch, capsys
):
    spec = dataclasses.replace(FASHION_MNIST, system_dirs=(str(tmp_path / "none"),))
    monkeypatch.setitem(SPECS, "fashion-mnist", spec)

    def unreachable(url, timeout):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    assert main(["data", "fetch", "fashion-mnist"]) == 2
    err = capsys.readouterr().err
    first, *_, last = err.splitlines()
    assert last.startswith("rnnlab data: error: could not load Fashion-MNIST; tried, in order:")
    assert "Traceback" not in err
    assert first == f"system folder {tmp_path / 'none'}: no such folder, trying next source"
    assert "mirror http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/: unreachable" in err
    assert "error: could not load Fashion-MNIST; tried, in order:" in err
    assert "apt-get install dataset-fashion-mnist" in err
