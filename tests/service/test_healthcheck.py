"""The api container's health check (service/healthcheck.sh) against a real Gunicorn: healthy
when /ready answers 200, unhealthy when nothing listens, and cheap (no Python start-up)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import PROJECT_ROOT, free_port, require, start_gunicorn, wait_for_http

PROBE = PROJECT_ROOT / "service" / "healthcheck.sh"


def probe(port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PROBE)], env={**os.environ, "PENGUIN_BIND": f"0.0.0.0:{port}"},
                          capture_output=True, text=True, timeout=10, check=False)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    require((PROJECT_ROOT / "models" / "manifest.json").is_file(), "models/ are not trained")
    port = free_port()
    process = start_gunicorn(port, tmp_path_factory.mktemp("gunicorn") / "gunicorn.log")
    try:
        wait_for_http(f"http://127.0.0.1:{port}/ready", timeout=60)
        yield port
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


@pytest.mark.integration
def test_ready_service_is_healthy(server: int) -> None:
    result = probe(server)
    assert result.returncode == 0, result.stderr


@pytest.mark.integration
def test_nothing_listening_is_unhealthy() -> None:
    assert probe(free_port()).returncode != 0


def test_the_probe_starts_no_python() -> None:
    text = PROBE.read_text()
    assert text.startswith("#!/usr/bin/env bash") and "python" not in text.split("\n", 5)[-1]
    assert os.access(PROBE, os.X_OK)
    assert "HEALTHCHECK" in (PROJECT_ROOT / "service" / "Dockerfile").read_text()
    assert str(Path("/app/service/healthcheck.sh")) in (
        PROJECT_ROOT / "service" / "Dockerfile").read_text()
