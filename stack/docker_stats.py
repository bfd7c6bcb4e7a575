"""A thread that samples CPU and memory of the api service's containers into docker_stats.csv
while the load runs."""

from __future__ import annotations

import csv
import threading
import time
from collections.abc import Callable
from pathlib import Path

from stack.engine import DockerError, Engine


class DockerStatsSampler(threading.Thread):
    """Samples the service's running containers into a CSV until stopped.

    Each sample takes about a second or two on its own, which is the sampling resolution.
    `clock` gives each sample's timestamp (wall-clock seconds, which the summaries compare with
    the steps' times); the tests pass one of their own."""

    FIELDS = ("timestamp", "container", "name", "cpu_percent", "mem_bytes", "mem_limit_bytes")

    def __init__(
        self,
        engine: Engine,
        service: str,
        output: Path,
        interval: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(name=f"docker-stats-{service}", daemon=True)
        self.engine = engine
        self.service = service
        self.output = output
        self.interval = interval
        self.clock = clock
        self._stop_event = threading.Event()
        self.errors: list[str] = []

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=30)

    def run(self) -> None:
        with self.output.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(self.FIELDS)
            while not self._stop_event.is_set():
                started = time.monotonic()
                try:
                    samples = self.engine.container_stats(self.service)
                    # One timestamp per sample: the summary adds up the containers by it.
                    now = round(self.clock(), 3)
                    for s in samples:
                        writer.writerow(
                            (
                                now,
                                s.container,
                                s.name,
                                s.cpu_percent,
                                s.mem_bytes,
                                s.mem_limit_bytes,
                            )
                        )
                    handle.flush()
                except DockerError as error:
                    self.errors.append(str(error))
                self._stop_event.wait(max(0.0, self.interval - (time.monotonic() - started)))
