"""Prometheus metrics, correct across Gunicorn workers.

With several workers each process has its own counters; prometheus_client's multiprocess mode
(PROMETHEUS_MULTIPROC_DIR, set up and cleaned by service/gunicorn_conf.py before this module is
imported) writes them to shared files that /metrics aggregates. Without that variable (tests,
a single process) the default registry is used.
"""

from __future__ import annotations

import asyncio
import os
from bisect import bisect_left
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Sub-millisecond buckets: a single prediction takes tens of microseconds plus HTTP overhead.
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
INFERENCE_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25)

REQUESTS = Counter(
    "penguin_http_requests_total",
    "HTTP requests by method, route template and status code.",
    ["method", "route", "status"],
)
REQUEST_LATENCY = Histogram(
    "penguin_http_request_duration_seconds",
    "Time from request start to the last response byte, by method, route and status.",
    ["method", "route", "status"],
    buckets=REQUEST_BUCKETS,
)
IN_FLIGHT = Gauge(
    "penguin_http_requests_in_flight",
    "Requests being served right now (summed over live workers).",
    multiprocess_mode="livesum",
)
INFERENCE_LATENCY = Histogram(
    "penguin_inference_duration_seconds",
    "Time spent in predict_proba, by model and endpoint kind (single or batch).",
    ["model", "kind"],
    buckets=INFERENCE_BUCKETS,
)
PREDICTED_ROWS = Counter(
    "penguin_predicted_rows_total",
    "Rows classified, by model.",
    ["model"],
)


# labels() hashes and validates its arguments on every call; the label sets are few and fixed
# (routes x statuses x methods, models x kinds), so the children are looked up once.
_request_children: dict[tuple[str, str, str], tuple[Any, Any]] = {}
_inference_children: dict[tuple[str, str], tuple[Any, Any]] = {}


def request_metrics(method: str, route: str, status: str) -> tuple[Any, Any]:
    """(request counter, latency histogram) children for one label set."""
    key = (method, route, status)
    children = _request_children.get(key)
    if children is None:
        children = (REQUESTS.labels(*key), REQUEST_LATENCY.labels(*key))
        _request_children[key] = children
    return children


def inference_metrics(model: str, kind: str) -> tuple[Any, Any]:
    """(inference latency histogram, predicted rows counter) children for one model and kind."""
    key = (model, kind)
    children = _inference_children.get(key)
    if children is None:
        children = (INFERENCE_LATENCY.labels(model, kind), PREDICTED_ROWS.labels(model))
        _inference_children[key] = children
    return children


class _Updates:
    """Metric updates, written to the shared files once per event-loop pass in multiprocess mode.

    There, every update is a locked write to a memory-mapped file plus a getpid() system call,
    about 0.7 us, and a prediction makes eight: as much CPU as the model. Updates made while the
    event loop runs its ready callbacks are summed and written once, by a callback the first
    update schedules for right after them (loop.call_soon). Other workers' scrapes therefore lag
    by at most the requests being processed at that instant; a scrape of this worker writes the
    pending updates first. Without multiprocess mode (tests, one process) or outside an event
    loop, updates are applied at once.
    """

    def __init__(self, deferred: bool) -> None:
        self.deferred = deferred
        self._deltas: dict[Any, float] = {}
        self._observations: dict[Any, list[float]] = {}
        self._scheduled = False

    def add(self, child: Any, amount: float) -> None:
        """Counter.inc or Gauge.inc/dec by `amount`."""
        # (_scheduled first: within a pass, every update after the first needs no call.)
        if self._scheduled or (self.deferred and self._schedule()):
            self._deltas[child] = self._deltas.get(child, 0.0) + amount
        else:
            child.inc(amount)

    def observe(self, child: Any, value: float) -> None:
        if self._scheduled or (self.deferred and self._schedule()):
            observations = self._observations.get(child)
            if observations is None:
                self._observations[child] = [value]
            else:
                observations.append(value)
        else:
            child.observe(value)

    def _schedule(self) -> bool:
        if self._scheduled:
            return True
        try:
            asyncio.get_running_loop().call_soon(self.flush)
        except RuntimeError:  # no event loop: write at once
            return False
        self._scheduled = True
        return True

    def flush(self) -> None:
        """Write every pending update."""
        self._scheduled = False
        deltas, self._deltas = self._deltas, {}
        observations, self._observations = self._observations, {}
        for child, amount in deltas.items():
            if amount:
                child.inc(amount)
        for child, values in observations.items():
            # Histogram.observe, for many values: one write for the sum, one per bucket hit.
            child._sum.inc(sum(values))
            bounds = child._upper_bounds
            hits: dict[int, int] = {}
            for value in values:
                index = bisect_left(bounds, value)  # the first bound >= value, as observe()
                hits[index] = hits.get(index, 0) + 1
            for index, count in hits.items():
                child._buckets[index].inc(count)


UPDATES = _Updates(deferred=bool(os.environ.get(MULTIPROC_ENV)))


def render_metrics() -> tuple[bytes, str]:
    """The exposition text and its content type, aggregated over workers when multiprocess."""
    UPDATES.flush()
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
