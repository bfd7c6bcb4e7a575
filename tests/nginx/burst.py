"""Many concurrent keep-alive clients on one asyncio loop, for overload tests.

Threads (tests/nginx/load.py) cannot hold a hundred requests in flight on a 2-core machine; raw
HTTP/1.1 over asyncio streams can, at a few tens of microseconds of client CPU per request.
Each client POSTs a JSON body (the seed /predict body unless told), waits for the whole answer,
and sends the next at once; after a refusal (503) it pauses first, as a user with think time
would, so refusals cannot turn into a busy loop that takes the CPU from the server under test.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from tests.support import SEED_BODY


@dataclass
class Answer:
    status: int
    seconds: float
    retry_after: str | None
    body: bytes


@dataclass
class BurstResult:
    answers: list[Answer] = field(default_factory=list)
    # Connection-level failures (refused, reset, closed without an answer), by exception name.
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def statuses(self) -> Counter[int]:
        return Counter(answer.status for answer in self.answers)

    def latencies(self, status: int) -> list[float]:
        return sorted(answer.seconds for answer in self.answers if answer.status == status)

    def percentile(self, status: int, share: float) -> float:
        values = self.latencies(status)
        if not values:
            return float("nan")
        return values[min(len(values) - 1, int(share * len(values)))]

    def summary(self) -> str:
        parts = [f"statuses={dict(self.statuses)}", f"errors={dict(self.errors)}"]
        for status in sorted(self.statuses):
            values = self.latencies(status)
            parts.append(
                f"{status}: p50={statistics.median(values) * 1000:.1f}ms "
                f"p95={self.percentile(status, 0.95) * 1000:.1f}ms"
            )
        return " ".join(parts)


def _request(host: str, path: str, payload: object) -> bytes:
    body = json.dumps(payload).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


async def _client(
    url: str, payload: object, deadline: float, pause: float, result: BurstResult
) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = _request(parts.netloc, parts.path or "/", payload)
    writer: asyncio.StreamWriter | None = None
    while time.monotonic() < deadline:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            started = time.monotonic()
            writer.write(request)
            status, headers, body = await _read_answer(reader)
            result.answers.append(
                Answer(status, time.monotonic() - started, headers.get("retry-after"), body)
            )
            if headers.get("connection", "").lower() == "close":
                writer.close()
                writer = None
            if status == 503:
                await asyncio.sleep(pause)
        except (OSError, asyncio.IncompleteReadError, ValueError) as error:
            result.errors[type(error).__name__] += 1
            if writer is not None:
                writer.close()
            writer = None
            await asyncio.sleep(0.01)
    if writer is not None:
        writer.close()


async def _burst(
    url: str, payload: object, clients: int, seconds: float, pause: float
) -> BurstResult:
    result = BurstResult()
    deadline = time.monotonic() + seconds
    await asyncio.gather(*(_client(url, payload, deadline, pause, result) for _ in range(clients)))
    return result


def burst(
    url: str,
    clients: int,
    seconds: float,
    payload: object = SEED_BODY,
    refused_pause: float = 0.1,
) -> BurstResult:
    """`clients` connections each POSTing `payload` to `url` back to back for `seconds`,
    pausing `refused_pause` seconds after each 503."""
    return asyncio.run(_burst(url, payload, clients, seconds, refused_pause))
