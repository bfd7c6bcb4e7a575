"""The Gunicorn worker: Uvicorn's, with each HTTP response written to the socket in one piece.

Uvicorn's httptools protocol writes a response's status line and headers with one
`transport.write` and its body with another. A worker killed between the two (a SIGKILL, the
OOM killer) leaves Nginx with a header and no body; Nginx has already passed the header on to
the client, so it can no longer retry the request on another replica (proxy_next_upstream) and
the client gets a truncated response. With one write the response is either wholly in the
kernel, which delivers it even if the process dies next, or not sent at all, and Nginx retries.

`JoinedWrites` gives the protocol a transport that holds what it is given and writes it to the
real transport in one piece when the response is complete (`OneWriteHttpToolsProtocol`), before a
close, or at the latest at the end of the event-loop step, for writes that do not end a response
(a streamed chunk, `100 Continue`). The complete-response flush happens in the step that sent the
body, as Uvicorn's own writes do: a client that sends its request and half-closes gets its answer
before the transport sees the end of file and closes.
"""

from __future__ import annotations

import asyncio
import sys
import time
from types import FrameType
from typing import Any

import uvicorn
import uvicorn_worker  # type: ignore[import-untyped]  # ships no type information
from gunicorn.arbiter import Arbiter  # type: ignore[import-untyped]
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.errors import error_body
from service.settings import get_settings


class JoinedWrites(asyncio.Transport):
    """Wraps a transport: what is written reaches it as one write on flush(), close(), at 64 KiB
    held, or at the end of the event-loop step, whichever comes first."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._held_bytes = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return  # Uvicorn writes b"" for an empty body; it would only schedule a flush
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(bytes(data))
        self._held_bytes += len(data)
        # A streamed response sent without yielding would otherwise pile up here unseen by the
        # real transport's flow control (pause_writing), which only counts what it was given.
        if self._held_bytes >= HIGH_WATER_LIMIT:
            self.flush()

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def flush(self) -> None:
        """Write what is held, in one write."""
        if not self._held:
            return
        data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
        self.discard()
        self._transport.write(data)

    def discard(self) -> None:
        """Drop what is held (the connection is gone)."""
        self._held = []
        self._held_bytes = 0

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        # Abort means "drop what is not sent yet"; that includes what we hold.
        self.discard()
        self._transport.abort()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._held_bytes

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)


def _head_too_large(limit: int) -> bytes:
    body = error_body(
        "header_too_large",
        f"the request line and headers exceed {limit} bytes (PENGUIN_MAX_HEADER_BYTES)",
        [{"field": "header", "message": f"at most {limit} bytes", "type": "too_large"}],
    )
    head = (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
    )
    return head + body


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """Uvicorn's httptools protocol, writing through `JoinedWrites`, with a bounded request head.

    Uvicorn and httptools set no limit on the request line or the headers: they are gathered
    whole before the app sees any of them, and a 150 MB header kept a worker busy past
    Gunicorn's timeout, which killed it with every request it held (issue 21). A head that grows
    beyond PENGUIN_MAX_HEADER_BYTES is answered 431 and the connection closed. Counted per
    chunk read: a chunk counts when the parser was inside one head before and after it, so the
    chunk that starts a head (which may end the previous request) is not counted, and a head
    is refused between its limit and its limit plus one read (at most 256 KiB with uvloop).
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.joined_writes = JoinedWrites(transport, self.loop)
        self._max_head_bytes = get_settings().max_header_bytes
        self._in_head = False
        self._head_began = False
        self._head_bytes = 0
        super().connection_made(self.joined_writes)

    def data_received(self, data: bytes) -> None:
        was_in_head = self._in_head
        self._head_began = False
        super().data_received(data)
        if was_in_head and self._in_head and not self._head_began:
            self._head_bytes += len(data)
            if self._head_bytes > self._max_head_bytes and not self.transport.is_closing():
                self.transport.write(_head_too_large(self._max_head_bytes))
                self.transport.close()

    def on_message_begin(self) -> None:
        self._in_head = True
        self._head_began = True
        self._head_bytes = 0
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        # The response is whole: write it now, in the step that sent it (see the module's doc).
        self.joined_writes.flush()
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        # Uvicorn stops writing to a lost connection, and a closed transport refuses writes
        # (uvloop raises): what is still held has nobody to go to.
        self.joined_writes.discard()
        super().connection_lost(exc)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class QuietServer(uvicorn.Server):
    """Uvicorn's server, waking once a second instead of ten times when nothing happens.

    Uvicorn's main loop sleeps 0.1 s between checks, although its work there is once a second
    (the Date header, the heartbeat to Gunicorn) except noticing a shutdown. Ten wake-ups a
    second were half of an idle worker's CPU, and at 100 req/s one wake-up in eleven. Here it
    wakes at each turn of the wall-clock second (when the Date header changes) or at once when
    a shutdown signal arrives, so a graceful shutdown starts as promptly as before.
    """

    tick_seconds = 1.0  # Uvicorn's on_tick does its work every tenth call of 0.1 s
    _waiter: asyncio.Future[None] | None = None

    async def main_loop(self) -> None:
        # Imported in the worker: prometheus_client must not be imported before Gunicorn's
        # config has set its multiprocess directory.
        from service.metrics import UPDATES

        loop = asyncio.get_running_loop()
        # The metric updates of the requests are written once a tick (service/metrics.py).
        UPDATES.defer()
        should_exit = await self.on_tick(0)  # counter 0: the once-a-second work
        while not should_exit:
            self._waiter = waiter = loop.create_future()
            delay = self.tick_seconds - time.time() % self.tick_seconds
            timer = loop.call_later(delay, _wake, waiter)
            await waiter
            timer.cancel()
            UPDATES.flush()
            should_exit = await self.on_tick(0)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        waiter = self._waiter
        if waiter is not None:
            waiter.get_loop().call_soon_threadsafe(_wake, waiter)


class UvicornWorker(uvicorn_worker.UvicornWorker):  # type: ignore[misc]  # untyped base
    """uvicorn_worker.UvicornWorker (uvloop, httptools) with one write per response and a main
    loop that wakes once a second (`QuietServer`)."""

    CONFIG_KWARGS = {"loop": "auto", "http": OneWriteHttpToolsProtocol}

    async def _serve(self) -> None:
        # uvicorn_worker's own _serve, with QuietServer for uvicorn.Server.
        self.config.app = self.wsgi
        server = QuietServer(config=self.config)
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
