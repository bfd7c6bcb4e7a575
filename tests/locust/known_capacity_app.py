"""A test server whose capacity is known by construction: every request holds one lock for a
fixed time (KNOWN_CAPACITY_SERVICE_MS, default 20 ms), so it serves at most 1000 / 20 = 50
requests/s, one after the other. It waits rather than burning CPU so that the capacity holds on
a busy machine too (a CPU-bound server has it only on a core of its own), and the event loop
stays free, so a request reaches the app as soon as it arrives: the queue forms at the lock,
inside the app's own timing. It answers like the penguin API (so the load test's checks pass)
and appends its own timing of every request to KNOWN_CAPACITY_LOG: the wall time the request
reached the app, and how long until its answer was sent, queueing included. When the request
carries the time the load test scheduled it for (loadtest/open_model.py: SCHEDULED_HEADER), a
fourth column gives the time from then until the answer was sent: the interval the load test's
reported latency covers, less the answer's way back.

With KNOWN_CAPACITY_MAX_WAITING=N it also sheds load like the stack's admission control: a
request that finds N others already waiting gets 503 with Retry-After at once (logged with a
third column, 503), so accepted requests wait at most N service times."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from loadtest.open_model import SCHEDULED_HEADER

SERVICE_SECONDS = float(os.environ.get("KNOWN_CAPACITY_SERVICE_MS", "20")) / 1000.0
LOG_PATH = os.environ.get("KNOWN_CAPACITY_LOG", "")
MAX_WAITING = int(os.environ.get("KNOWN_CAPACITY_MAX_WAITING", "0"))  # 0: no limit
_WAITING = 0
SPECIES = ("Adelie", "Chinstrap", "Gentoo")
_SERVER: asyncio.Lock | None = None

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    global _SERVER, _WAITING
    if scope["type"] != "http":
        return
    arrived = time.time()
    started = time.perf_counter()
    scheduled = dict(scope.get("headers", [])).get(SCHEDULED_HEADER.lower().encode())
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    query = scope.get("query_string", b"").decode()
    model = query.partition("model=")[2].partition("&")[0] or "lr"
    status = 200
    if scope["path"] == "/predict" and MAX_WAITING and _WAITING >= MAX_WAITING:
        status, body = 503, b'{"detail": "overloaded"}'
    elif scope["path"] == "/predict":
        if _SERVER is None:  # created on the worker's own event loop
            _SERVER = asyncio.Lock()
        _WAITING += 1
        try:
            async with _SERVER:  # one request at a time
                await asyncio.sleep(SERVICE_SECONDS)
        finally:
            _WAITING -= 1
        body = json.dumps(
            {
                "model": model,
                "model_version": "known-capacity",
                "species": "Adelie",
                "probabilities": {"Adelie": 0.5, "Chinstrap": 0.25, "Gentoo": 0.25},
            }
        ).encode()
    else:
        body = b'{"status": "ok"}'
    headers = [(b"content-type", b"application/json")]
    if status == 503:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    if LOG_PATH and scope["path"] == "/predict":
        line = f"{arrived:.6f} {time.perf_counter() - started:.6f} {status}"
        if scheduled is not None:
            line += f" {time.time() - float(scheduled):.6f}"
        with open(LOG_PATH, "a", encoding="ascii") as log:
            log.write(line + "\n")
