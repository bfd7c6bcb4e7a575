"""The api container's health check (service/healthcheck.c, built with the host's compiler)
against a real Gunicorn: healthy when /ready answers 200, unhealthy when nothing listens, /ready
says no or the connection closes without an answer, healthy-but-busy when an overloaded server
does not answer in time; and the image runs it, not a shell."""

from __future__ import annotations

import os
import shutil
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

SOURCE = PROJECT_ROOT / "service" / "healthcheck.c"
DOCKERFILE = PROJECT_ROOT / "service" / "Dockerfile"


@pytest.fixture(scope="module")
def probe_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    require(compiler is not None, "no C compiler (cc or gcc) to build service/healthcheck.c")
    assert compiler is not None
    binary = tmp_path_factory.mktemp("probe") / "healthcheck"
    result = subprocess.run(
        [compiler, "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(binary), str(SOURCE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return binary


class Probe:
    """Runs the built probe against 127.0.0.1:`port`, as the image's HEALTHCHECK does."""

    def __init__(self, binary: Path) -> None:
        self.binary = binary

    def __call__(self, port: int, wait: float = 3) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PENGUIN_BIND": f"0.0.0.0:{port}", "PENGUIN_HEALTH_WAIT": str(wait)}
        return subprocess.run(
            [str(self.binary)], env=env, capture_output=True, text=True, timeout=10, check=False
        )


@pytest.fixture
def probe(probe_binary: Path) -> Probe:
    return Probe(probe_binary)


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
                # The whole request first, as a real server does: closing with the request
                # unread would reset the connection instead of delivering the answer.
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
def test_ready_service_is_healthy(server: int, probe: Probe) -> None:
    result = probe(server)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_nothing_listening_is_unhealthy(probe: Probe) -> None:
    result = probe(free_port())
    assert result.returncode == 1
    assert "refused" in result.stdout


@pytest.mark.parametrize(
    ("answer", "named"),
    [
        (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", "503"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "2000"),
        (b"SSH-2.0-OpenSSH_9.2\r\n", "SSH-2.0"),
    ],
    ids=["not ready", "not quite 200", "not HTTP"],
)
def test_any_answer_but_200_is_unhealthy_and_named(probe: Probe, answer: bytes, named: str) -> None:
    listener, done = _fake_server(answer)
    try:
        result = probe(listener.getsockname()[1])
    finally:
        done.set()
    assert result.returncode == 1
    assert named in result.stdout


def test_a_server_that_closes_without_answering_is_unhealthy_and_says_why(probe: Probe) -> None:
    """A socket closed under the probe either breaks its write (EPIPE: no SIGPIPE may kill it
    silently) or its read (reset, or end of file); each must leave a line in the health log.
    Ten tries because which of them happens is a race."""
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


def test_an_overloaded_server_that_answers_late_is_healthy_and_says_busy(probe: Probe) -> None:
    listener, done = _fake_server(None)
    try:
        result = probe(listener.getsockname()[1], wait=0.5)
    finally:
        done.set()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "busy" in result.stdout


def test_the_image_builds_the_probe_and_runs_it_without_a_shell() -> None:
    """The HEALTHCHECK execs the compiled probe directly (exec form, no shell), and the final
    stage of the image has no compiler: the probe comes from the build stage."""
    text = DOCKERFILE.read_text()
    healthcheck = next(line for line in text.splitlines() if line.startswith("HEALTHCHECK"))
    assert 'CMD ["/usr/local/bin/penguin-healthcheck"]' in healthcheck
    assert "service/healthcheck.c" in text
    final_stage = text.rsplit("\nFROM ", 1)[1]
    assert "COPY --from=build" in final_stage
    assert "gcc" not in final_stage and "apt-get" not in final_stage
