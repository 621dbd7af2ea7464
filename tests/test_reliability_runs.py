"""What a user can do to a run folder or the command line: one writer per folder, a folder
moved anywhere still resumes, evaluates and predicts, and every mistake is one line on stderr
with exit status 2, no traceback, nothing left in the temporary folder."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rnnlab.cli import main
from rnnlab.train import RunFolderBusyError, run_lock

QUIET = ["--no-progress", "--no-plots"]
SRC = Path(__file__).resolve().parents[1] / "src"


def one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"rnnlab {command}: error: "), err
    return err


def test_a_second_writer_of_a_run_folder_is_refused_naming_the_live_process(tmp_path, capsys):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
                import sys, time
                sys.path.insert(0, {str(SRC)!r})
                from rnnlab.train import run_lock
                with run_lock({str(tmp_path / "seq2seq")!r}):
                    print("held", flush=True)
                    time.sleep(60)
            """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["seq2seq", "--out-dir", str(tmp_path), "--name", "seq2seq", *QUIET]) == 2
        err = one_line_error(capsys, "seq2seq")
        assert f"being written by process {holder.pid}" in err
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    # the OS dropped the dead holder's lock: the folder is free again
    assert main(["seq2seq", "--out-dir", str(tmp_path), "--name", "seq2seq", *QUIET]) == 0


def test_the_lock_is_reentrant_in_one_process_and_exclusive_across(tmp_path):
    with run_lock(tmp_path / "run"), run_lock(tmp_path / "run"):
        pass  # nested holders in one process share the lock
    with run_lock(tmp_path / "run"):
        probe = subprocess.run(
            [
                sys.executable,
                "-c",
                f"import sys; sys.path.insert(0, {str(SRC)!r})\n"
                "from rnnlab.train import run_lock\n"
                f"with run_lock({str(tmp_path / 'run')!r}): pass",
            ],
            capture_output=True,
            text=True,
        )
        assert probe.returncode != 0 and RunFolderBusyError.__name__ in probe.stderr


def test_a_run_copied_elsewhere_resumes_evaluates_and_predicts(tmp_path, capsys):
    first = ["seq2seq", "--epochs", "3", "--out-dir", str(tmp_path / "a"), *QUIET]
    assert main(first) == 0
    shutil.copytree(tmp_path / "a" / "seq2seq", tmp_path / "b" / "ext")
    capsys.readouterr()
    more = ["seq2seq", "--epochs", "3", "--out-dir", str(tmp_path / "b"), "--name", "ext"]
    assert main([*more, "--resume", *QUIET]) == 0
    assert "resuming" in capsys.readouterr().out
    assert main(["evaluate", str(tmp_path / "b" / "ext")]) == 0
    assert main(["predict", str(tmp_path / "b" / "ext"), "--text", "hello"]) == 0


@pytest.fixture
def seq_run(tmp_path, capsys) -> Path:
    assert main(["seq2seq", "--epochs", "2", "--out-dir", str(tmp_path), *QUIET]) == 0
    capsys.readouterr()
    return tmp_path / "seq2seq"


def test_predict_with_an_empty_text_is_one_line(seq_run, capsys):
    assert main(["predict", str(seq_run), "--text", ""]) == 2
    assert "non-empty text" in one_line_error(capsys, "predict")


def test_a_hand_edited_run_record_is_one_line(seq_run, capsys):
    record = json.loads((seq_run / "config.json").read_text())
    record["config"]["hidden"] = 99
    (seq_run / "config.json").write_text(json.dumps(record))
    assert main(["predict", str(seq_run), "--text", "hello"]) == 2
    assert "does not fit the model" in one_line_error(capsys, "predict")
    record["experiment"] = "chess"
    (seq_run / "config.json").write_text(json.dumps(record))
    assert main(["evaluate", str(seq_run)]) == 2
    assert "unknown experiment 'chess'" in one_line_error(capsys, "evaluate")


def _png_with_bad_crc(path: Path) -> None:
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(path)
    data = bytearray(path.read_bytes())
    data[33 + 20] ^= 0xFF  # a byte inside the IDAT chunk: its CRC no longer matches
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", ["text", "empty", "truncated", "bad-crc", "folder", "huge"])
def test_predict_refuses_anything_but_a_28x28_picture_in_one_line(
    tiny_mnist_run, tmp_path, capsys, kind
):
    path = tmp_path / f"{kind}.png"
    if kind == "text":
        path.write_text("notes, not a picture\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[:40])
    elif kind == "bad-crc":
        _png_with_bad_crc(path)
    elif kind == "folder":
        path.mkdir()
    else:  # a 30000x30000 header: refused from the header, nothing decoded
        header = b"\x89PNG\r\n\x1a\n"
        ihdr = (30000).to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
        chunk = len(ihdr).to_bytes(4, "big") + b"IHDR" + ihdr
        path.write_bytes(header + chunk + zlib.crc32(b"IHDR" + ihdr).to_bytes(4, "big"))
    assert main(["predict", str(tiny_mnist_run), "--image", str(path)]) == 2
    one_line_error(capsys, "predict")


def test_a_16_bit_png_keeps_its_grey_levels():
    from rnnlab.experiments.mnist import read_image

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "deep.png"
        levels = np.arange(28 * 28, dtype=np.uint16).reshape(28, 28) * 80  # (28, 28)
        Image.fromarray(levels).save(path)
        image = read_image(str(path), invert=False)
    assert image.numpy() == pytest.approx(levels / 65535, abs=1e-6)
    assert len(np.unique(image.numpy())) == 28 * 28


def test_a_pairs_file_with_a_bom_is_read_and_bad_bytes_name_the_line(tmp_path, capsys):
    pairs = tmp_path / "pairs.tsv"
    pairs.write_bytes("\ufeffhello\tohlol\n".encode())
    assert main(["seq2seq", "--pairs", str(pairs), "--dry-run", *QUIET]) == 0
    capsys.readouterr()
    pairs.write_bytes(b"hello\tohlol\nh\xe9llo\tohlol\n")
    assert main(["seq2seq", "--pairs", str(pairs), "--dry-run", *QUIET]) == 2
    assert f"{pairs}:2: not UTF-8" in one_line_error(capsys, "seq2seq")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["seq2seq", "--hidden", "100000000"], "bytes of weights"),
        (["seq2seq", "--optimizer", "sgd", "--momentum", "nan"], "momentum must be a finite"),
        (["seq2seq", "--grad-clip", "nan"], "grad_clip must be a finite"),
        (["seq2seq", "--seed", "99999999999999999999"], "seed must be <="),
        (["seq2seq", "--impl", "keras"], "invalid choice: 'keras'"),
        (["seq2seq", "--epochs", "many"], "expected int, got 'many'"),
        (["seq2seq", "--pairs", "."], "is a folder"),
        (["seq2seq", "--threads", "-1"], "--threads must be >= 0"),
        (["cv", "seq2seq", "--folds", "1"], "--folds must be at least 2, got 1"),
        (["bench", "--rounds", "0"], "--rounds must be at least 1, got 0"),
        (["bench", "--json", "."], "expected a file path"),
        (["evaluate", "."], "not an rnnlab run folder"),
        (["predict", "no-such-run", "--text", "x"], "not an rnnlab run folder"),
        (["mnist", "--val-size", "-1"], "val_size must be >= 0"),
        (["data", "fetch", "emnist"], "invalid choice: 'emnist'"),
    ],
)
def test_every_user_mistake_is_one_line_and_status_2(argv, message, capsys, tmp_path):
    assert main([*argv, "--out-dir", str(tmp_path)] if argv[0] == "seq2seq" else argv) == 2
    assert message in one_line_error(capsys, argv[0])


def test_out_dir_naming_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert main(["seq2seq", "--out-dir", str(tmp_path / "file"), *QUIET]) == 2
    assert "is a file" in one_line_error(capsys, "seq2seq")


def test_a_dry_run_leaves_nothing_in_the_temporary_folder_even_when_it_fails(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert main(["seq2seq", "--dry-run", *QUIET]) == 0
    bad = tmp_path / "bad.tsv"
    bad.write_text("hello\toh\n")
    assert main(["seq2seq", "--dry-run", "--pairs", str(bad), *QUIET]) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["bad.tsv"]


def test_a_long_prediction_is_cut_in_the_epoch_line_and_metrics(tmp_path, capsys):
    pairs = tmp_path / "long.tsv"
    pairs.write_text("ab" * 2000 + "\t" + "ba" * 2000 + "\n")
    argv = ["seq2seq", "--pairs", str(pairs), "--epochs", "1", "--out-dir", str(tmp_path)]
    assert main([*argv, *QUIET]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) < 600
    record = json.loads((tmp_path / "seq2seq" / "metrics.jsonl").read_text())
    assert len(record["predicted"]) <= 203
