"""Fixtures the stack tests share (the matrix tests use them through tests/matrix/conftest.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tests.stack.ready_server import ReadyHandler, ReadyServer


@pytest.fixture
def ready_server() -> Iterator[ReadyServer]:
    """The API behind Nginx on a free loopback port, until the test ends."""
    server = ReadyServer(("127.0.0.1", 0), ReadyHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
