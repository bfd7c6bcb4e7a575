"""Open-model load for the autoscaler's spike test: the phases of loadtest/spike.py's schedule
(the matrix's spike profile runs the same one through Locust), requests leaving at each phase's
fixed rate whatever the answers, as real users arrive; raw HTTP/1.1 keep-alive over asyncio streams
(tests/nginx/burst.py's request and answer code), so a few hundred requests/s cost little CPU.

Bounded: at most `max_connections` requests in flight (an arrival finding them all busy is
counted as `dropped`, not sent later), and each phase stops at its duration.

A reused keep-alive connection that Nginx closed or reset before reading the request (it
reloads to follow the api replica set: tests/nginx/load.py says more) is re-sent once on a new
connection and counted in `resent`; a second drop, any other error or a non-200 is a failure.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from loadtest.spike import Phase
from tests.nginx.burst import _read_answer, _request
from tests.support import SEED_BODY

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass
class PhaseResult:
    phase: Phase
    started: float = 0.0  # time.monotonic()
    ended: float = 0.0
    scheduled: int = 0
    dropped: int = 0
    resent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    # Each failure: seconds from the phase's start to the request's send, and what came back;
    # a failure report says when in the phase they happened, e.g. around a scale-down.
    failures: list[tuple[float, str]] = field(default_factory=list)

    def record_status(self, sent: float, status: int) -> None:
        self.statuses[status] += 1
        if status != 200:
            self.failures.append((sent - self.started, str(status)))

    def record_error(self, sent: float, error: BaseException) -> None:
        self.errors[type(error).__name__] += 1
        self.failures.append((sent - self.started, type(error).__name__))

    @property
    def answered(self) -> int:
        return sum(self.statuses.values())

    @property
    def failed(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 200) + sum(
            self.errors.values()
        )

    def summary(self) -> str:
        return (
            f"{self.phase.name}: {self.phase.rate:g} req/s for {self.phase.seconds:g} s, "
            f"scheduled={self.scheduled} answered={self.answered} dropped={self.dropped} "
            f"failed={self.failed} resent={self.resent} statuses={dict(self.statuses)} "
            f"errors={dict(self.errors)}{self._failure_times()}"
        )

    def _failure_times(self) -> str:
        if not self.failures:
            return ""
        by_second = Counter(f"{int(at)}s {what}" for at, what in sorted(self.failures))
        shown = [f"{when} x{n}" for when, n in list(by_second.items())[:30]]
        more = f", and {len(by_second) - 30} more seconds" if len(by_second) > 30 else ""
        return " failures sent at (s into the phase): " + ", ".join(shown) + more


class OpenLoad:
    def __init__(self, url: str, max_connections: int) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.request = _request(parts.netloc, parts.path or "/", SEED_BODY)
        self.max_connections = max_connections
        self.idle: list[Connection] = []
        self.open = 0

    async def _connection(self, fresh: bool) -> tuple[Connection, bool]:
        """An idle keep-alive connection (True: reused), or a new one when there is none or
        `fresh` is asked: a reload closes every idle connection at once, so a re-send on
        another idle one would meet the same close."""
        if self.idle and not fresh:
            return self.idle.pop(), True
        return await asyncio.open_connection(self.host, self.port), False

    async def _one(self, result: PhaseResult) -> None:
        sent = time.monotonic()
        try:
            for attempt in range(2):
                connection, reused = await self._connection(fresh=attempt > 0)
                reader, writer = connection
                try:
                    writer.write(self.request)
                    status, headers, _body = await _read_answer(reader)
                except (ConnectionResetError, asyncio.IncompleteReadError) as error:
                    writer.close()
                    if reused and attempt == 0:
                        result.resent += 1
                        continue
                    result.record_error(sent, error)
                    return
                except (OSError, ValueError) as error:
                    writer.close()
                    result.record_error(sent, error)
                    return
                result.record_status(sent, status)
                if headers.get("connection", "").lower() == "close":
                    writer.close()
                else:
                    self.idle.append(connection)
                return
        except OSError as error:  # could not even connect
            result.record_error(sent, error)
        finally:
            self.open -= 1

    async def run(self, phase: Phase) -> PhaseResult:
        result = PhaseResult(phase, started=time.monotonic())
        started = result.started
        tasks: set[asyncio.Task[None]] = set()
        total = int(phase.rate * phase.seconds)
        for index in range(total):
            due = started + index / phase.rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            result.scheduled += 1
            if self.open >= self.max_connections:
                result.dropped += 1
                continue
            self.open += 1
            task = asyncio.create_task(self._one(result))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            # Answers still owed belong to this phase; Nginx times out at 30 s at the latest.
            await asyncio.wait(tasks, timeout=35)
        result.ended = time.monotonic()
        return result

    def close(self) -> None:
        for _reader, writer in self.idle:
            writer.close()
        self.idle.clear()


def run_phases(url: str, phases: list[Phase], max_connections: int = 400) -> list[PhaseResult]:
    """Each phase in turn over one connection pool; a phase at rate 0 is a pause."""

    async def main() -> list[PhaseResult]:
        load = OpenLoad(url, max_connections)
        results = []
        try:
            for phase in phases:
                if phase.rate <= 0:
                    started = time.monotonic()
                    await asyncio.sleep(phase.seconds)
                    results.append(PhaseResult(phase, started, time.monotonic()))
                else:
                    results.append(await load.run(phase))
        finally:
            load.close()
        return results

    return asyncio.run(main())
