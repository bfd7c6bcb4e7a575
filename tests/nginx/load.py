"""Bounded HTTP load for the Nginx and Swarm tests: few threads, a deadline, failures kept."""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import pytest

PREDICT_BODY = {
    "island": "Biscoe",
    "culmen_length_mm": 50.0,
    "culmen_depth_mm": 18.5,
    "flipper_length_mm": 200.0,
    "body_mass_g": 4000.0,
    "sex": "MALE",
}


@dataclass
class LoadResult:
    sent: int = 0
    failed: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    # First few failures only: enough to diagnose, bounded in size.
    failures: list[str] = field(default_factory=list)

    def record(self, status: int | None, error: str | None) -> None:
        self.sent += 1
        if status is not None:
            self.statuses[status] += 1
        if status != 200:
            self.failed += 1
            if len(self.failures) < 20:
                self.failures.append(error or f"status {status}")


class LoadGenerator:
    """POSTs /predict from `threads` threads until stop() or `max_seconds`, whichever is first.

    `pause` between a thread's requests keeps the load steady but modest, so that on a 2-core
    machine the Swarm control plane (and the replicas starting up) still get CPU.
    """

    def __init__(
        self,
        url: str,
        threads: int = 4,
        pause: float = 0.0,
        max_seconds: float = 120.0,
        body: dict[str, object] | None = None,
    ) -> None:
        self.url = url
        self.pause = pause
        self.max_seconds = max_seconds
        self.body = body or PREDICT_BODY
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, name=f"load-{index}", daemon=True)
            for index in range(threads)
        ]

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        with httpx.Client(timeout=httpx.Timeout(15.0)) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                status: int | None = None
                error: str | None = None
                try:
                    response = client.post(self.url, json=self.body)
                    status = response.status_code
                    if status != 200:
                        error = f"status {status}: {response.text[:200]}"
                except httpx.HTTPError as exc:
                    error = f"{type(exc).__name__}: {exc}"
                with self._lock:
                    self.result.record(status, error)
                if self.pause:
                    self._stop.wait(self.pause)

    def start(self) -> LoadGenerator:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> LoadResult:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        return self.result

    def __enter__(self) -> LoadGenerator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def report(capsys: pytest.CaptureFixture[str], scenario: str, result: LoadResult) -> None:
    """Prints the scenario's figures even without -s (pytest captures plain print)."""
    with capsys.disabled():
        sys.stderr.write(
            f"\n[{scenario}] requests sent={result.sent} failed={result.failed} "
            f"statuses={dict(result.statuses)}\n"
        )
