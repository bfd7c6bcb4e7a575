"""Pure ASGI middleware (no BaseHTTPMiddleware: it costs a task and a stream per request).

It caps the body size before anything parses it, and records the request metrics.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import error_body
from service.metrics import IN_FLIGHT, request_metrics

# The buffered body is also left in the scope, so bare ASGI endpoints need not call receive().
BUFFERED_BODY_KEY = "service.body"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_UNMATCHED_ROUTE = "unmatched"


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return -1
    return None


async def _send_json(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                # The unread rest of the body makes the connection unusable for another request.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class ServiceMiddleware:
    """Body size limit (413 on Content-Length or streamed bytes) plus request metrics."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        start = time.perf_counter()
        # 0 until a response starts; stays 0 when the client left before we answered.
        status_holder: list[int] = [0]

        async def send_with_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
            await send(message)

        IN_FLIGHT.inc()
        try:
            if scope["method"] in _BODY_METHODS:
                replay = await self._buffer_body(scope, receive, send_with_status)
                if replay is None:
                    return
                receive = replay
            await self.app(scope, receive, send_with_status)
        except BaseException:
            status_holder[0] = status_holder[0] or 500
            raise
        finally:
            IN_FLIGHT.dec()
            route_label = _route_label(scope)
            # 499 is Nginx's "client closed request": counted, but not as a server error.
            status = str(status_holder[0] or 499)
            elapsed = time.perf_counter() - start
            counter, latency = request_metrics(scope["method"], route_label, status)
            counter.inc()
            latency.observe(elapsed)

    async def _buffer_body(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """Read the whole body up to the limit; answer 413 and return None when it is over."""
        limit = self.max_body_bytes
        declared = _content_length(scope)
        if declared is not None and (declared < 0 or declared > limit):
            status = 400 if declared < 0 else 413
            await _send_json(send, status, _too_large_body(limit, status))
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                # Client went away: nothing to answer.
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _send_json(send, 413, _too_large_body(limit, 413))
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        scope[BUFFERED_BODY_KEY] = body
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay


def _route_label(scope: Scope) -> str:
    """The matched route's template; never the raw path of an unknown URL (unbounded series)."""
    route: Any = scope.get("route")
    if route is not None:
        return str(getattr(route, "path", _UNMATCHED_ROUTE))
    # FastAPI's router records plain Starlette routes only as the matched endpoint. None of our
    # routes has path parameters, so for a matched route the path is the template.
    if "endpoint" in scope:
        return str(scope["path"])
    return _UNMATCHED_ROUTE


def _too_large_body(limit: int, status: int) -> bytes:
    if status == 400:
        return error_body(
            "invalid_header",
            "Content-Length is not a number",
            [
                {
                    "field": "content-length",
                    "message": "must be a non-negative integer",
                    "type": "header",
                }
            ],
        )
    return error_body(
        "body_too_large",
        f"the request body exceeds {limit} bytes (PENGUIN_MAX_BODY_BYTES)",
        [{"field": "body", "message": f"at most {limit} bytes", "type": "too_large"}],
    )
