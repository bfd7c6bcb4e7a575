"""The Locust master's wait between two open-model steps, until the last step's backlog is gone.

With a drain probe (`--drain-probe-url`, which the matrix serves: matrix/measure/drain_probe.py)
the wait ends when the probe says the cell is back at rest (the api containers' CPU and
throttling at their idle level, Nginx with no request in progress), or at `timeout_s`, which is
then recorded. Without one, the master falls back to a pause it estimates after a failing step
(open_model.drain_seconds). Pure Python, so the tests drive it with a simulated service.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# A probe that does not answer within this long counts as "not at rest yet".
PROBE_TIMEOUT_S = 5.0

Probe = Callable[[], dict[str, Any]]


def http_probe(url: str) -> Probe:
    """The probe at `url`: a GET answering JSON with at least `quiet`."""

    def ask() -> dict[str, Any]:
        try:
            with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S) as response:
                answer: dict[str, Any] = json.loads(response.read())
                return answer
        except (OSError, ValueError) as error:
            return {"quiet": False, "reasons": [f"drain probe unreachable: {error}"]}

    return ask


@dataclass
class DrainWait:
    """One wait, polled by the master's tick: `poll()` is True once it is over (the probe said
    quiet, or the time ran out)."""

    probe: Probe
    timeout_s: float
    clock: Callable[[], float] = time.monotonic
    started: float = field(init=False)
    quiet: bool = False
    timed_out: bool = False
    polls: int = 0
    last: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.started = self.clock()

    @property
    def over(self) -> bool:
        return self.quiet or self.timed_out

    def poll(self) -> bool:
        if self.over:
            return True
        self.last = self.probe()
        self.polls += 1
        self.quiet = bool(self.last.get("quiet"))
        if not self.quiet and self.clock() - self.started >= self.timeout_s:
            self.timed_out = True
        return self.over

    def record(self) -> dict[str, Any]:
        """What the step log keeps of the wait (beside the wait's length, which the master
        measures from the end of one step to the start of the next)."""
        return {
            "drain_proven": self.quiet,
            "drain_timed_out": self.timed_out,
            "drain_polls": self.polls,
            "drain_last": self.last,
        }
