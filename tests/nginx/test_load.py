"""The test load generator re-sends a request once when its kept-alive connection is dropped
before any answer (the Nginx reload race), whether the drop is a clean close or a reset, counts
the re-send, and counts anything else as a failure: a drop on a fresh connection too. Real
sockets on loopback, a server that drops on purpose."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.nginx.load import LoadGenerator, check_resends, nginx_reloads
from tests.support import read_http_request

_OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class DroppingServer:
    """Answers the first request of each connection with 200 and keeps it alive; the second
    request on a connection is dropped unanswered, by a reset (SO_LINGER 0) or a clean close.
    With `drop_every_request`, every request is dropped that way, fresh connections too; with
    `answer_once`, only the very first request of the server is answered."""

    def __init__(
        self, how: str, drop_every_request: bool = False, answer_once: bool = False
    ) -> None:
        self.how = how
        self.drop_every_request = drop_every_request
        self.answer_once = answer_once
        self.answered = 0
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        answered = 0
        with conn:
            while read_http_request(conn):
                if (
                    answered >= 1
                    or self.drop_every_request
                    or (self.answer_once and self.answered >= 1)
                ):
                    if self.how == "reset":
                        conn.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                    return  # the with block closes: RST with SO_LINGER 0, FIN otherwise
                conn.sendall(_OK)
                answered += 1
                self.answered += 1

    def close(self) -> None:
        self._listener.close()


@pytest.fixture(params=["reset", "close"])
def dropping_server(request: pytest.FixtureRequest) -> Iterator[DroppingServer]:
    server = DroppingServer(request.param)
    yield server
    server.close()


def _send_twice(port: int) -> list[tuple[int | None, str | None, int]]:
    generator = LoadGenerator(f"http://127.0.0.1:{port}/predict", threads=1)
    with httpx.Client(timeout=httpx.Timeout(5.0)) as client:
        return [generator._send(client), generator._send(client)]


def test_a_dropped_kept_alive_request_is_sent_again_once(dropping_server: DroppingServer) -> None:
    first, second = _send_twice(dropping_server.port)
    assert first == (200, None, 0)
    # The second request went out on the kept-alive connection, was dropped, and succeeded
    # on a new connection.
    assert second == (200, None, 1)
    assert dropping_server.connections == 2


def _send_once(server: DroppingServer, requests: int) -> list[tuple[int | None, str | None, int]]:
    generator = LoadGenerator(f"http://127.0.0.1:{server.port}/predict", threads=1)
    with httpx.Client(timeout=httpx.Timeout(5.0)) as client:
        return [generator._send(client) for _ in range(requests)]


@pytest.mark.parametrize("how", ["reset", "close"])
def test_a_drop_on_a_fresh_connection_is_a_failure_not_resent(how: str) -> None:
    server = DroppingServer(how, drop_every_request=True)
    try:
        ((status, error, retries),) = _send_once(server, 1)
    finally:
        server.close()
    assert (status, retries) == (None, 0)
    assert server.connections == 1
    assert error is not None
    assert ("reset" in error.lower()) if how == "reset" else ("without sending" in error)


@pytest.mark.parametrize("how", ["reset", "close"])
def test_a_second_drop_is_a_failure(how: str) -> None:
    # The kept-alive drop is re-sent once, on a fresh connection, which is dropped too.
    server = DroppingServer(how, answer_once=True)
    try:
        first, (status, error, retries) = _send_once(server, 2)
    finally:
        server.close()
    assert first == (200, None, 0)
    assert (status, retries) == (None, 1)
    assert server.connections == 2
    assert error is not None
    assert ("reset" in error.lower()) if how == "reset" else ("without sending" in error)


def test_resends_are_counted_per_thread_and_bounded_by_reloads(
    dropping_server: DroppingServer,
) -> None:
    # Every second request on a connection is dropped: a thread re-sends about every other one.
    generator = LoadGenerator(f"http://127.0.0.1:{dropping_server.port}/predict", threads=2)
    with generator:
        deadline = time.monotonic() + 10
        while generator.result.sent < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
    result = generator.result
    assert result.failed == 0, result.failures
    assert result.retried == sum(result.retried_by_thread.values()) >= 2
    assert set(result.retried_by_thread) <= {"load-0", "load-1"}
    worst = max(result.retried_by_thread.values())
    check_resends(result, reloads=worst)
    with pytest.raises(AssertionError, match="re-sent request"):
        check_resends(result, reloads=worst - 1)


def test_reloads_are_counted_from_the_entrypoint_log() -> None:
    log = (
        "nginx-entrypoint: upstreams changed, reloaded: 10.0.0.3:8000\n"
        '{"uri": "/predict"}\n'
        "nginx-entrypoint: upstreams changed, reloaded: 10.0.0.3:8000 10.0.0.4:8000\n"
    )
    assert nginx_reloads(log) == 2
    assert nginx_reloads("") == 0
