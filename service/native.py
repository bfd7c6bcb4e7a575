"""The C one-row path of /predict (service/_native.c over service/evaluate.c): building the
extension module, loading it, and binding it to a model.

service/inference.py uses it for single rows when the module is built and loads; otherwise it
encodes and evaluates with Python and numpy, which gives the same probabilities (tests/inference
checks both against scikit-learn), only at a higher CPU cost per /predict. `python -m
service.native` builds it with the system's C compiler and the running Python's headers; the
scripts do it on the host (`ensure_native` in scripts/lib/common.sh), and the API image's build
stage does it inside the image (service/Dockerfile), so the image never depends on what the
host could build. Which path serves is reported by /health ("evaluator", `active_evaluator`).

A CPython extension rather than ctypes: ctypes converted a dozen arguments and copied the row in
and the result out on every call, and the row was encoded in Python first; that glue cost more
than the arithmetic. The module uses only the stable ABI (Python 3.11 and later).
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType

import numpy as np

from service.schemas import Evaluator

logger = logging.getLogger("service.native")

SOURCE = Path(__file__).with_name("_native.c")
# The evaluators proper, plain C99 (#included by SOURCE): a newer copy also means a rebuild.
EVALUATORS = Path(__file__).with_name("evaluate.c")
LIBRARY = Path(__file__).with_name("_native.abi3.so")
MODULE_NAME = "service._native"
# The oldest Python the module's stable-ABI build must load in (3.11, the image's and the host's).
LIMITED_API = "0x030B0000"


class NativeCall:
    """One model's C one-row path, bound to its arrays and its preprocessing.

    `kind` is the model's kind (service/inference.py's EVALUATOR_KINDS: logistic, forest,
    rbf_svc), which names its evaluator in service/evaluate.c; `arguments` are its arguments
    between the row and the output, in order: arrays (passed as their addresses; this object
    keeps them alive, the model checked their shapes, this checks their layout and dtype), ints
    and floats.
    `numeric` is (name, fill, mean, scale) per numeric column, in column order; `categorical` is
    (name, {category: column}, fill column) per categorical feature.
    """

    def __init__(
        self,
        module: ModuleType,
        kind: str,
        n_inputs: int,
        n_outputs: int,
        arguments: Sequence[object],
        numeric: Sequence[tuple[str, float, float, float]],
        categorical: Sequence[tuple[str, Mapping[str, int], int]],
    ) -> None:
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
                converted.append(int(argument.ctypes.data))
            elif isinstance(argument, float | int) and not isinstance(argument, bool):
                converted.append(argument)
            else:
                raise TypeError(f"cannot pass {type(argument).__name__} to C")
        evaluator = module.Evaluator(
            kind,
            n_inputs,
            n_outputs,
            tuple(converted),
            tuple((str(n), float(f), float(m), float(s)) for n, f, m, s in numeric),
            tuple((str(n), dict(columns), int(fill)) for n, columns, fill in categorical),
        )
        # Bound once, what the request path calls: row(dict) -> probabilities, or None for a
        # row to encode in Python; call(encoded values) -> probabilities.
        self.row: Callable[[Mapping[str, object]], list[float] | None] = evaluator.row
        self.call: Callable[[list[float]], list[float]] = evaluator.values


class NativeError(RuntimeError):
    """The C module could not be built."""


def python_headers() -> Path:
    """The running Python's include directory; NativeError naming the package if Python.h is
    not there."""
    include = Path(sysconfig.get_paths()["include"])
    if not (include / "Python.h").is_file():
        raise NativeError(
            f"no Python headers (Python.h) in {include}: install them for {sys.executable} "
            "(Debian: python3-dev)"
        )
    return include


def build(source: Path = SOURCE, library: Path = LIBRARY) -> Path:
    """Compiles `source` into `library` unless it is already newer than `source` and the
    evaluators; returns the library path."""
    newest = max(source.stat().st_mtime, EVALUATORS.stat().st_mtime)
    if library.exists() and library.stat().st_mtime >= newest:
        return library
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise NativeError("no C compiler (cc or gcc) found; install gcc, or set CC")
    include = python_headers()
    partial = library.with_name(library.name + ".partial")
    # No -ffast-math: the arithmetic must round as numpy's does. -I finds evaluate.c for a
    # source built from elsewhere. Written aside, then renamed, so a reader never loads a
    # half-written module.
    command = [
        compiler, "-O2", "-std=c11", "-shared", "-fPIC", f"-DPy_LIMITED_API={LIMITED_API}",
        f"-I{include}", f"-I{EVALUATORS.parent}", "-o", str(partial), str(source),
    ]  # fmt: skip
    try:
        result = subprocess.run([*command, "-lm"], capture_output=True, text=True, check=False)
    except OSError as error:  # CC names no runnable program
        raise NativeError(f"cannot run the C compiler {compiler!r}: {error}") from error
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise NativeError(f"{' '.join(command)} failed:\n{result.stderr.strip()}")
    partial.replace(library)
    return library


def load(library: Path = LIBRARY) -> ModuleType | None:
    """The imported C module, or None (missing or not loadable)."""
    if not library.exists():
        logger.warning(
            "%s is not built: one-row predictions use Python and numpy (slower); "
            "build it with: python -m service.native",
            library,
        )
        return None
    try:
        spec = importlib.util.spec_from_file_location(MODULE_NAME, library)
        if spec is None or spec.loader is None:
            raise ImportError(f"{library} is not an extension module")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except ImportError as error:
        logger.warning(
            "%s does not load (%s): one-row predictions use Python and numpy", library, error
        )
        return None
    return module


@functools.cache
def module() -> ModuleType | None:
    """The module, loaded on first use, once per process (None: not built or not loadable).

    Not at import: `python -m service.native`, which builds it, imports this file first."""
    return load()


def active_evaluator(enabled: bool) -> Evaluator:
    """What evaluates single rows in this process, as /health reports it: "c" when `enabled`
    (PENGUIN_NATIVE_EVALUATORS) and the module loads, "numpy" otherwise."""
    return "c" if enabled and module() is not None else "numpy"


def main(argv: Sequence[str] = ()) -> int:
    """Builds the module; with --check-headers, only says whether the Python headers are there
    (scripts/lib/common.sh installs them when not)."""
    try:
        if "--check-headers" in argv:
            print(python_headers())
            return 0
        path = build()
    except NativeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
