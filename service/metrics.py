"""Prometheus metrics, correct across Gunicorn workers.

With several workers each process has its own counters; prometheus_client's multiprocess mode
(PROMETHEUS_MULTIPROC_DIR, set up and cleaned by service/gunicorn_conf.py before this module is
imported) writes them to shared files that /metrics aggregates. Without that variable (tests,
a single process) the default registry is used.
"""

from __future__ import annotations

import contextlib
import os
from bisect import bisect_left
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from service.cpu import CGROUP_ROOT
from service.metrics_render import MultiprocessRenderer

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def geometric_buckets(low: float, high: float, per_decade: int) -> tuple[float, ...]:
    """Bounds low * 10**(i / per_decade) up to the first one >= high, rounded to 0.1 us.

    histogram_quantile() interpolates linearly inside the bucket that holds the quantile, so its
    answer is off by at most the bucket's width over its lower bound: 10**(1/per_decade) - 1.
    """
    bounds = []
    i = 0
    while True:
        bound = round(low * 10 ** (i / per_decade), 7)
        bounds.append(bound)
        if bound >= high:
            return tuple(bounds)
        i += 1


# Request latency: p95 estimated within 10 % anywhere between 1 ms and 5 s needs bounds at most
# 10 % apart there; 25 per decade are 9.6 % apart (94 bounds). Two coarse sub-millisecond ones
# below (a cheap /health), and the slow tail up to Gunicorn's default 30 s timeout above.
REQUEST_QUANTILE_ERROR = 10 ** (1 / 25) - 1
REQUEST_BUCKETS = (0.00025, 0.0005, *geometric_buckets(0.001, 5.0, 25), 10.0, 30.0)
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


# Routes counted but not timed: the probes. Nothing reads their latency (matrix/measure/
# prometheus.py leaves them out of its quantiles, the autoscaler reads counts), and each timed
# label set adds ~100 bucket lines to every scrape: a stack replica's answer held /metrics' and
# /ready's beside /predict's (35 KB; 13 KB without them, and ~0.1 ms less CPU per scrape:
# service/README.md, "Remedies tried").
UNTIMED_ROUTES = frozenset({"/health", "/ready"})
# Not counted, not timed, not in flight: the scrape itself. Nothing reads its series (every
# query leaves /metrics out), and a scrape that counted itself would change the values it
# reports, so no scrape of an idle replica could answer the previous scrape's text again
# (metrics_render.py).
UNMETERED_ROUTE = "/metrics"

# labels() hashes and validates its arguments on every call; the label sets are few and fixed
# (routes x statuses x methods, models x kinds), so the children are looked up once.
_request_children: dict[tuple[str, str, str], tuple[Any, Any | None]] = {}
_inference_children: dict[tuple[str, str], tuple[Any, Any]] = {}


def request_metrics(method: str, route: str, status: str) -> tuple[Any, Any | None]:
    """(request counter, latency histogram) children for one label set; no histogram for an
    untimed route (its series is never created, so it is not in the exposition either)."""
    key = (method, route, status)
    children = _request_children.get(key)
    if children is None:
        latency = None if route in UNTIMED_ROUTES else REQUEST_LATENCY.labels(*key)
        children = (REQUESTS.labels(*key), latency)
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
    """Metric updates, summed in the process and written to the shared files by the worker's
    once-a-second tick, in multiprocess mode.

    There, every update is a locked write to a memory-mapped file plus a getpid() system call,
    about 0.7 us warm, and a prediction makes eight: as much CPU as the model. Writing them after
    each event-loop pass (loop.call_soon, before) still cost an extra callback and a flush per
    request when requests arrive one at a time, with the caches cold each time; a timer a
    fraction of a second later cost an idle replica a wake-up after each scrape and probe. The
    worker's main loop (service/worker.py: QuietServer) wakes once a second anyway: it calls
    `defer()` when it starts and `flush()` at each tick, so the writes cost no wake-up of their
    own. A scrape of this worker writes its pending updates first, and so does the app's
    shutdown; another worker's scrape sees them at most a tick (1 s) late. Until `defer()` (tests,
    one process, any other server) updates are applied at once.
    """

    def __init__(self) -> None:
        self.deferred = False
        self._deltas: dict[Any, float] = {}
        self._observations: dict[Any, list[float]] = {}

    def defer(self) -> None:
        """Hold updates until flush(), from now on, in multiprocess mode (where writes cost)."""
        self.deferred = bool(os.environ.get(MULTIPROC_ENV))

    def add(self, child: Any, amount: float) -> None:
        """Counter.inc or Gauge.inc/dec by `amount`."""
        if self.deferred:
            self._deltas[child] = self._deltas.get(child, 0.0) + amount
        else:
            child.inc(amount)

    def observe(self, child: Any, value: float) -> None:
        if self.deferred:
            observations = self._observations.get(child)
            if observations is None:
                self._observations[child] = [value]
            else:
                observations.append(value)
        else:
            child.observe(value)

    def flush(self) -> None:
        """Write every pending update."""
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


UPDATES = _Updates()


class _CgroupFile:
    """A cgroup file kept open and read again from its start with one pread per scrape.

    Opening a cgroup file costs more than reading it (a kernfs open, pathlib's layers); a
    replica reads the same two files on every scrape.
    """

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def read(self) -> str:
        return os.pread(self.fd, 4096, 0).decode("ascii")


def _first_file(*paths: Path) -> _CgroupFile | None:
    for path in paths:
        try:
            return _CgroupFile(path)
        except OSError:
            continue
    return None


def _cpu_seconds(cpu_file: _CgroupFile) -> float | None:
    text = cpu_file.read()
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":  # v2 cpu.stat
            return int(value) / 1e6
    fields = text.split()  # v1 cpuacct.usage: nanoseconds
    return int(fields[0]) / 1e9 if len(fields) == 1 else None


# cgroup root -> (its CPU file, its memory file), found on the first scrape.
_cgroup_files: dict[Path, tuple[_CgroupFile | None, _CgroupFile | None]] = {}


def container_usage(root: Path = CGROUP_ROOT) -> tuple[float | None, float | None]:
    """(CPU seconds used, memory bytes in use) of this container's cgroup (v2, else v1).

    The replica as a whole (every worker and the master), which is what its CPU quota and memory
    limit apply to; a worker's own process figures would miss the others.
    """
    files = _cgroup_files.get(root)
    if files is None:
        files = _cgroup_files[root] = (
            _first_file(root / "cpu.stat", root / "cpuacct" / "cpuacct.usage"),
            _first_file(root / "memory.current", root / "memory" / "memory.usage_in_bytes"),
        )
    cpu_file, memory_file = files
    cpu = memory = None
    with contextlib.suppress(OSError, ValueError):
        cpu = _cpu_seconds(cpu_file) if cpu_file else None
    with contextlib.suppress(OSError, ValueError, IndexError):
        memory = float(memory_file.read().split()[0]) if memory_file else None
    return cpu, memory


def container_usage_text(root: Path = CGROUP_ROOT) -> bytes:
    """Exposition lines for container_usage(); nothing for a figure the cgroup does not show."""
    cpu, memory = container_usage(root)
    lines = []
    if cpu is not None:
        lines += [
            "# HELP penguin_container_cpu_seconds_total CPU time of the whole replica "
            "(its cgroup: every worker and the master).",
            "# TYPE penguin_container_cpu_seconds_total counter",
            f"penguin_container_cpu_seconds_total {cpu!r}",
        ]
    if memory is not None:
        lines += [
            "# HELP penguin_container_memory_bytes Memory of the whole replica (its cgroup).",
            "# TYPE penguin_container_memory_bytes gauge",
            f"penguin_container_memory_bytes {memory!r}",
        ]
    return ("\n".join(lines) + "\n").encode() if lines else b""


# One renderer per multiprocess directory (tests switch directories within a process).
_renderers: dict[str, MultiprocessRenderer] = {}


def render_metrics() -> tuple[bytes, str]:
    """The exposition text and its content type, aggregated over workers when multiprocess."""
    UPDATES.flush()
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        renderer = _renderers.get(directory)
        if renderer is None:
            renderer = _renderers[directory] = MultiprocessRenderer(Path(directory))
        return renderer.render() + container_usage_text(), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY) + container_usage_text(), CONTENT_TYPE_LATEST
