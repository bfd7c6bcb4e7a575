"""The C one-row evaluators of service/evaluate.c: building them, and loading them with ctypes.

service/inference.py uses them for single rows when the library is built and loads; otherwise
it evaluates with numpy, which gives the same probabilities (tests/inference checks both against
scikit-learn), only at a higher CPU cost per /predict. `python -m service.native` builds the
library with the system's C compiler; the scripts do it (`ensure_native` in scripts/lib/common.sh)
and the API image gets the library the host built, inside service/.

ctypes rather than a CPython extension: the library needs no Python headers and no packaging,
so one build serves the host's virtualenv and the image alike, whatever their Python versions.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("service.native")

SOURCE = Path(__file__).with_name("evaluate.c")
LIBRARY = Path(__file__).with_name("_evaluate.so")

_ADDRESS = ctypes.c_void_p
_INT = ctypes.c_int
_DOUBLE = ctypes.c_double


class NativeCall:
    """One C evaluator bound to a model's arrays: `call(values)` returns the probabilities.

    The C functions take (row, *arguments, output). The arguments are converted once: arrays to
    their addresses (this object keeps the arrays alive; the model checked their shapes, this
    checks their layout and dtype), ints to C ints, floats to C doubles. A call copies the row
    in and the result out.
    """

    def __init__(
        self, function: Any, n_inputs: int, n_outputs: int, arguments: Sequence[object]
    ) -> None:
        self._function = function
        self._input: Any = (ctypes.c_double * n_inputs)()
        self._output: Any = (ctypes.c_double * n_outputs)()
        self._arrays = [a for a in arguments if isinstance(a, np.ndarray)]
        converted: list[object] = []
        for argument in arguments:
            if isinstance(argument, np.ndarray):
                if not argument.flags["C_CONTIGUOUS"]:
                    raise ValueError("arrays passed to C must be C-contiguous")
                # The C side reads double or int arrays: anything else would be misread.
                if argument.dtype not in (np.dtype(np.float64), np.dtype(np.intc)):
                    raise ValueError(
                        f"arrays passed to C must be float64 or int, not {argument.dtype}"
                    )
                converted.append(_ADDRESS(argument.ctypes.data))
            elif isinstance(argument, float):
                converted.append(_DOUBLE(argument))
            elif isinstance(argument, int):
                converted.append(_INT(argument))
            else:
                raise TypeError(f"cannot pass {type(argument).__name__} to C")
        self._arguments = tuple(converted)

    def call(self, values: list[float]) -> list[float]:
        self._input[:] = values
        self._function(self._input, *self._arguments, self._output)
        result: list[float] = self._output[:]
        return result


class NativeError(RuntimeError):
    """The C library could not be built."""


def build(source: Path = SOURCE, library: Path = LIBRARY) -> Path:
    """Compiles `source` into `library` unless it is already newer; returns the library path."""
    if library.exists() and library.stat().st_mtime >= source.stat().st_mtime:
        return library
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise NativeError("no C compiler (cc or gcc) found; install gcc, or set CC")
    partial = library.with_suffix(".so.partial")
    # No -ffast-math: the arithmetic must round as numpy's does. Written aside, then renamed, so
    # a reader never loads a half-written library.
    command = [compiler, "-O2", "-std=c99", "-shared", "-fPIC", "-o", str(partial), str(source)]
    try:
        result = subprocess.run([*command, "-lm"], capture_output=True, text=True, check=False)
    except OSError as error:  # CC names no runnable program
        raise NativeError(f"cannot run the C compiler {compiler!r}: {error}") from error
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise NativeError(f"{' '.join(command)} failed:\n{result.stderr.strip()}")
    partial.replace(library)
    return library


def load(library: Path = LIBRARY) -> ctypes.CDLL | None:
    """The loaded library with its signatures declared, or None (missing or unloadable)."""
    if not library.exists():
        logger.warning(
            "%s is not built: one-row predictions use numpy (slower); "
            "build it with: python -m service.native",
            library,
        )
        return None
    try:
        lib = ctypes.CDLL(str(library))
    except OSError as error:
        logger.warning("%s does not load (%s): one-row predictions use numpy", library, error)
        return None
    # Every array goes in as its address (service/inference.py keeps the arrays alive and
    # checks their shapes and types at load time): a declared ndpointer would check each one
    # on every call, which costs more than the evaluation.
    lib.logistic_proba.argtypes = [_ADDRESS, _INT, _ADDRESS, _ADDRESS, _INT, _ADDRESS]
    lib.forest_proba.argtypes = [
        _ADDRESS, _ADDRESS, _ADDRESS, _ADDRESS, _ADDRESS, _ADDRESS, _INT, _INT, _INT, _ADDRESS,
    ]  # fmt: skip
    lib.svm_proba.argtypes = [
        _ADDRESS, _INT, _ADDRESS, _INT, _ADDRESS, _ADDRESS, _DOUBLE, _ADDRESS, _ADDRESS, _INT,
        _ADDRESS, _ADDRESS, _ADDRESS,
    ]  # fmt: skip
    for function in (lib.logistic_proba, lib.forest_proba, lib.svm_proba):
        function.restype = None
    return lib


def main() -> int:
    try:
        path = build()
    except NativeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
