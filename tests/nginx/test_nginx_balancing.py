"""Real Nginx (nginx/entrypoint.sh) in front of three real Gunicorn servers on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.nginx.load import LoadGenerator, check_resends, nginx_reloads, report
from tests.nginx.nginx_runner import RunningNginx, nginx_env, serving_nginx, start_nginx
from tests.support import PROJECT_ROOT, free_port, require, start_gunicorn, wait_for_http

pytestmark = pytest.mark.integration


@dataclass
class Backend:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def kill(self) -> None:
        # SIGKILL the whole process group: master and workers die at once, like a crashed replica.
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def _start_backend(tmp_path: Path) -> Backend:
    port = free_port()
    log_path = tmp_path / f"gunicorn-{port}.log"
    process = start_gunicorn(port, log_path)
    return Backend(process, port, log_path)


@pytest.fixture
def backends(tmp_path: Path) -> Iterator[list[Backend]]:
    require(
        (PROJECT_ROOT / "models" / "manifest.json").is_file(),
        "models/ is not trained (scripts/test.sh runs ensure_models)",
    )
    started = [_start_backend(tmp_path) for _ in range(3)]
    try:
        for backend in started:
            try:
                wait_for_http(f"http://{backend.address}/ready", timeout=60)
            except TimeoutError as error:
                raise AssertionError(f"{error}\n{backend.log_path.read_text()[-2000:]}") from None
        yield started
    finally:
        for backend in started:
            backend.kill()


@pytest.fixture
def balancer(tmp_path: Path, backends: list[Backend]) -> Iterator[RunningNginx]:
    env = nginx_env(tmp_path / "nginx", [backend.address for backend in backends])
    with serving_nginx(env, lambda nginx: f"{nginx.url}/ready") as nginx:
        yield nginx


def _access_log(nginx: RunningNginx) -> list[dict[str, object]]:
    path = Path(nginx.env["NGINX_ACCESS_LOG"])
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _served_by(entries: list[dict[str, object]]) -> Counter[str]:
    # upstream_addr lists every server tried ("a, b" after a retry); the last one answered.
    return Counter(str(entry["upstream_addr"]).split(",")[-1].strip() for entry in entries)


def test_traffic_reaches_every_server(
    balancer: RunningNginx, backends: list[Backend], capsys: pytest.CaptureFixture[str]
) -> None:
    load = LoadGenerator(f"{balancer.url}/predict", threads=6, max_seconds=20)
    with load:
        deadline = time.monotonic() + 20
        while load.result.sent < 600 and time.monotonic() < deadline:
            time.sleep(0.1)
    result = load.result
    report(capsys, "nginx: spread over 3 servers", result)
    assert result.sent >= 100
    assert result.failed == 0, result.failures
    check_resends(result, nginx_reloads(balancer.output()))

    entries = [e for e in _access_log(balancer) if e["uri"] == "/predict"]
    counts = _served_by(entries)
    with capsys.disabled():
        sys.stderr.write(f"[nginx: spread over 3 servers] per server: {dict(counts)}\n")
    assert set(counts) == {backend.address for backend in backends}
    # Least connections over equal servers: none is starved.
    assert min(counts.values()) >= len(entries) // 10
    # The JSON access log carries the upstream timings the analysis reads.
    assert {"upstream_response_time", "request_time", "status"} <= set(entries[0])


def test_killing_a_server_under_load_fails_no_request(
    balancer: RunningNginx, backends: list[Backend], capsys: pytest.CaptureFixture[str]
) -> None:
    victim = backends[0]
    load = LoadGenerator(f"{balancer.url}/predict", threads=6, max_seconds=30)
    with load:
        time.sleep(2)
        sent_before_kill = load.result.sent
        victim.kill()
        time.sleep(4)
    result = load.result
    report(capsys, "nginx: SIGKILL one of 3 servers under load", result)
    assert sent_before_kill > 0
    assert result.sent > sent_before_kill
    assert result.failed == 0, result.failures
    # Nginx retries the dead server itself; the clients' connections to Nginx stay up.
    check_resends(result, nginx_reloads(balancer.output()))

    # After the kill the survivors carried the traffic.
    entries = [e for e in _access_log(balancer) if e["uri"] == "/predict"]
    survivors = _served_by(entries[-50:])
    assert victim.address not in survivors


def test_oversized_body_gets_413(balancer: RunningNginx) -> None:
    body = b"[" + b" " * (10 * 1024 * 1024) + b"]"
    request = urllib.request.Request(
        f"{balancer.url}/predict/batch",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    assert caught.value.code == 413


def test_stub_status_on_the_internal_port(balancer: RunningNginx) -> None:
    with urllib.request.urlopen(f"{balancer.status_url}/nginx_status", timeout=5) as response:
        text = response.read().decode()
    assert "Active connections:" in text
    # The traffic port does not expose it.
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(f"{balancer.url}/nginx_status", timeout=5)


def test_changed_server_set_is_picked_up_under_load_without_failures(
    tmp_path: Path, backends: list[Backend], capsys: pytest.CaptureFixture[str]
) -> None:
    # What `docker service scale` does to the DNS answer, with a file instead of DNS: the loop
    # re-reads it every second and reloads Nginx gracefully; no request may fail meanwhile.
    servers_file = tmp_path / "servers.txt"
    servers_file.write_text(f"{backends[0].address}\n")
    env = nginx_env(tmp_path / "file-nginx", [], NGINX_UPSTREAM_SERVERS_FILE=str(servers_file))
    nginx = start_nginx(env)
    try:
        wait_for_http(f"{nginx.url}/ready", timeout=30)
        load = LoadGenerator(f"{nginx.url}/predict", threads=4, max_seconds=30)
        with load:
            time.sleep(2)
            servers_file.write_text(f"{backends[1].address}\n{backends[2].address}\n")
            marker = time.monotonic()
            while "upstreams changed" not in nginx.output() and time.monotonic() < marker + 10:
                time.sleep(0.2)
            time.sleep(3)
        result = load.result
        report(capsys, "nginx: server set 1 -> 2 under load", result)
        reloads = nginx_reloads(nginx.output())
        assert reloads >= 1, nginx.output()[-2000:]
        assert result.failed == 0, result.failures
        check_resends(result, reloads)

        entries = [e for e in _access_log(nginx) if e["uri"] == "/predict"]
        assert _served_by(entries[:20]) == Counter({backends[0].address: 20})
        assert set(_served_by(entries[-40:])) == {backends[1].address, backends[2].address}
    finally:
        nginx.stop()
    # SIGTERM is a graceful quit, not a crash.
    assert nginx.process.returncode == 0, nginx.output()[-2000:]
