"""The docs' code runs: every block of every tutorial page, and the README's Python.

A page's ```python blocks run with mktestdocs as one program, in order (a later block sees what
an earlier one defined); then its ```console blocks run, each `$ rnnlab ...` line through
`rnnlab.cli.main` in this process, in a fresh folder, offline. A console block shows the
command as a learner types it; the lines under a command are output it must print (a line
ending in '...' the start of one). MNIST is a
fake release of random images in the test's cache (`rnnlab mnist` holds out 5,000 training
images, so it has 5,100), so the commands are the learner's own and run in seconds; a command
that needs data no test may fetch has `--dry-run` or a small local text on the page itself.
Python blocks never depend on console blocks, since they run first.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from mktestdocs import check_md_file, grab_code_blocks

from fake_mnist import make_tiny_release
from rnnlab.cli import main
from rnnlab.data import load_mnist
from rnnlab.data import mnist as mnist_module

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs" / "tutorial").glob("*.md"))


@pytest.fixture(scope="session")
def tutorial_release():
    return make_tiny_release(train=5100, test=10)


@pytest.fixture
def mnist_in_cache(tutorial_release, tmp_path, cache_root, monkeypatch) -> None:
    """A fake MNIST of 5,100 training and 10 test images, cached where `rnnlab mnist` looks."""
    release = tutorial_release
    monkeypatch.setitem(mnist_module.SPECS, "mnist", release.spec)
    load_mnist("mnist", data_dir=release.write(tmp_path / "idx"), progress=False)


def console_commands(block: str) -> list[tuple[str, list[str]]]:
    """A console block's commands (the lines after '$ ') with the output lines shown under each."""
    commands: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            commands.append((line[2:], []))
        elif line.strip():
            assert commands, f"output before any command in a console block: {line!r}"
            commands[-1][1].append(line)
    return commands


def run_console(block: str, capsys: pytest.CaptureFixture) -> None:
    for command, shown in console_commands(block):
        args = shlex.split(command, comments=True)
        assert args[0] == "rnnlab", f"the docs' console blocks run rnnlab only: {command!r}"
        capsys.readouterr()
        assert main(args[1:]) == 0, command
        printed = capsys.readouterr().out.splitlines()
        for line in shown:
            assert any(matches(line, out) for out in printed), f"{command!r} did not print {line!r}"


def matches(shown: str, printed: str) -> bool:
    """A shown line is printed as it is; one ending in '...' is the start of a printed line."""
    if shown.endswith("..."):
        return printed.startswith(shown[:-3])
    return printed == shown


def test_the_tutorial_has_its_eight_pages():
    assert [p.name[:2] for p in PAGES if p.name != "index.md"] == [f"{i:02d}" for i in range(1, 9)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_tutorial_page_runs(page, tmp_path, monkeypatch, no_network, mnist_in_cache, capsys):
    monkeypatch.chdir(tmp_path)
    check_md_file(page, memory=True)
    for block in grab_code_blocks(page.read_text(encoding="utf-8"), lang="console"):
        run_console(block, capsys)


def test_readme_python_runs(tmp_path, monkeypatch, no_network):
    monkeypatch.chdir(tmp_path)
    check_md_file(ROOT / "README.md", memory=True)
