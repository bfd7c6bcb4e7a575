"""loadtest/keepalive.py: a pooled connection is reused even when its descriptor is above 1024,
where geventhttpclient's own select()-based check called every such connection dead."""

from __future__ import annotations

import os
import resource
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from geventhttpclient import HTTPClient

from loadtest import keepalive
from tests.support import require

FILLER_FILES = 1100  # pushes every new descriptor past select()'s limit of 1024


class _CountingServer(ThreadingHTTPServer):
    daemon_threads = True
    connections = 0
    last_connection: socket.socket | None = None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1  # type: ignore[attr-defined]
        self.server.last_connection = self.connection  # type: ignore[attr-defined]

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        body = b'{"ok": true}\n'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def high_descriptors() -> Iterator[None]:
    """Holds enough open files that the sockets opened next get descriptors above 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = FILLER_FILES + 200
    if hard != resource.RLIM_INFINITY and hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))  # root may raise it
        except (ValueError, OSError):
            require(False, f"the open-file hard limit {hard} is under {want}")
    else:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    fillers = [os.open(os.devnull, os.O_RDONLY) for _ in range(FILLER_FILES)]
    try:
        yield
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def server() -> Iterator[_CountingServer]:
    httpd = _CountingServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_connection_above_descriptor_1024_is_kept_alive(
    high_descriptors: None, server: _CountingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Installed on a copy of the class's attribute, so other tests see the library unchanged.
    monkeypatch.setattr(
        keepalive.connectionpool.ConnectionPool, "_is_socket_alive", keepalive.is_socket_alive
    )
    client = HTTPClient("127.0.0.1", server.server_address[1], concurrency=1)
    try:
        for _ in range(5):
            response = client.get("/")
            assert response.status_code == 200
            response.read()
            response.release()
        sock = client._connection_pool._socket_queue.peek()
        assert sock.fileno() >= 1024  # the case select() cannot take
    finally:
        client.close()
    assert server.connections == 1


def test_a_connection_the_server_closed_is_not_reused(server: _CountingServer) -> None:
    """The check still tells an idle connection from one the server has closed (its FIN)."""
    client = HTTPClient("127.0.0.1", server.server_address[1], concurrency=1)
    try:
        response = client.get("/")
        response.read()
        response.release()
        pool = client._connection_pool
        sock = pool._socket_queue.peek()
        assert keepalive.is_socket_alive(pool, sock)
        assert server.last_connection is not None
        server.last_connection.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + 5
        while keepalive.is_socket_alive(pool, sock) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not keepalive.is_socket_alive(pool, sock)
    finally:
        client.close()


def test_install_replaces_the_librarys_check(monkeypatch: pytest.MonkeyPatch) -> None:
    pool_class = keepalive.connectionpool.ConnectionPool
    monkeypatch.setattr(pool_class, "_is_socket_alive", pool_class._is_socket_alive)
    keepalive.install()
    assert pool_class._is_socket_alive is keepalive.is_socket_alive
