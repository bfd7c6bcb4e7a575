"""Running the known-capacity test server (known_capacity_app.py) and real Locust processes
against it: shared by the open-model and the workshop tests of a known answer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support import PROJECT_ROOT, free_port, wait_for_http

LOCUST = str(Path(sys.executable).with_name("locust"))
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
LOCUSTFILE = PROJECT_ROOT / "locust" / "locustfile.py"


def percentile(values: list[float], percentile: float) -> float:
    """Nearest-rank percentile, as the server's own figure to compare with."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(percentile / 100.0 * len(ordered) + 0.5)) - 1)]


@contextmanager
def known_capacity_server(
    tmp_path: Path, service_ms: float, max_waiting: int = 0
) -> Iterator[tuple[str, Path]]:
    """One Gunicorn worker serving the test app; yields its URL and its own timing log."""
    port = free_port()
    timings = tmp_path / "server-timings.log"
    env = {
        **os.environ,
        "KNOWN_CAPACITY_SERVICE_MS": f"{service_ms:g}",
        "KNOWN_CAPACITY_LOG": str(timings),
        "KNOWN_CAPACITY_MAX_WAITING": str(max_waiting),
    }
    with (tmp_path / "server.log").open("wb") as server_log:
        server = subprocess.Popen(
            [
                GUNICORN,
                "-k",
                "uvicorn_worker.UvicornWorker",
                "-w",
                "1",
                "-b",
                f"127.0.0.1:{port}",
                "--backlog",
                "2048",
                "tests.locust.known_capacity_app:app",
            ],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=server_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{url}/health", timeout=30)
        yield url, timings
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def run_locust(
    host: str,
    tmp_path: Path,
    options: list[str],
    timeout: float,
    locustfiles: str = str(LOCUSTFILE),
) -> subprocess.CompletedProcess[str]:
    """A headless master with 2 worker processes on a master port of its own; `locustfiles` is
    Locust's -f (ours, or ours and a user's, comma-separated)."""
    master_port = str(free_port())
    return subprocess.run(
        [
            LOCUST,
            "-f",
            locustfiles,
            "--headless",
            "--host",
            host,
            "--processes",
            "2",
            "--master-bind-host",
            "127.0.0.1",
            "--master-bind-port",
            master_port,
            "--master-host",
            "127.0.0.1",
            "--master-port",
            master_port,
            "--only-summary",
            *options,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
