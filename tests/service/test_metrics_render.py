"""The /metrics renderer writes what prometheus_client's MultiProcessCollector writes."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client import multiprocess as prometheus_multiprocess

from service.metrics import REQUEST_BUCKETS
from service.metrics_render import MultiprocessRenderer


def stock_text(directory: Path) -> bytes:
    registry = CollectorRegistry()
    prometheus_multiprocess.MultiProcessCollector(registry, str(directory))  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def same_text(ours: bytes, stock: bytes) -> None:
    """The same lines (the order of series within a family may differ; Prometheus ignores it)."""
    assert sorted(ours.decode().splitlines()) == sorted(stock.decode().splitlines())
    assert ours.count(b"\n") == stock.count(b"\n")


class Worker:
    """The service's metric kinds, written to the directory as a worker with this pid would."""

    def __init__(
        self, pid: int, monkeypatch: pytest.MonkeyPatch, gauge_mode: str = "livesum"
    ) -> None:
        monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue(lambda: pid))
        self.requests = Counter("t_requests", "Requests.", ["route", "status"], registry=None)
        self.latency = Histogram(
            "t_latency_seconds",
            'Latency with "quotes" and a \\ backslash.',
            ["route", "status"],
            buckets=REQUEST_BUCKETS,
            registry=None,
        )
        self.in_flight = Gauge(
            "t_in_flight", "In flight.", multiprocess_mode=gauge_mode, registry=None
        )

    def serve(self, rng: random.Random, routes: tuple[str, ...], n: int) -> None:
        for _ in range(n):
            labels = (rng.choice(routes), rng.choice(("200", "422")))
            self.requests.labels(*labels).inc()
            self.latency.labels(*labels).observe(rng.expovariate(1 / 0.01))
        self.in_flight.set(rng.randint(0, 5))


@pytest.fixture
def directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    yield tmp_path


def test_two_workers_then_more_traffic_then_new_series(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(7)
    first = Worker(101, monkeypatch)
    second = Worker(202, monkeypatch)
    renderer = MultiprocessRenderer(directory)
    first.serve(rng, ("/predict",), 50)
    second.serve(rng, ("/predict", "/health"), 50)
    same_text(renderer.render(), stock_text(directory))
    # Values only (the layout is unchanged): the changed lines are rewritten.
    first.serve(rng, ("/predict",), 30)
    same_text(renderer.render(), stock_text(directory))
    # New series appear in one file.
    second.serve(rng, ("/predict", "/health", "/metrics"), 30)
    same_text(renderer.render(), stock_text(directory))
    # Nothing changed: the same text again.
    assert renderer.render() == renderer.render()


def test_dead_worker_live_gauge_drops_out(directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(8)
    Worker(101, monkeypatch).serve(rng, ("/predict",), 10)
    Worker(202, monkeypatch).serve(rng, ("/predict",), 10)
    renderer = MultiprocessRenderer(directory)
    before = renderer.render()
    prometheus_multiprocess.mark_process_dead(202, str(directory))  # type: ignore[no-untyped-call]
    after = renderer.render()
    same_text(after, stock_text(directory))
    assert after != before  # the dead worker's in-flight figure is no longer summed


def test_other_gauge_modes_are_handed_to_prometheus_client(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Worker(101, monkeypatch, gauge_mode="max").serve(random.Random(9), ("/predict",), 10)
    Worker(202, monkeypatch, gauge_mode="max").serve(random.Random(10), ("/predict",), 10)
    text = MultiprocessRenderer(directory).render()
    assert text == stock_text(directory)
    assert b"t_in_flight" in text


def test_empty_directory(directory: Path) -> None:
    assert MultiprocessRenderer(directory).render() == stock_text(directory) == b""


@pytest.mark.parametrize("scrapes", [1, 3])
def test_changes_between_scrapes_are_never_missed(
    directory: Path, monkeypatch: pytest.MonkeyPatch, scrapes: int
) -> None:
    """Random traffic between every scrape, over many scrapes."""
    rng = random.Random(scrapes)
    workers = [Worker(pid, monkeypatch) for pid in (1, 2, 3)]
    renderer = MultiprocessRenderer(directory)
    for _ in range(20):
        rng.choice(workers).serve(rng, ("/a", "/b"), rng.randint(0, 3))
        for _ in range(scrapes):
            same_text(renderer.render(), stock_text(directory))


def test_the_directory_is_listed_again_only_when_it_may_have_changed(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(11)
    Worker(101, monkeypatch).serve(rng, ("/predict",), 10)
    renderer = MultiprocessRenderer(directory)
    # Listed in the clock tick of the directory's last change: a file created in the same tick
    # leaves the mtime as it was, and must still be found.
    changed = os.stat(directory).st_mtime_ns
    renderer.render()
    Worker(202, monkeypatch).serve(rng, ("/health",), 10)
    os.utime(directory, ns=(changed, changed))
    same_text(renderer.render(), stock_text(directory))
    # A directory that settled long ago: its listing is trusted until the mtime moves.
    settled = changed - 10_000_000_000
    os.utime(directory, ns=(settled, settled))
    renderer.render()
    stock = stock_text(directory)
    with monkeypatch.context() as no_listing:
        no_listing.setattr(os, "scandir", None)  # a listing would fail
        text = renderer.render()
    same_text(text, stock)
    Worker(303, monkeypatch).serve(rng, ("/metrics",), 10)
    assert os.stat(directory).st_mtime_ns != settled
    same_text(renderer.render(), stock_text(directory))
