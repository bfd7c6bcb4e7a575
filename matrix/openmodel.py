"""The pieces the load test and the matrix share: locust/loadtest_open.py (open model) and
locust/loadtest_closed.py (the workshop's per-second outcomes).

locust/ must stay a plain folder (a package there would shadow the real `locust`), so its
directory goes on the import path instead; the locust image carries the same file, so the master
that judges steps live and the matrix that re-reads them run one implementation.
"""

from __future__ import annotations

import sys

from matrix.config import PROJECT_ROOT

_LOCUST_DIR = str(PROJECT_ROOT / "locust")
if _LOCUST_DIR not in sys.path:
    sys.path.append(_LOCUST_DIR)

from loadtest_closed import (  # noqa: E402
    CONNECTION_ERROR,
    OK,
    REFUSED,
    TIMEOUT,
    ClosedSummary,
    Window,
    merge_windows,
    summarise,
)
from loadtest_open import (  # noqa: E402
    CEILING,
    CONVERGED,
    GENERATOR_LIMITED,
    NO_PASS,
    Objective,
    StepResult,
    judge,
    knee_step,
    objective_reasons,
)

__all__ = ["CEILING", "CONNECTION_ERROR", "CONVERGED", "GENERATOR_LIMITED", "NO_PASS", "OK",
           "REFUSED", "TIMEOUT",
           "ClosedSummary", "Objective", "StepResult", "Window", "judge", "knee_step",
           "merge_windows", "objective_reasons", "summarise"]
