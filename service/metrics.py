"""Prometheus metrics, correct across Gunicorn workers.

With several workers each process has its own counters; prometheus_client's multiprocess mode
(PROMETHEUS_MULTIPROC_DIR, set up and cleaned by service/gunicorn_conf.py before this module is
imported) writes them to shared files that /metrics aggregates. Without that variable (tests,
a single process) the default registry is used.
"""

from __future__ import annotations

import os
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


def render_metrics() -> tuple[bytes, str]:
    """The exposition text and its content type, aggregated over workers when multiprocess."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
