"""Runs Debian's real Prometheus binary (and its Nginx exporter) on loopback for the tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.support import free_port, require_command, wait_for_http

CONSOLE_DIR = Path(__file__).resolve().parents[2] / "prometheus" / "consoles"


@dataclass
class RunningPrometheus:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def query(self, expr: str, at: float | None = None) -> list[tuple[dict[str, str], float]]:
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            answer = json.load(response)
        assert answer["status"] == "success", answer
        return [(r["metric"], float(r["value"][1])) for r in answer["data"]["result"]]

    def value(self, expr: str, at: float | None = None) -> float | None:
        samples = self.query(expr, at)
        return samples[0][1] if samples else None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_prometheus(
    work_dir: Path, jobs: dict[str, list[str]], interval: str = "1s"
) -> RunningPrometheus:
    """Prometheus scraping static loopback targets, one job per key of `jobs`."""
    binary = require_command("prometheus")
    config = {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "evaluation_interval": interval,
        },
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": targets}]}
            for job, targets in jobs.items()
        ],
    }
    config_path = work_dir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    log_path = work_dir / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={work_dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--web.console.templates={CONSOLE_DIR}",
                f"--web.console.libraries={CONSOLE_DIR}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = RunningPrometheus(process, port, log_path)
    try:
        wait_for_http(f"{running.url}/-/ready", timeout=60)
    except Exception:
        running.stop()
        raise AssertionError(f"Prometheus did not start:\n{log_path.read_text()[-3000:]}") from None
    return running


def start_nginx_exporter(work_dir: Path, status_url: str) -> tuple[subprocess.Popen[bytes], int]:
    binary = require_command("prometheus-nginx-exporter")
    port = free_port()
    log = (work_dir / "nginx-exporter.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"-nginx.scrape-uri={status_url}/nginx_status",
            f"-web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ},
    )
    wait_for_http(f"http://127.0.0.1:{port}/metrics", timeout=30)
    return process, port


def wait_for_value(
    prometheus: RunningPrometheus,
    expr: str,
    want: float,
    timeout: float = 15.0,
    at_least: bool = False,
) -> float | None:
    """Polls until `expr` equals `want` (or reaches it, with `at_least`); returns the last value.

    Every query must poll: each target is scraped at its own offset within the interval, so the
    value at "now" can still be the one from before the last requests."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = prometheus.value(expr)
        if value is not None and (value >= want - 1e-9 if at_least else abs(value - want) < 1e-9):
            return value
        time.sleep(0.5)
    return value
