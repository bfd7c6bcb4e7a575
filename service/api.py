"""Endpoints declared once, and the ASGI app that serves them.

An `Endpoint` is one handler plus what the OpenAPI document says about it: service/openapi.py
builds the document from the same declarations the app dispatches to, so the two cannot drift.

The app is deliberately thin because the capacity answer is CPU per request: it dispatches by an
exact (path, method) dict lookup (no route regexes, none of our paths has parameters), has no
middleware layers, and hands each handler one small `Call`. Around every handler it enforces the
body limit, renders every refusal in the one error shape (service/errors.py) and records the
request metrics (service/metrics.py). Handlers are plain functions: the work they do is
microsecond-scale, so a threadpool hop would cost more than it saves.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from pydantic import BaseModel, ValidationError
from starlette.types import Receive, Scope, Send

from service.errors import ApiError, error_body, validation_api_error
from service.metrics import IN_FLIGHT, UNMETERED_ROUTE, UPDATES, request_metrics

logger = logging.getLogger("service.api")

JSON = "application/json"
UNMATCHED_ROUTE = "unmatched"
# 499 is Nginx's "client closed request": counted, but not as a server error.
_CLIENT_GONE = 499
_INTERNAL_ERROR = error_body("internal_error", "internal server error")

BaseModelT = TypeVar("BaseModelT", bound=BaseModel)


@dataclass(frozen=True)
class QueryParameter:
    name: str
    description: str
    schema: dict[str, Any]


# The longest query string an endpoint reads (ours take ?model=NAME); longer ones are refused with
# 414 before parsing. Also what keeps the cache below small: at most 1024 entries of this size.
MAX_QUERY_BYTES = 1024
# Body values beyond a valid request's fields that are still validated one by one: a few stray
# commas (inside a string, say) get the specific errors, a body of thousands gets one refusal.
_STRAY_COMMAS = 64


@lru_cache(maxsize=1024)
def _parse_query(query_string: bytes) -> dict[str, str]:
    # Clients send the same few query strings again and again (?model=rf): parse each once.
    parsed: dict[str, str] = {}
    for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        parsed.setdefault(key, value)
    return parsed


class Call:
    """One request as a handler sees it: the ASGI scope and the whole (size-checked) body."""

    __slots__ = ("scope", "body")

    def __init__(self, scope: Scope, body: bytes) -> None:
        self.scope = scope
        self.body = body

    def query(self, name: str) -> str | None:
        """The first value of query parameter `name`, or None."""
        query_string: bytes = self.scope["query_string"]
        if not query_string:
            return None
        if len(query_string) > MAX_QUERY_BYTES:
            raise ApiError(
                414,
                "query_too_long",
                f"the query string exceeds {MAX_QUERY_BYTES} bytes",
                [
                    {
                        "field": "query",
                        "message": f"at most {MAX_QUERY_BYTES} bytes",
                        "type": "too_long",
                    }
                ],
            )
        return _parse_query(query_string).get(name)

    def header(self, name: bytes) -> str | None:
        """The first value of header `name` (lower case, as ASGI gives them), or None."""
        for key, value in self.scope["headers"]:
            if key == name:
                return str(value.decode("latin-1"))
        return None

    def json_body(self, schema: type[BaseModelT], max_fields: int) -> BaseModelT:
        """The body parsed and validated as `schema`; ApiError 400/415/422 otherwise."""
        body = self.checked_body(max_fields)
        try:
            # The validator model_validate_json calls, without its keyword handling (a third
            # of the cost for a small body); the same result and the same ValidationError.
            validated: BaseModelT = schema.__pydantic_validator__.validate_json(body)
            return validated
        except ValidationError as exc:
            raise validation_api_error(exc) from None

    def checked_body(self, max_fields: int) -> bytes:
        """The body, once its media type, presence and size are checked: ApiError 400/415/422.

        `max_fields` is the most fields a valid body holds (rows x fields per row). A body with
        more commas than that (plus a few) cannot be valid, and is refused before it is parsed:
        pydantic validates every value and reports every mistake, so the cost of parsing and
        validating grows with the number of values, which only the body limit bounded (a 1 MiB
        body of 349 000 empty objects took 2.7 GB and 40 s to refuse, issue 21). Counting commas
        is a memchr over the body; every value after the first in an array or object follows one.
        """
        _check_json_content_type(self.header(b"content-type"))
        if not self.body or self.body.isspace():
            raise ApiError(
                400,
                "empty_body",
                "the request body is empty; send a JSON object",
                [{"field": "body", "message": "required", "type": "missing"}],
            )
        if self.body.count(b",") >= max_fields + _STRAY_COMMAS:
            raise ApiError(
                422,
                "too_many_values",
                f"the body holds more values than a valid request, which has at most "
                f"{max_fields} fields",
                [{"field": "body", "message": f"at most {max_fields} fields", "type": "too_long"}],
            )
        return self.body


Handler = Callable[[Call], bytes]


@dataclass(frozen=True)
class Endpoint:
    """One route: the handler returns the 200 body; refusals are raised as ApiError.

    `body`, `response`, `query`, `errors` and `media_type` are both what the app enforces and
    what the OpenAPI document states (service/openapi.py).
    """

    method: str
    path: str
    handler: Handler
    summary: str
    description: str = ""
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    media_type: str = JSON
    query: tuple[QueryParameter, ...] = ()
    errors: tuple[int, ...] = ()
    in_schema: bool = True
    _content_type: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_content_type", self.media_type.encode("latin-1"))


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


# Longer Content-Type values are judged without the cache, which would otherwise hold 256 of
# them, each as long as the request head allows.
_MAX_CACHED_CONTENT_TYPE = 128


def _is_json(content_type: str) -> bool:
    if len(content_type) > _MAX_CACHED_CONTENT_TYPE:
        return _judge_json(content_type)
    return _cached_is_json(content_type)


@lru_cache(maxsize=256)
def _cached_is_json(content_type: str) -> bool:
    # Clients send the same Content-Type again and again: judge each once.
    return _judge_json(content_type)


def _judge_json(content_type: str) -> bool:
    media_type = _media_type(content_type)
    return media_type == JSON or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def _check_json_content_type(content_type: str | None) -> None:
    if content_type is None or _is_json(content_type):
        return  # no Content-Type is lenient: a bare body is taken as JSON
    media_type = _media_type(content_type)
    raise ApiError(
        415,
        "unsupported_media_type",
        "the request body must be JSON (Content-Type: application/json)",
        [{"field": "content-type", "message": f"got {media_type[:64]!r}", "type": "media_type"}],
    )


class _ClientGone(Exception):
    """The client disconnected before its body was in: there is nobody to answer."""


def _too_large(limit: int, drained: bool) -> ApiError:
    # When the unread rest of the body is still on the socket, the connection is unusable.
    headers = {} if drained else {"Connection": "close"}
    return ApiError(
        413,
        "body_too_large",
        f"the request body exceeds {limit} bytes (PENGUIN_MAX_BODY_BYTES)",
        [{"field": "body", "message": f"at most {limit} bytes", "type": "too_large"}],
        headers,
    )


async def _drain(receive: Receive, budget: int) -> bool:
    """Read and discard the rest of the body, at most `budget` bytes; True if it all came.

    Answering before the client has sent its whole body and then closing makes the kernel reset
    the connection, and a client that writes everything before reading sees the reset, not the
    413. Reading the rest first is what Nginx's lingering close does.
    """
    while budget >= 0:
        message = await receive()
        if message["type"] != "http.request":
            return False
        budget -= len(message.get("body", b""))
        if not message.get("more_body", False):
            return budget >= 0
    return False


async def read_body(scope: Scope, receive: Receive, limit: int, drain_limit: int) -> bytes:
    """The whole body, at most `limit` bytes (by Content-Length or as streamed); else ApiError."""
    declared: int | None = None
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                declared = -1
            if declared < 0:
                raise ApiError(
                    400,
                    "invalid_header",
                    "Content-Length is not a number",
                    [
                        {
                            "field": "content-length",
                            "message": "must be a non-negative integer",
                            "type": "header",
                        }
                    ],
                    {"Connection": "close"},
                )
            break
    if declared is not None and declared > limit:
        drained = declared <= drain_limit and await _drain(receive, drain_limit)
        raise _too_large(limit, drained)
    message = await receive()
    if message["type"] != "http.request":
        raise _ClientGone
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False) and len(body) <= limit:
        return body  # the usual case: one message
    chunks = [body]
    size = len(body)
    while size <= limit and message.get("more_body", False):
        message = await receive()
        if message["type"] != "http.request":
            raise _ClientGone
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        drained = not message.get("more_body", False) or await _drain(receive, drain_limit - size)
        raise _too_large(limit, drained)
    return b"".join(chunks)


async def _respond(
    send: Send, status: int, content_type: bytes, body: bytes, headers: dict[str, str]
) -> None:
    raw_headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
    for name, value in headers.items():
        raw_headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


class Api:
    """The ASGI app: lifespan (`startup` runs before the first request) and the endpoints."""

    def __init__(
        self,
        endpoints: Iterable[Endpoint],
        *,
        max_body_bytes: int,
        max_drain_bytes: int,
        startup: Callable[[], None] | None = None,
    ) -> None:
        self.endpoints = tuple(endpoints)
        self.max_body_bytes = max_body_bytes
        self.max_drain_bytes = max_drain_bytes
        self.startup = startup
        self._routes: dict[str, dict[str, Endpoint]] = {}
        for endpoint in self.endpoints:
            methods = self._routes.setdefault(endpoint.path, {})
            if endpoint.method in methods:
                raise ValueError(f"{endpoint.method} {endpoint.path} is declared twice")
            methods[endpoint.method] = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        # Anything else (websocket): returning without accepting makes the server refuse it.

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if self.startup is not None:
                        self.startup()
                except BaseException as error:
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    raise
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                UPDATES.flush()  # what the tick has not written yet would be lost with the process
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        metered = scope["path"] != UNMETERED_ROUTE
        if metered:
            UPDATES.add(IN_FLIGHT, 1.0)
        route = UNMATCHED_ROUTE
        status = _CLIENT_GONE
        try:
            content_type = b"application/json"
            headers: dict[str, str] = {}
            try:
                methods = self._routes.get(scope["path"])
                if methods is None:
                    raise ApiError(404, "not_found", "Not Found")
                route = scope["path"]
                endpoint = methods.get(scope["method"])
                if endpoint is None:
                    raise ApiError(
                        405,
                        "method_not_allowed",
                        "Method Not Allowed",
                        headers={"Allow": ", ".join(methods)},
                    )
                body = (
                    await read_body(scope, receive, self.max_body_bytes, self.max_drain_bytes)
                    if endpoint.body is not None
                    else b""
                )
                payload = endpoint.handler(Call(scope, body))
                status = 200
                content_type = endpoint._content_type
            except ApiError as error:
                status, payload, headers = error.status, error.body(), error.headers
            except _ClientGone:
                return
            except Exception:
                logger.exception("unhandled error on %s %s", scope["method"], scope["path"])
                status, payload = 500, _INTERNAL_ERROR
            await _respond(send, status, content_type, payload, headers)
        finally:
            if metered:
                UPDATES.add(IN_FLIGHT, -1.0)
                counter, latency = request_metrics(scope["method"], route, str(status))
                UPDATES.add(counter, 1.0)
                if latency is not None:
                    UPDATES.observe(latency, time.perf_counter() - start)


def dumps(payload: object) -> bytes:
    """Compact JSON bytes."""
    return json.dumps(payload, separators=(",", ":")).encode()
