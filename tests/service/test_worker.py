"""One write per response: the protocol of the worker Gunicorn runs, over a transport that counts.

The protocol class is taken from the worker that service/gunicorn_conf.py names, the way Gunicorn
loads it, so going back to the stock worker (two writes per response) fails these tests.
"""

from __future__ import annotations

import ast
import asyncio
import json
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from gunicorn.util import load_class
from uvicorn.config import HTTP_PROTOCOLS, Config
from uvicorn.importer import import_from_string
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from service import ceiling
from service.app import create_app
from service.settings import ServiceSettings
from service.worker import JoinedWrites, QuietServer
from tests.service.conftest import FakeModel
from tests.support import PROJECT_ROOT, SEED_BODY

App = Callable[[Any, Any, Any], Awaitable[None]]


def _configured_protocol() -> type[asyncio.Protocol]:
    tree = ast.parse((PROJECT_ROOT / "service" / "gunicorn_conf.py").read_text())
    (worker_class,) = [
        node.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "worker_class" for t in node.targets)
        and isinstance(node.value, ast.Constant)
    ]
    http = load_class(worker_class).CONFIG_KWARGS["http"]
    # Uvicorn's own workers name theirs ("auto": httptools); ours passes the class.
    protocol: type[asyncio.Protocol] = (
        import_from_string(HTTP_PROTOCOLS.get(http, http)) if isinstance(http, str) else http
    )
    return protocol


PROTOCOL = _configured_protocol()


class CountingTransport(asyncio.Transport):
    """The socket end: records every write, close and abort, and the flow-control calls."""

    def __init__(self, events: list[tuple[Any, ...]]) -> None:
        super().__init__()
        self.events = events
        self.writes: list[bytes] = []
        self.protocol: asyncio.Protocol | None = None
        self.closing = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))
        self.events.append(("write", len(data)))
        # What a real transport does when its buffer fills: pause the protocol, resume later.
        if len(data) >= HIGH_WATER_LIMIT and self.protocol is not None:
            self.protocol.pause_writing()
            asyncio.get_running_loop().call_later(0.01, self._resume)

    def _resume(self) -> None:
        self.events.append(("resume",))
        assert self.protocol is not None
        self.protocol.resume_writing()

    def close(self) -> None:
        self.closing = True
        self.events.append(("close",))

    def abort(self) -> None:
        self.closing = True
        self.events.append(("abort",))

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 8000) if name in ("peername", "sockname") else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _serve(
    app: App,
    data: bytes,
    protocol_class: type[asyncio.Protocol] = PROTOCOL,
    events: list[tuple[Any, ...]] | None = None,
) -> CountingTransport:
    """Feeds `data` to a connection of `protocol_class` serving `app`; returns its transport."""

    async def run() -> CountingTransport:
        loop = asyncio.get_running_loop()
        state = ServerState()
        protocol = protocol_class(  # type: ignore[call-arg]
            config=Config(app=app, log_config=None), server_state=state, app_state={}, _loop=loop
        )
        transport = CountingTransport([] if events is None else events)
        transport.protocol = protocol
        protocol.connection_made(transport)
        protocol.data_received(data)  # type: ignore[attr-defined]
        while state.tasks:
            await asyncio.gather(*state.tasks)
        await asyncio.sleep(0.05)  # the end-of-step flush and any flow-control resume
        return transport

    return asyncio.run(run())


def _request(method: str, path: str, body: bytes = b"", headers: str = "") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {len(body)}\r\n{headers}\r\n"
    return head.encode() + body


@pytest.fixture
def service_app(fake_models: dict[str, FakeModel]) -> App:
    return create_app(ServiceSettings(max_body_bytes=4096, max_drain_bytes=8192), fake_models, {})


def test_stock_uvicorn_writes_header_and_body_apart() -> None:
    # The counting transport can tell: without our protocol a response takes two writes.
    transport = _serve(ceiling.app, _request("GET", "/"), HttpToolsProtocol)
    assert len(transport.writes) == 2


def test_predict_response_is_one_write_and_keeps_the_connection(service_app: App) -> None:
    transport = _serve(service_app, _request("POST", "/predict", json.dumps(SEED_BODY).encode()))
    (written,) = transport.writes
    head, body = written.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"content-length: %d" % len(body) in head
    assert json.loads(body)["species"] == "Gentoo"
    assert not transport.closing  # keep-alive


def test_bare_app_response_is_one_write() -> None:
    (written,) = _serve(ceiling.app, _request("GET", "/")).writes
    assert written.endswith(b"\r\n\r\n" + ceiling._BODY)


def test_head_response_is_one_write_without_body() -> None:
    (written,) = _serve(ceiling.app, _request("HEAD", "/")).writes
    assert written.startswith(b"HTTP/1.1 200 OK\r\n")
    assert written.endswith(b"\r\n\r\n")


def test_error_with_connection_close_is_written_before_the_close(service_app: App) -> None:
    # Declared beyond the drain limit: a 413 with Connection: close, and the socket closed.
    request = b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Length: 100000\r\n\r\n"
    transport = _serve(service_app, request)
    assert [event[0] for event in transport.events] == ["write", "close"]
    (written,) = transport.writes
    assert written.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in written.lower()
    assert json.loads(written.split(b"\r\n\r\n", 1)[1])["error"] == "body_too_large"


def test_unparsable_request_gets_its_400_in_one_write() -> None:
    transport = _serve(ceiling.app, b"\x16\x03\x01 not http\r\n\r\n")
    assert [event[0] for event in transport.events] == ["write", "close"]
    assert transport.writes[0].startswith(b"HTTP/1.1 400 ")


def test_pipelined_requests_are_answered_in_order_one_write_each() -> None:
    one = _serve(ceiling.app, _request("GET", "/")).writes[0]
    transport = _serve(ceiling.app, _request("GET", "/") * 2)
    assert transport.writes == [one, one]


def test_streamed_response_still_honours_flow_control() -> None:
    events: list[tuple[Any, ...]] = []

    async def streaming_app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})  # chunked
        for i in range(4):
            await send({"type": "http.response.body", "body": b"x" * 40_000, "more_body": i < 3})
            events.append(("sent", i))

    transport = _serve(streaming_app, _request("GET", "/"), events=events)
    # Held writes go out as soon as they reach the high-water mark, so the transport's
    # pause_writing holds the app back before its next chunk, as with the stock protocol.
    assert [event[0] if event[0] != "sent" else event for event in events] == [
        ("sent", 0),
        "write",
        ("sent", 1),
        "resume",
        ("sent", 2),
        "write",
        ("sent", 3),
        "resume",
    ]
    assert all(len(data) >= HIGH_WATER_LIMIT for data in transport.writes)
    assert b"".join(transport.writes).endswith(b"0\r\n\r\n")


def test_close_writes_what_is_held_and_abort_drops_it() -> None:
    async def run() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        loop = asyncio.get_running_loop()
        closed: list[tuple[Any, ...]] = []
        joined = JoinedWrites(CountingTransport(closed), loop)
        joined.write(b"head")
        joined.write(b"body")
        joined.close()
        aborted: list[tuple[Any, ...]] = []
        joined = JoinedWrites(CountingTransport(aborted), loop)
        joined.write(b"head")
        joined.abort()
        await asyncio.sleep(0)  # the scheduled flush finds nothing left
        return closed, aborted

    closed, aborted = asyncio.run(run())
    assert closed == [("write", 8), ("close",)]
    assert aborted == [("abort",)]


class CountingServer(QuietServer):
    """QuietServer with its ticks counted and a tick far longer than any test."""

    tick_seconds = 3600.0

    def __init__(self) -> None:
        super().__init__(Config(app=ceiling.app))
        self.ticks = 0

    async def on_tick(self, counter: int) -> bool:
        self.ticks += 1
        assert counter == 0  # every tick does Uvicorn's once-a-second work (Date header)
        return self.should_exit


def test_quiet_server_wakes_at_once_for_a_shutdown_signal() -> None:
    """A graceful shutdown does not wait for the next tick (an hour here)."""

    async def run() -> CountingServer:
        server = CountingServer()
        asyncio.get_running_loop().call_later(0.01, server.handle_exit, signal.SIGTERM, None)
        # The guard only turns a hang into a failure; a working server returns in ~0.01 s.
        await asyncio.wait_for(server.main_loop(), timeout=60)
        return server

    server = asyncio.run(run())
    assert server.should_exit
    assert server.ticks == 2  # the first, and the one the signal woke
