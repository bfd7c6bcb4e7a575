"""The api container's health check (service/healthcheck.sh) against a real Gunicorn: healthy
when /ready answers 200, unhealthy when nothing listens or /ready says no, healthy-but-busy when
an overloaded server does not answer in time, and cheap (no Python start-up)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import (
    PROJECT_ROOT,
    free_port,
    read_http_request,
    require,
    start_gunicorn,
    wait_for_http,
)

PROBE = PROJECT_ROOT / "service" / "healthcheck.sh"


def probe(port: int, wait: float = 3) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PENGUIN_BIND": f"0.0.0.0:{port}", "PENGUIN_HEALTH_WAIT": str(wait)}
    return subprocess.run(
        [str(PROBE)], env=env, capture_output=True, text=True, timeout=10, check=False
    )


def _fake_server(answer: bytes | None) -> tuple[socket.socket, threading.Event]:
    """Listens on loopback; answers each connection with `answer`, or holds it silently (None):
    what an overloaded worker looks like from the probe, its request queued behind others."""
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        listener.settimeout(0.2)
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            if answer is None:
                held.append(conn)
            else:
                # The whole request first, as a real server does: Bash writes the probe's
                # request a line at a time, and closing after the first line would make the
                # probe's next write hit a closed socket (a silent SIGPIPE, not the answer).
                read_http_request(conn)
                conn.sendall(answer)
                conn.close()
        for conn in held:
            conn.close()
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener, done


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


def test_a_server_that_is_not_ready_is_unhealthy() -> None:
    listener, done = _fake_server(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
    try:
        result = probe(listener.getsockname()[1])
    finally:
        done.set()
    assert result.returncode == 1
    assert "503" in result.stdout


def test_a_server_that_closes_without_answering_is_unhealthy_and_says_why() -> None:
    """A socket closed under the probe either breaks its write (SIGPIPE, which used to kill it
    silently) or its read (reset); both must leave a line in the health log. Ten tries because
    which of the two happens is a race."""
    for _ in range(10):
        listener = socket.create_server(("127.0.0.1", 0))
        closer = threading.Thread(target=lambda s=listener: s.accept()[0].close())
        closer.start()
        try:
            result = probe(listener.getsockname()[1])
        finally:
            closer.join(timeout=5)
            listener.close()
        assert result.returncode == 1
        assert result.stdout.strip(), "unhealthy without a reason in the health log"


def test_an_overloaded_server_that_answers_late_is_healthy_and_says_busy() -> None:
    listener, done = _fake_server(None)
    try:
        result = probe(listener.getsockname()[1], wait=0.5)
    finally:
        done.set()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "busy" in result.stdout


def test_the_probe_starts_no_python() -> None:
    text = PROBE.read_text()
    assert text.startswith("#!/usr/bin/env bash") and "python" not in text.split("\n", 5)[-1]
    assert os.access(PROBE, os.X_OK)
    assert "HEALTHCHECK" in (PROJECT_ROOT / "service" / "Dockerfile").read_text()
    assert (
        str(Path("/app/service/healthcheck.sh"))
        in (PROJECT_ROOT / "service" / "Dockerfile").read_text()
    )
