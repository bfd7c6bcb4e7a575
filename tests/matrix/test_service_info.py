"""matrix.measure.service_info against a stand-in api on loopback, and the report line."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from matrix.measure.service_info import evaluator
from tests.support import free_port


def _serve(status: int, body: bytes) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
            if self.path != "/health":
                self.send_error(404)
                return
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("name", ["c", "numpy"])
def test_the_evaluator_is_read_from_health(name: str) -> None:
    for url in _serve(200, b'{"status": "ok", "evaluator": "%s"}' % name.encode()):
        assert evaluator(url) == name


@pytest.mark.parametrize(
    ("status", "body"),
    [(200, b'{"status": "ok"}'), (200, b"not json"), (200, b"[1]"), (503, b"{}")],
    ids=["older api", "not json", "not an object", "error"],
)
def test_an_api_that_does_not_say_is_none(status: int, body: bytes) -> None:
    for url in _serve(status, body):
        assert evaluator(url) is None


def test_nothing_listening_is_none() -> None:
    assert evaluator(f"http://127.0.0.1:{free_port()}", timeout=2) is None
