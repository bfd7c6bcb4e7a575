"""Admission control in the real Nginx (max_conns per server, shared zone) in front of a real
Gunicorn on loopback: the excess of an overload is refused at once with 503 and Retry-After while
the accepted requests keep a short queue; off, nothing is refused; a failed replica is still
retried on another and is never reported as shed load."""

from __future__ import annotations

import json
import os
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.nginx.burst import burst
from tests.nginx.nginx_runner import RunningNginx, nginx_env, serving_nginx
from tests.support import PROJECT_ROOT, SEED_BODY, free_port, require, start_gunicorn, wait_for_http

pytestmark = pytest.mark.integration

# Far more clients than the limit, so the one replica is overloaded many times over.
LIMIT = 4
CLIENTS = 64
SECONDS = 3.0
# A batch through the SVM costs the replica about a millisecond but its client little more than one
# row, so the replica, not this test's one-thread client, is what saturates. Under 8 KB, so Nginx
# keeps the body in memory and sends it in one write (a body spooled to a file goes out in two,
# and Nagle plus delayed ACKs then add 40 ms to every request).
BATCH = {"instances": [SEED_BODY] * 40}
BATCH_PATH = "/predict/batch?model=svm"


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require((PROJECT_ROOT / "models" / "manifest.json").is_file(), "models/ are not trained")
    port = free_port()
    log_path = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    process = start_gunicorn(port, log_path)
    try:
        try:
            wait_for_http(f"http://127.0.0.1:{port}/ready", timeout=60)
        except TimeoutError as error:
            raise AssertionError(f"{error}\n{log_path.read_text()[-2000:]}") from None
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _nginx(tmp_path: Path, servers: list[str], limit: int) -> Iterator[RunningNginx]:
    # Two workers, so the test shows the limit holds across workers (the shared zone). Ready
    # when its own status port answers: some tests have no live api behind it.
    env = nginx_env(
        tmp_path / f"nginx-{limit}",
        servers,
        NGINX_UPSTREAM_MAX_CONNS=str(limit),
        NGINX_WORKER_PROCESSES="2",
    )
    with serving_nginx(env, lambda nginx: f"{nginx.status_url}/healthz") as nginx:
        yield nginx


@pytest.fixture
def limited(tmp_path: Path, backend: str) -> Iterator[RunningNginx]:
    yield from _nginx(tmp_path, [backend], LIMIT)


@pytest.fixture
def unlimited(tmp_path: Path, backend: str) -> Iterator[RunningNginx]:
    yield from _nginx(tmp_path, [backend], 0)


def _post(url: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(
        url, data=json.dumps(SEED_BODY).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _say(capsys: pytest.CaptureFixture[str], scenario: str, text: str) -> None:
    with capsys.disabled():
        sys.stderr.write(f"\n[{scenario}] {text}\n")


def test_overload_is_refused_at_once_and_accepted_requests_keep_their_latency(
    limited: RunningNginx, unlimited: RunningNginx, capsys: pytest.CaptureFixture[str]
) -> None:
    off = burst(f"{unlimited.url}{BATCH_PATH}", CLIENTS, SECONDS, BATCH)
    on = burst(f"{limited.url}{BATCH_PATH}", CLIENTS, SECONDS, BATCH)
    _say(capsys, f"admission off, {CLIENTS} clients", off.summary())
    _say(capsys, f"admission max_conns={LIMIT}, {CLIENTS} clients", on.summary())

    # Off: the replica queues everything and refuses nothing.
    assert not off.errors
    assert set(off.statuses) == {200}
    # On: served at the replica's pace, the excess refused; no other status, no broken connection.
    assert not on.errors
    assert set(on.statuses) == {200, 503}
    # The replica stays busy: most of what it served unlimited (this shared machine's CPU, also
    # spent on refusals, makes the exact share noisy).
    assert on.statuses[200] >= off.statuses[200] / 3
    refusals = [answer for answer in on.answers if answer.status == 503]
    assert {answer.retry_after for answer in refusals} == {"1"}
    assert "overloaded" in json.loads(refusals[0].body)["detail"]
    # The accepted requests wait behind at most LIMIT others, not behind every client: their
    # typical latency is well below the unlimited queue's. Refusals do not queue at all.
    assert on.percentile(200, 0.5) < off.percentile(200, 0.5) / 2
    assert on.percentile(503, 0.95) < off.percentile(200, 0.5)


def test_failed_replica_is_retried_on_another_not_refused(tmp_path: Path, backend: str) -> None:
    dead = f"127.0.0.1:{free_port()}"
    for nginx in _nginx(tmp_path, [dead, backend], LIMIT):
        answers = [_post(f"{nginx.url}/predict") for _ in range(6)]
        assert [status for status, _, _ in answers] == [200] * 6


def test_total_outage_is_a_bad_gateway_then_unavailable_with_retry_after(
    tmp_path: Path,
) -> None:
    # Every replica is gone. The request that finds them failing gets 502 (a broken replica is
    # not shed load); while they are marked failed (fail_timeout) no server is left to try, and
    # Nginx answers at once: 503, retry later. (A group of one server is never marked failed, so
    # there every request is tried and gets 502.)
    dead = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    for nginx in _nginx(tmp_path, dead, LIMIT):
        first_status, first_headers, _ = _post(f"{nginx.url}/predict")
        then_status, then_headers, _ = _post(f"{nginx.url}/predict")
        assert first_status == 502 and "Retry-After" not in first_headers
        assert then_status == 503 and then_headers["Retry-After"] == "1"
