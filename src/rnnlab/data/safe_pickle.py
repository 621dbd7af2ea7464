"""Loading numpy arrays from a pickle without letting the pickle run anything else.

A pickle is a program: `pickle.load` will call any importable function its author names. The
unpickler here resolves only the globals numpy's array reconstruction uses (`_reconstruct`,
`ndarray` and `dtype`, plus `_frombuffer` for protocol-5 pickles) and refuses every other
name before anything is called, so a hostile file can build arrays, tuples, lists, dicts,
numbers and strings, and nothing more. Object arrays are refused too. This is the only way
rnnlab reads a pickle.
"""

from __future__ import annotations

import io
import pickle
from typing import Any, BinaryIO

import numpy as np

# `np.ndarray.__reduce__` names this function `numpy.core.multiarray._reconstruct` in pickles
# written by numpy 1.x and `numpy._core.multiarray._reconstruct` under numpy 2; take the object
# from the reduce protocol itself instead of importing the deprecated `numpy.core`.
_RECONSTRUCT = np.zeros(0).__reduce__()[0]
_FROMBUFFER = np.zeros(0).__reduce_ex__(5)[0]  # protocol 5 rebuilds from an out-of-band buffer

ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for something other than numpy array reconstruction."""


class ArrayUnpickler(pickle.Unpickler):
    """A `pickle.Unpickler` whose only importable names are `ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            allowed = ", ".join(f"{m}.{n}" for m, n in ALLOWED_GLOBALS)
            raise UnsafePickleError(
                f"pickle asks for global {module}.{name}, which is refused; "
                f"only numpy array reconstruction is allowed ({allowed})"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"pickle asks for persistent id {pid!r}, which is refused")


def _refuse_object_arrays(value: Any, where: str = "pickle") -> None:
    if isinstance(value, np.ndarray) and value.dtype.hasobject:
        raise UnsafePickleError(
            f"{where} holds an array of dtype {value.dtype}; object arrays "
            "are refused, expected plain numeric arrays"
        )
    if isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            _refuse_object_arrays(item, f"{where}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_object_arrays(item, f"{where}[{key!r}]")


def load_array_pickle(data: bytes | BinaryIO, encoding: str = "latin1") -> Any:
    """The value pickled in `data`, built with numpy array reconstruction and nothing else.

    **Arguments:** `data` the pickle's bytes (not compressed), or a binary stream to read them
    from (a bounded one, e.g. `archive.LimitedReader`); `encoding` how to decode Python 2
    `str` objects: 'latin1' (the default) maps each byte to one character, which is what numpy
    needs to rebuild arrays pickled under Python 2.

    **Returns:** the unpickled value. Raises `UnsafePickleError` for any other global, a
    persistent id or an object array, and `pickle.UnpicklingError` for a damaged stream.
    """
    try:
        stream = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
        value = ArrayUnpickler(stream, encoding=encoding).load()
    except UnsafePickleError:
        raise
    except Exception as error:  # a damaged stream fails in many ways; none of them runs code
        raise pickle.UnpicklingError(f"damaged pickle ({type(error).__name__}: {error})") from error
    _refuse_object_arrays(value)
    return value
