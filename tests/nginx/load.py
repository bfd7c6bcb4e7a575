"""Bounded HTTP load for the Nginx and Swarm tests: few threads, a deadline, failures kept."""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import pytest

from tests.support import SEED_BODY

# What nginx/entrypoint.sh logs each time it reloads Nginx for a changed upstream set.
RELOAD_LOG_LINE = "upstreams changed, reloaded"


@dataclass
class LoadResult:
    sent: int = 0
    failed: int = 0
    # Requests re-sent once because Nginx closed or reset their idle keep-alive connection
    # (see _send), in all and per load thread (each thread holds one connection at a time).
    retried: int = 0
    retried_by_thread: Counter[str] = field(default_factory=Counter)
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
        self.body = body or SEED_BODY
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
                status, error, retried = self._send(client)
                with self._lock:
                    self.result.record(status, error)
                    self.result.retried += retried
                    if retried:
                        self.result.retried_by_thread[threading.current_thread().name] += retried
                if self.pause:
                    self._stop.wait(self.pause)

    def _send(self, client: httpx.Client) -> tuple[int | None, str | None, int]:
        """One request; returns (status, error, re-sends).

        A reload of Nginx (it follows the api replica set that way) closes idle client keep-alive
        connections; a request sent on one at that instant is dropped before any response. HTTP
        clients re-send such requests on a fresh connection when they are idempotent (RFC 9112
        section 9.3.1; predictions are), and so do we, once, and count it. The drop shows in one
        of two ways, depending on whether the request reached Nginx's socket before the old
        worker closed it: a clean close (FIN) with no response, or a reset, which the kernel
        sends when a socket is closed with unread data, or receives data after its close
        (RFC 2525 2.17). Either way Nginx never read the request. Only a request that went out
        on a reused (kept-alive) connection can meet that race: a drop on a connection opened
        for the request, any other error, a second drop, or a non-200 answer is a failure.
        """
        retries = 0
        while True:
            opened: list[str] = []

            def trace(event: str, _info: object, opened: list[str] = opened) -> None:
                # httpcore's trace extension: a new connection shows as connect_tcp events.
                if event.startswith("connection.connect_tcp"):
                    opened.append(event)

            try:
                response = client.post(self.url, json=self.body, extensions={"trace": trace})
            except httpx.RemoteProtocolError as exc:
                if retries == 0 and not opened and "without sending a response" in str(exc):
                    retries += 1
                    continue
                return None, f"{type(exc).__name__}: {exc}", retries
            except (httpx.ReadError, httpx.WriteError) as exc:
                if retries == 0 and not opened and _reset_by_peer(exc):
                    retries += 1
                    continue
                return None, f"{type(exc).__name__}: {exc}", retries
            except httpx.HTTPError as exc:
                return None, f"{type(exc).__name__}: {exc}", retries
            if response.status_code != 200:
                return (
                    response.status_code,
                    f"status {response.status_code}: {response.text[:200]}",
                    retries,
                )
            return 200, None, retries

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


def _reset_by_peer(error: BaseException) -> bool:
    """True when `error` was caused by the peer resetting the connection (ECONNRESET)."""
    seen: BaseException | None = error
    for _ in range(5):  # httpx -> httpcore -> OSError
        if seen is None:
            break
        if isinstance(seen, ConnectionResetError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "Connection reset by peer" in str(error)


def report(capsys: pytest.CaptureFixture[str], scenario: str, result: LoadResult) -> None:
    """Prints the scenario's figures even without -s (pytest captures plain print)."""
    with capsys.disabled():
        sys.stderr.write(
            f"\n[{scenario}] requests sent={result.sent} failed={result.failed} "
            f"re-sent after a keep-alive close or reset={result.retried} "
            f"statuses={dict(result.statuses)}\n"
        )


def nginx_reloads(log: str) -> int:
    """How many times the entrypoint reloaded Nginx for a new upstream set in `log`."""
    return log.count(RELOAD_LOG_LINE)


def check_resends(result: LoadResult, reloads: int) -> None:
    """Re-sends come only from Nginx reloads: a reload closes each idle kept-alive connection
    once, and each load thread holds one connection at a time, so no thread may have re-sent
    more requests than there were reloads (none without a reload)."""
    worst = max(result.retried_by_thread.values(), default=0)
    assert worst <= reloads, (
        f"{worst} re-sent request(s) on one load thread but {reloads} Nginx reload(s): "
        f"{dict(result.retried_by_thread)}"
    )
