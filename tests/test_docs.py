"""The docs' code runs: every block of every tutorial page, the README's Python, and every
training command the README and the results pages quote parses (`--print-config`).

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

import re
import shlex
from pathlib import Path

import pytest
from mktestdocs import check_md_file, grab_code_blocks

from fake_mnist import make_tiny_release
from rnnlab.cli import main
from rnnlab.data import load_mnist
from rnnlab.data import mnist as mnist_module
from rnnlab.experiments import EXPERIMENTS

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs" / "tutorial").glob("*.md"))
QUOTING = [ROOT / "README.md", ROOT / "docs" / "performance.md"]
QUOTING += sorted((ROOT / "docs" / "results").glob("*.md"))


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


def test_tutorial_pages_are_numbered_in_order_and_all_in_the_site():
    numbered = [p for p in PAGES if p.name != "index.md"]
    assert [p.name[:3] for p in numbered] == [f"{i:02d}-" for i in range(1, len(numbered) + 1)]
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    index = (ROOT / "docs" / "tutorial" / "index.md").read_text(encoding="utf-8")
    for page in numbered:
        assert f"tutorial/{page.name}" in nav and f"({page.name})" in index, page.name


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_tutorial_page_runs(page, tmp_path, monkeypatch, no_network, mnist_in_cache, capsys):
    monkeypatch.chdir(tmp_path)
    check_md_file(page, memory=True)
    for block in grab_code_blocks(page.read_text(encoding="utf-8"), lang="console"):
        run_console(block, capsys)


def test_readme_python_runs(tmp_path, monkeypatch, no_network):
    monkeypatch.chdir(tmp_path)
    check_md_file(ROOT / "README.md", memory=True)


def quoted_training_commands() -> list[str]:
    """`rnnlab NAME ...` and `rnnlab cv NAME ...` as the pages quote them (in backticks or an
    indented block, continued lines joined), less those that stand for many ('...', '|', '<')
    or read a run folder that only an earlier command makes."""
    trains = {e.name for e in EXPERIMENTS} | {"cv"}
    found = set()
    for path in QUOTING:
        text = re.sub(r"\\\n\s*", " ", path.read_text(encoding="utf-8"))
        for match in re.finditer(r"(?:^ {4}|`)(rnnlab [^`#\n]*)", text, re.MULTILINE):
            command = match.group(1).strip()
            args = shlex.split(command)
            if len(args) > 1 and args[1] in trains and not re.search(r"\.\.\.|\||<|runs/", command):
                found.add(command)
    return sorted(found)


def test_docs_quote_training_commands():
    assert len(quoted_training_commands()) > 10


@pytest.mark.parametrize("command", quoted_training_commands())
def test_quoted_training_command_parses(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main([*shlex.split(command)[1:], "--print-config"]) == 0, command
