"""A target is refused before the matrix starts, naming the field: an image the engine does not
have, a container that exits, a port it does not listen on, a health path that never answers 2xx,
an expect_status a smoke request never sees. The fake engine's smoke container is a server on
loopback in this process."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from matrix.config import MatrixFile, load_matrix_file
from matrix.measure import target_smoke
from matrix.measure.target_smoke import TargetRefused, check_target, listening_ports
from stack.engine import ContainerState
from tests.matrix.test_runner import new_engine
from tests.stack.fake_engine import FakeEngine

PATHS = {"/health": 200, "/predict": 200, "/notready": 404}


class _Handler(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        status = PATHS.get(self.path, 404)
        body = b'{"detail": "here"}'
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer  # noqa: N815 (the names http.server calls)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def service() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def socket_port() -> Iterator[int]:
    """A loopback port nothing listens on while the block runs."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def matrix_for(tmp_path: Path, port: int, health: str = "/health", expect: int = 200) -> MatrixFile:
    path = tmp_path / "matrix.yaml"
    path.write_text(
        f"""
cells: {{replicas: [1], cpus: [0.5], memory: [256M]}}
profile: {{kind: search, start_rate: 50}}
target_rps: 20
converge_timeout_seconds: 1
target:
  image: my-api:1
  port: {port}
  health_path: {health}
  env: {{MODEL: m}}
  requests:
    - {{method: POST, path: /predict, body: {{x: 1}}, expect_status: {expect}}}
"""
    )
    return load_matrix_file(path)


def engine_with_image() -> FakeEngine:
    engine = new_engine()
    engine.images.add("my-api:1")
    return engine


def refusal(matrix: MatrixFile, engine: FakeEngine) -> str:
    with pytest.raises(TargetRefused) as error:
        check_target(matrix, engine, "t", lambda _line: None)
    return str(error.value)


def test_a_target_that_answers_as_expected_passes_and_its_container_goes(
    tmp_path: Path, service: int
) -> None:
    engine = engine_with_image()
    said: list[str] = []
    check_target(matrix_for(tmp_path, service), engine, "t", said.append)
    assert engine.started == {"smoke-1": ("my-api:1", {"MODEL": "m"})}
    assert engine.removed == ["t-target-smoke", "smoke-1"]
    assert "answers /health and every request as expected" in said[-1]


def test_an_image_the_engine_does_not_have(tmp_path: Path, service: int) -> None:
    message = refusal(matrix_for(tmp_path, service), new_engine())
    assert message.startswith("target.image: my-api:1 is not an image of this Docker engine")


def test_a_container_that_exits(tmp_path: Path, service: int) -> None:
    engine = engine_with_image()
    engine.smoke_state = ContainerState(False, 3, 0, "")
    engine.smoke_logs = "ModuleNotFoundError: No module named 'sklearn'\n"
    message = refusal(matrix_for(tmp_path, service), engine)
    assert "target.image: a container of my-api:1 exited with code 3" in message
    assert "No module named 'sklearn'" in message
    assert engine.removed[-1] == "smoke-1"


def test_a_port_the_container_does_not_listen_on(
    tmp_path: Path, service: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(target_smoke, "WRONG_PORT_GRACE_S", 0.0)
    engine = engine_with_image()
    # This process stands in for the container: it listens on the service's port.
    engine.smoke_state = ContainerState(True, 0, os.getpid(), "127.0.0.1")
    with socket_port() as closed:
        message = refusal(matrix_for(tmp_path, closed), engine)
    assert f"target.port: the container of my-api:1 does not listen on {closed}" in message
    assert str(service) in message


def test_a_health_path_that_never_answers_2xx(tmp_path: Path, service: int) -> None:
    message = refusal(matrix_for(tmp_path, service, health="/notready"), engine_with_image())
    assert message.startswith("target.health_path: the container of my-api:1 did not answer")
    assert "/notready answered 404" in message


def test_an_expect_status_never_seen(tmp_path: Path, service: int) -> None:
    message = refusal(matrix_for(tmp_path, service, expect=201), engine_with_image())
    assert message.startswith("target.requests.0.expect_status: 201 never seen")
    assert 'POST /predict answered 200: {"detail": "here"}' in message


def test_listening_ports_reads_the_tcp_tables(tmp_path: Path) -> None:
    net = tmp_path / "42" / "net"
    net.mkdir(parents=True)
    header = "  sl  local_address rem_address   st tx_queue rx_queue\n"
    (net / "tcp").write_text(
        header
        + "   0: 00000000:1F40 00000000:0000 0A 00000000:00000000\n"  # 8000, listening
        + "   1: 0100007F:1F40 0100007F:A2C4 01 00000000:00000000\n"  # a connection
    )
    any6 = "00000000000000000000000000000000"
    (net / "tcp6").write_text(header + f"   0: {any6}:0050 {any6}:0000 0A 00000000:00000000\n")
    assert listening_ports(42, tmp_path) == {8000, 80}
    assert listening_ports(43, tmp_path) is None
