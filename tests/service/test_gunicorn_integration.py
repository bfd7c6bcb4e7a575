"""The real server: Gunicorn + Uvicorn workers on loopback, hit with real and hostile HTTP."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import SEED_BODY, free_port, start_gunicorn, wait_for_http

pytestmark = pytest.mark.integration

MAX_BODY = 65536


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def worker_pids(self) -> set[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return {int(pid) for pid in children.read_text().split()}

    def log_lines(self) -> list[str]:
        return [line for line in self.log_path.read_text().splitlines() if line.strip()]


def _start(tmp_path: Path, workers: int, extra_env: dict[str, str] | None = None) -> Server:
    port = free_port()
    log_path = tmp_path / f"gunicorn-{port}.log"
    env = {
        "PENGUIN_MAX_BODY_BYTES": str(MAX_BODY),
        "PENGUIN_GRACEFUL_TIMEOUT": "20",
        **(extra_env or {}),
    }
    process = start_gunicorn(port, log_path, workers=workers, env=env)
    server = Server(process, port, log_path)
    try:
        wait_for_http(f"{server.url}/ready", timeout=60)
        # /ready answers as soon as one worker is up; wait for all of them.
        deadline = time.monotonic() + 30
        while len(server.worker_pids()) < workers and time.monotonic() < deadline:
            time.sleep(0.1)
    except Exception:
        process.kill()
        process.wait()
        raise AssertionError(f"server did not start:\n{log_path.read_text()[-3000:]}") from None
    return server


def _stop(server: Server) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@pytest.fixture(scope="module")
def server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = _start(tmp_path_factory.mktemp("gunicorn"), workers=1)
    yield running
    _stop(running)


def _request(
    url: str, data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _raw(port: int, payload: bytes, read_timeout: float = 10.0) -> bytes:
    """Send raw bytes, half-close, and return whatever the server answers (maybe nothing)."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as sock:
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may close early (e.g. 413 before the whole body was sent)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (ConnectionResetError, TimeoutError):
            pass
    return b"".join(chunks)


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def _post(port: int, body: bytes, headers: str = "Content-Type: application/json\r\n") -> bytes:
    head = f"POST /predict HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def test_predict_over_real_http(server: Server) -> None:
    for model in ("lr", "rf", "svm"):
        status, body = _request(
            f"{server.url}/predict?model={model}",
            json.dumps(SEED_BODY).encode(),
            {"Content-Type": "application/json"},
        )
        assert status == 200
        assert json.loads(body)["model"] == model
    status, body = _request(f"{server.url}/models")
    assert status == 200 and len(json.loads(body)["models"]) == 3


HOSTILE = {
    "non_utf8": _post(0, b'{"island": "\xff\xfe\xfd"}'),
    "invalid_json": _post(0, b"{{{"),
    "deeply_nested": _post(0, b"[" * 20_000 + b"]" * 20_000),
    "huge_number": _post(0, b'{"culmen_length_mm": ' + b"9" * 20_000 + b"}"),
    "string_numbers": _post(0, json.dumps({**SEED_BODY, "body_mass_g": "4000"}).encode()),
    "wrong_content_type": _post(0, b"{}", "Content-Type: text/html\r\n"),
    "empty_body": _post(0, b""),
    "bad_content_length": b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n{}",
    "declared_huge_body": (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n" + b"{" * 1000
    ),
    "not_http": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",
    "header_without_colon": b"GET /health HTTP/1.1\r\nHost x\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_requests_get_4xx_and_the_worker_survives(server: Server, name: str) -> None:
    workers_before = server.worker_pids()
    answer = _raw(server.port, HOSTILE[name])
    status = _status(answer)
    # Either a 4xx, or (for bytes that are not HTTP at all) the connection is closed; never 5xx.
    assert status == 0 or 400 <= status < 500, answer[:300]
    if name not in {"not_http", "header_without_colon", "bad_content_length"}:
        assert 400 <= status < 500, answer[:300]
        body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
        assert body["error"] and body["detail"], body
    assert _request(f"{server.url}/health")[0] == 200
    assert server.worker_pids() == workers_before


def test_chunked_body_over_the_limit_is_refused(server: Server) -> None:
    workers_before = server.worker_pids()
    chunk = b" " * 8192
    body = (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * (MAX_BODY // len(chunk) + 4) + b"0\r\n\r\n"
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    answer = _raw(server.port, head + b"Content-Type: application/json\r\n\r\n" + body)
    assert _status(answer) == 413, answer[:300]
    assert server.worker_pids() == workers_before


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/predict", b" " * 10_000_000),
        ("/predict/batch", json.dumps({"instances": [SEED_BODY] * 100_001}).encode()),
    ],
    ids=["10MB-body", "batch-of-100001-rows"],
)
def test_oversized_body_from_a_write_then_read_client_gets_413(
    server: Server, path: str, body: bytes
) -> None:
    # urllib writes the whole body before it reads anything, like requests does: if the server
    # answered and closed early, the client would see "connection reset by peer" instead.
    status, answer = _request(f"{server.url}{path}", body, {"Content-Type": "application/json"})
    assert status == 413, answer[:300]
    assert json.loads(answer)["error"] == "body_too_large"
    assert _request(f"{server.url}/health")[0] == 200


def test_no_5xx_was_ever_counted(server: Server) -> None:
    _request(f"{server.url}/predict", b"{", {"Content-Type": "application/json"})
    status, metrics = _request(f"{server.url}/metrics")
    assert status == 200
    lines = [line for line in metrics.decode().splitlines() if "requests_total{" in line]
    assert any('status="400"' in line for line in lines)
    assert not any('status="5' in line for line in lines), lines


def test_logs_are_json_lines_without_access_log(server: Server) -> None:
    lines = server.log_lines()
    assert lines
    events = [json.loads(line) for line in lines]  # raises on any non-JSON line
    assert {"ts", "level", "logger", "message"} <= set(events[0])
    assert any(event["message"] == "models loaded" for event in events)
    # The access log is off by default: no line per request.
    assert not any(event["logger"].endswith("access") for event in events)


def _access_pids(server: Server, marker: str, want: int) -> list[int]:
    """The worker pid of each access-log line whose request has `marker`, once `want` of them
    are written (the log is flushed asynchronously), or what there is after 10 s."""
    deadline = time.monotonic() + 10
    while True:
        events = [json.loads(line) for line in server.log_lines()]
        pids = [
            int(e["pid"])
            for e in events
            if e["logger"] == "uvicorn.access" and marker in e["message"]
        ]
        if len(pids) >= want or time.monotonic() > deadline:
            return pids
        time.sleep(0.1)


def test_metrics_are_summed_over_workers(models_dir: Path, tmp_path: Path) -> None:
    # The access log names the worker that served each request.
    server = _start(tmp_path, workers=2, extra_env={"PENGUIN_ACCESS_LOG": "true"})
    try:
        workers = server.worker_pids()
        assert len(workers) == 2
        # A fresh connection each time, so the kernel spreads them over both workers: in
        # batches until both served some (a sum over one worker would prove nothing).
        requests, served_by = 0, []
        while requests < 400 and set(served_by) != workers:
            for _ in range(20):
                assert _request(f"{server.url}/health?probe=sum")[0] == 200
            requests += 20
            served_by = _access_pids(server, "/health?probe=sum", requests)
        assert len(served_by) == requests
        assert set(served_by) == workers, f"{requests} requests, all served by {set(served_by)}"

        def health_total() -> float:
            text = _request(f"{server.url}/metrics")[1].decode()
            return sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("penguin_http_requests_total{") and 'route="/health"' in line
            )

        # A worker writes its updates to the shared files at its once-a-second tick (and at
        # once when it is the one scraped): wait until both have, bounded.
        deadline = time.monotonic() + 10
        while health_total() != requests and time.monotonic() < deadline:
            time.sleep(0.2)
        samples = [health_total() for _ in range(6)]
        # Each scrape is served by one worker; every one must report the total of all workers.
        assert samples == [float(requests)] * len(samples)
    finally:
        _stop(server)


def test_sigterm_lets_in_flight_requests_finish(models_dir: Path, tmp_path: Path) -> None:
    server = _start(tmp_path, workers=1)
    body = json.dumps({"instances": [SEED_BODY] * 50}).encode()
    head = (
        "POST /predict/batch?model=svm HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            # Half the request is in: the request is in flight when the shutdown starts.
            sock.sendall(head + body[:100])
            time.sleep(0.5)
            server.process.send_signal(signal.SIGTERM)
            time.sleep(1.0)
            assert server.process.poll() is None, "server quit with a request in flight"
            sock.sendall(body[100:])
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert _status(answer) == 200, answer[:300]
        assert len(json.loads(answer.split(b"\r\n\r\n", 1)[1])["predictions"]) == 50
        assert server.process.wait(timeout=30) == 0
        # Graceful exit also removed the metrics directory it created.
        metrics_dirs = [
            json.loads(line).get("metrics_dir")
            for line in server.log_lines()
            if "metrics_dir" in line
        ]
        assert metrics_dirs and not Path(metrics_dirs[0]).exists()
    finally:
        _stop(server)


def test_access_log_when_enabled_is_json_too(models_dir: Path, tmp_path: Path) -> None:
    server = _start(tmp_path, workers=1, extra_env={"PENGUIN_ACCESS_LOG": "true"})
    try:
        assert _request(f"{server.url}/health?probe=access-log")[0] == 200
        deadline = time.monotonic() + 10
        access: list[dict] = []
        while not access and time.monotonic() < deadline:
            events = [json.loads(line) for line in server.log_lines()]
            access = [e for e in events if e["logger"] == "uvicorn.access"]
            time.sleep(0.1)
        assert access, "no access log line"
        assert "/health?probe=access-log" in access[-1]["message"]
    finally:
        _stop(server)
