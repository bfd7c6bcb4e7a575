"""A test server whose capacity is known by construction: every request spends a fixed amount
of CPU time (KNOWN_CAPACITY_CPU_MS, default 20 ms) in one Gunicorn worker with one event loop,
so it serves at most 1000 / 20 = 50 requests/s. It answers like the penguin API (so the load
test's checks pass) and appends its own timing of every request to KNOWN_CAPACITY_LOG: the wall
time the request reached the app, and how long the app took until the answer was sent."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

CPU_SECONDS = float(os.environ.get("KNOWN_CAPACITY_CPU_MS", "20")) / 1000.0
LOG_PATH = os.environ.get("KNOWN_CAPACITY_LOG", "")
SPECIES = ("Adelie", "Chinstrap", "Gentoo")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def _burn(seconds: float) -> None:
    """Busy-loops until this thread has used `seconds` of CPU (not wall) time."""
    start = time.thread_time()
    while time.thread_time() - start < seconds:
        pass


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    arrived = time.time()
    started = time.perf_counter()
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    query = scope.get("query_string", b"").decode()
    model = query.partition("model=")[2].partition("&")[0] or "lr"
    if scope["path"] == "/predict":
        _burn(CPU_SECONDS)
        body = json.dumps({"model": model, "model_version": "known-capacity",
                           "species": "Adelie",
                           "probabilities": {"Adelie": 0.5, "Chinstrap": 0.25,
                                             "Gentoo": 0.25}}).encode()
    else:
        body = b'{"status": "ok"}'
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
    if LOG_PATH and scope["path"] == "/predict":
        with open(LOG_PATH, "a", encoding="ascii") as log:
            log.write(f"{arrived:.6f} {time.perf_counter() - started:.6f}\n")
