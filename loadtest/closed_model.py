"""Closed-model (workshop) measurement: what each generator saw, second by second, by outcome.

Locust's own statistics time every answer alike, so under admission control the fast 503
refusals pull the p95 of the successful answers down, and they keep only a rolling ~10 s
percentile. The workshop comparison needs successes and refusals apart and a per-second series
for its plots, so every request's outcome is recorded here per wall-clock second (by when its
answer came), with one HDR histogram for successful answers and one for refusals, the same
histograms the open model uses. Each generator sends its finished seconds to the master, which
writes them to the step log; the matrix merges them (merge_windows, summarise).

Pure Python (no Locust import): the locustfile and the matrix share it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from loadtest.open_model import decode_histogram, new_histogram, percentile_ms

WINDOW_MESSAGE = "penguin_windows"
OK = "ok"
# What Nginx's (and the service's) admission control answers when it sheds load.
REFUSED = "refused (503)"
TIMEOUT = "timeout"
CONNECTION_ERROR = "connection error"
INVALID = "invalid answer"


def outcome_kind(status: int, timed_out: bool, problem: str | None) -> str:
    """One request's outcome: ok, refused (503), timeout, connection error (no HTTP answer),
    another HTTP status, or an HTTP 200 whose body is wrong."""
    if timed_out:
        return TIMEOUT
    if status == 0:
        return CONNECTION_ERROR
    if status == 503:
        return REFUSED
    if status != 200:
        return f"HTTP {status}"
    return INVALID if problem else OK


def event_outcome_kind(status: int, exception: BaseException | None) -> str:
    """The outcome of a request that Locust's request event reported (a user's own locustfile:
    its users send through Locust's clients, not through ours). No exception: the user's file
    counted it a success. Otherwise the status it got (0: none), a timeout by the exception's
    type, and a 200 that the user's file failed (e.g. with catch_response) as an invalid answer."""
    if exception is None:
        return OK
    timed_out = "timeout" in type(exception).__name__.lower()
    return outcome_kind(status, timed_out, str(exception) if status == 200 else None)


@dataclass
class _Second:
    counts: Counter[str] = field(default_factory=Counter)
    ok: HdrHistogram = field(default_factory=new_histogram)
    refused: HdrHistogram = field(default_factory=new_histogram)


class WindowRecorder:
    """One generator process's outcomes, per wall-clock second of the answer. Every second from
    the start is sent, also one without answers (it still carries the user count)."""

    def __init__(self, started: float | None = None) -> None:
        self._seconds: dict[int, _Second] = {}
        self._next: int | None = int(started) if started is not None else None

    def record(self, answered_at: float, latency_s: float, kind: str) -> None:
        second = int(answered_at)
        if self._next is None:
            self._next = second
        window = self._seconds.get(second)
        if window is None:  # not setdefault: it would build two histograms for every answer
            window = self._seconds[second] = _Second()
        window.counts[kind] += 1
        micros = max(1, int(latency_s * 1_000_000))
        if kind == OK:
            window.ok.record_value(micros)
        elif kind == REFUSED:
            window.refused.record_value(micros)

    def flush(self, now: float, users: int, final: bool = False) -> list[dict[str, Any]]:
        """The seconds that are over (with `final`, also the current one) as messages, forgotten
        here. `users` is the process's user count now, stamped on each second it sends."""
        if self._next is None:
            return []
        end = int(now) + 1 if final else int(now)
        if final and self._seconds:
            end = max(end, max(self._seconds) + 1)
        messages = []
        for second in range(self._next, end):
            window = self._seconds.pop(second, _Second())
            messages.append(
                {
                    "second": second,
                    "users": users,
                    "counts": dict(window.counts),
                    "ok": _encode(window.ok),
                    "refused": _encode(window.refused),
                }
            )
        self._next = max(self._next, end)
        return messages


def _encode(histogram: HdrHistogram) -> str:
    return histogram.encode().decode("ascii") if histogram.get_total_count() else ""


@dataclass
class Window:
    """One second, merged over every generator process."""

    second: int
    users: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    ok: HdrHistogram = field(default_factory=new_histogram)
    refused: HdrHistogram = field(default_factory=new_histogram)

    @property
    def answered(self) -> int:
        return sum(self.counts.values())


def merge_windows(messages: Iterable[dict[str, Any]]) -> list[Window]:
    """Every generator's seconds merged into one series, oldest first. A generator reports each
    second once, so counts and user counts add up."""
    merged: dict[int, Window] = {}
    for message in messages:
        second = int(message["second"])
        window = merged.setdefault(second, Window(second))
        window.users += int(message.get("users", 0))
        window.counts.update({str(k): int(v) for k, v in message["counts"].items()})
        window.ok.add(decode_histogram(message.get("ok", "")))
        window.refused.add(decode_histogram(message.get("refused", "")))
    return [merged[s] for s in sorted(merged)]


@dataclass(frozen=True)
class ClosedSummary:
    """The outcomes answered within [start, end): rates per second of that span."""

    seconds: float
    counts: dict[str, int]
    ok_p50_ms: float | None
    ok_p95_ms: float | None
    ok_p99_ms: float | None
    ok_max_ms: float | None
    refused_p95_ms: float | None
    users: int

    @property
    def answered(self) -> int:
        return sum(self.counts.values())

    @property
    def ok(self) -> int:
        return self.counts.get(OK, 0)

    @property
    def served_rps(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    @property
    def answered_rps(self) -> float:
        return self.answered / self.seconds if self.seconds > 0 else 0.0

    def share(self, kind: str) -> float:
        return self.counts.get(kind, 0) / self.answered if self.answered else 0.0


def summarise(windows: Sequence[Window], start: float, end: float) -> ClosedSummary:
    """Totals over the whole seconds inside [start, end) (a partial first or last second is left
    out, so the rate is not diluted)."""
    first, last = math.ceil(start), math.floor(end)
    inside = [w for w in windows if first <= w.second < last]
    counts: Counter[str] = Counter()
    ok, refused = new_histogram(), new_histogram()
    for window in inside:
        counts.update(window.counts)
        ok.add(window.ok)
        refused.add(window.refused)
    return ClosedSummary(
        seconds=float(max(0, last - first)),
        counts=dict(counts),
        ok_p50_ms=percentile_ms(ok, 50.0),
        ok_p95_ms=percentile_ms(ok, 95.0),
        ok_p99_ms=percentile_ms(ok, 99.0),
        ok_max_ms=percentile_ms(ok, 100.0),
        refused_p95_ms=percentile_ms(refused, 95.0),
        users=max((w.users for w in inside), default=0),
    )
