"""A real Prometheus scraping two real Gunicorn replicas (two workers each) and a real Nginx
exporter on loopback: the counts it answers are the requests sent, exactly, through a worker
killed and a replica restarted, and its p95 is the histogram's within the bucket error."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from matrix.measure.prometheus import histogram_quantile
from service.metrics import REQUEST_QUANTILE_ERROR
from tests.nginx.nginx_runner import nginx_env, start_nginx
from tests.prometheus.prometheus_runner import (
    RunningPrometheus,
    start_nginx_exporter,
    start_prometheus,
    wait_for_value,
)
from tests.support import PROJECT_ROOT, SEED_BODY, free_port, require, start_gunicorn, wait_for_http

pytestmark = pytest.mark.integration

WORKERS = 2


class Replica:
    def __init__(self, work_dir: Path, port: int) -> None:
        self.work_dir, self.port = work_dir, port
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def instance(self) -> str:
        return f"127.0.0.1:{self.port}"

    def worker_pids(self) -> set[int]:
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return {int(pid) for pid in children.read_text().split()}

    def start(self) -> None:
        self.starts += 1
        log = self.work_dir / f"gunicorn-{self.port}-{self.starts}.log"
        self.process = start_gunicorn(self.port, log, workers=WORKERS)
        wait_for_http(f"http://{self.instance}/ready", timeout=60)
        self.wait_for_workers()

    def wait_for_workers(self, exclude: set[int] | None = None) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pids = self.worker_pids() - (exclude or set())
            if len(pids) >= WORKERS and len(self.worker_pids()) == WORKERS:
                return
            time.sleep(0.1)
        raise AssertionError(f"replica {self.instance} has workers {self.worker_pids()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[list[Replica]]:
    require(
        (PROJECT_ROOT / "models" / "manifest.json").is_file(),
        "models/ is not trained (scripts/test.sh runs ensure_models)",
    )
    started = [Replica(tmp_path, free_port()) for _ in range(2)]
    try:
        for replica in started:
            replica.start()
        yield started
    finally:
        for replica in started:
            replica.stop()


def _send(url: str, count: int) -> list[float]:
    """`count` predictions through Nginx; each one's latency in seconds, all must succeed."""
    latencies = []
    with httpx.Client(timeout=10) as client:
        for _ in range(count):
            start = time.perf_counter()
            response = client.post(f"{url}/predict", json=SEED_BODY)
            latencies.append(time.perf_counter() - start)
            assert response.status_code == 200, response.text
    return latencies


def _scraped_buckets(replicas: list[Replica], route: str) -> list[tuple[float, float]]:
    """The /predict latency buckets summed over both replicas, read from their /metrics."""
    sums: dict[float, float] = {}
    for replica in replicas:
        text = httpx.get(f"http://{replica.instance}/metrics", timeout=10).text
        for line in text.splitlines():
            if line.startswith("penguin_http_request_duration_seconds_bucket{") and (
                f'route="{route}"' in line
            ):
                le = line.split('le="', 1)[1].split('"', 1)[0]
                bound = math.inf if le == "+Inf" else float(le)
                sums[bound] = sums.get(bound, 0.0) + float(line.rsplit(" ", 1)[1])
    return sorted(sums.items())


def _p95(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def test_counts_and_p95_survive_worker_and_replica_restarts(
    replicas: list[Replica], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nginx = start_nginx(nginx_env(tmp_path / "nginx", [r.instance for r in replicas]))
    exporter: subprocess.Popen[bytes] | None = None
    prometheus: RunningPrometheus | None = None
    try:
        wait_for_http(f"{nginx.url}/ready", timeout=30)
        exporter, exporter_port = start_nginx_exporter(tmp_path, nginx.status_url)
        prometheus = start_prometheus(
            tmp_path,
            {"api": [r.instance for r in replicas], "nginx": [f"127.0.0.1:{exporter_port}"]},
        )
        assert wait_for_value(prometheus, 'sum(up{job="api"})', 2) == 2
        total = 'sum(penguin_http_requests_total{route="/predict"})'

        # 1. Both replicas, both workers each: the sum over all of them is what was sent.
        latencies = _send(nginx.url, 100)
        assert wait_for_value(prometheus, total, 100) == 100
        served = {
            labels["instance"]: value
            for labels, value in prometheus.query(
                'sum by (instance) (penguin_http_requests_total{route="/predict"})'
            )
        }
        assert set(served) == {r.instance for r in replicas} and sum(served.values()) == 100

        # The p95 Prometheus answers is the buckets' own, and no more than the bucket error
        # above the client's (the server's time is part of the client's).
        expr = (
            "histogram_quantile(0.95, sum by (le) "
            '(penguin_http_request_duration_seconds_bucket{route="/predict"}))'
        )
        server_p95 = prometheus.value(expr)
        reference = histogram_quantile(0.95, _scraped_buckets(replicas, "/predict"))
        client_p95 = _p95(latencies)
        assert server_p95 is not None and reference is not None
        assert server_p95 == pytest.approx(reference, rel=1e-6)
        assert server_p95 <= client_p95 * (1 + REQUEST_QUANTILE_ERROR)

        # 2. A worker dies (SIGKILL) and Gunicorn replaces it: its requests stay counted once.
        victim = replicas[0]
        old_worker = min(victim.worker_pids())
        os.kill(old_worker, signal.SIGKILL)
        victim.wait_for_workers(exclude={old_worker})
        _send(nginx.url, 60)
        assert wait_for_value(prometheus, total, 160) == 160

        # 3. A whole replica stops and starts again: it counts from zero (no stale files), and
        # its last value before the stop plus the live sum is every request sent.
        restarted = replicas[1]
        one = (
            f'sum(penguin_http_requests_total{{route="/predict",instance="{restarted.instance}"}})'
        )
        before = prometheus.value(one)
        assert before is not None and before > 0
        restarted.stop()
        assert wait_for_value(prometheus, f'up{{instance="{restarted.instance}"}}', 0) == 0
        restarted.start()
        assert wait_for_value(prometheus, f'up{{instance="{restarted.instance}"}}', 1) == 1
        _send(nginx.url, 80)
        assert wait_for_value(prometheus, total, 240 - before) == 240 - before

        # Nginx's exporter was scraped all along and saw at least every prediction (once its
        # next scrape lands: it is scraped at its own offset, apart from the replicas).
        assert prometheus.value("sum(nginx_up)") == 1
        nginx_requests = wait_for_value(
            prometheus, "sum(nginx_http_requests_total)", 240, at_least=True
        )
        assert nginx_requests is not None and nginx_requests >= 240
        with capsys.disabled():
            print(
                f"\n[prometheus: 2 replicas x {WORKERS} workers] sent 240, counted"
                f" {prometheus.value(total):.0f} live + {before:.0f} before the restart;"
                f" p95 server {server_p95 * 1000:.2f} ms (buckets {reference * 1000:.2f} ms),"
                f" client {client_p95 * 1000:.2f} ms; Nginx requests {nginx_requests:.0f}"
            )
    finally:
        if prometheus is not None:
            prometheus.stop()
        if exporter is not None:
            exporter.terminate()
            exporter.wait(timeout=10)
        nginx.stop()
