"""The compiled loops of the fused RNN, GRU and LSTM (loops.cpp), and the choice between them and
the same loops in Python (loops.py, whose steps are torch ops).

The C++ file is built the first time a fused layer runs, with torch's own extension tools (a
C++ compiler and ninja), for the CPU capability torch itself runs with (AVX-512, AVX2 or plain):
about a minute, once per machine, version of the source and torch installation; torch keeps the
build in its extensions folder (TORCH_EXTENSIONS_DIR, default ~/.cache/torch_extensions). Where
it cannot be built (no compiler), one warning says so and the layers use loops.py, with the
same results. RNNLAB_COMPILED=0 chooses loops.py outright.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import warnings
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor

from rnnlab.nn.fused import loops

SOURCE = Path(__file__).with_name("loops.cpp")
# The flags under which ATen's own kernels of each capability are compiled: they select
# ATen's Vectorized for that instruction set (and torch's exp and tanh with it).
CAPABILITY_FLAGS = {
    "AVX512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma"],
    "AVX2": ["-mavx2", "-mfma"],
}


def layer_loops(x: Tensor) -> ModuleType:
    """The module whose gru_forward, gru_backward, lstm_forward and lstm_backward run a fused
    layer's loops for tensors like `x`: the compiled ones for float32 and float64 on the CPU
    where they build, else loops.py. Under torch.compile, loops.py: its torch ops are what
    torch.compile can trace (and fuse into kernels of its own)."""
    if torch.compiler.is_compiling():
        return loops
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return loops
    return compiled_loops() or loops


@functools.cache
def compiled_loops(capability: str | None = None) -> ModuleType | None:
    """loops.cpp built for `capability` (default: torch's), or None (with one warning) where
    it cannot be built or RNNLAB_COMPILED=0 asks for loops.py."""
    if os.environ.get("RNNLAB_COMPILED", "1") == "0":
        return None
    capability = capability or torch.backends.cpu.get_cpu_capability()
    flags = [*CAPABILITY_FLAGS.get(capability, []), f"-DCPU_CAPABILITY={capability}"]
    if capability in CAPABILITY_FLAGS:
        flags.append(f"-DCPU_CAPABILITY_{capability}")
    try:
        from torch.utils import cpp_extension

        # named by the digest of the source and of the torch it builds against: two versions
        # of rnnlab or two virtual environments on one machine (two checkouts, an upgrade) each
        # keep their own build instead of rebuilding over the other's
        built_for = f"{torch.__version__} {Path(torch.__file__).parent}".encode()
        digest = hashlib.sha256(SOURCE.read_bytes() + built_for).hexdigest()[:12]
        with _ninja_on_path():
            return cpp_extension.load(
                f"rnnlab_loops_{capability.lower()}_{digest}",
                [str(SOURCE)],
                extra_cflags=["-O3", *flags],
                verbose=False,
            )
    except Exception as error:  # no compiler, no ninja, a failed build: say so, go on
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        warnings.warn(
            f"rnnlab: the compiled GRU and LSTM loops could not be built ({first[:200]}); the "
            "fused path runs them in Python instead, with the same results, more slowly",
            RuntimeWarning,
            stacklevel=2,
        )
        return None


@contextlib.contextmanager
def _ninja_on_path():
    """torch's build runs `ninja` from PATH; a virtual environment that is not activated has
    the ninja package's binary but not on PATH, so put it there for the build only."""
    if shutil.which("ninja") is not None:
        yield
        return
    import ninja  # the package on PyPI: a ninja binary

    saved = os.environ.get("PATH", "")
    os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + saved
    try:
        yield
    finally:
        os.environ["PATH"] = saved
