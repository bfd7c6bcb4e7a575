"""The whole open-model search, proven against a known answer: real Locust processes (a master
and two workers) search the limit of a test server that can serve 20 requests/s by construction
(one worker whose only event loop each request holds for 50 ms; tests/locust/known_capacity_app.py).

- The served knee must land within 10 % of that capacity.
- The p95 the load test reports for the step at half the capacity must match, within 10 %, the
  p95 of the same requests as the server timed them itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.locust.helpers import load_helper
from tests.support import PROJECT_ROOT, free_port, wait_for_http

open_model = load_helper("loadtest_open")
LOCUST = str(Path(sys.executable).with_name("locust"))
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
LOCUSTFILE = PROJECT_ROOT / "locust" / "locustfile.py"
# Long enough that the load test's own share of a request's time (its event loop, the loopback
# hop: 1-4 ms here, more on a busy machine) stays well inside the 10 % the comparison allows.
SERVICE_MS = 50.0
CAPACITY_RPS = 1000.0 / SERVICE_MS
SETTLE_S = 1.0
STEP_S = 6.0


def _percentile(values: list[float], percentile: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(percentile / 100.0 * len(ordered) + 0.5)) - 1)]


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_search_finds_a_known_capacity_and_measures_latency_like_the_server(
        tmp_path: Path) -> None:
    port = free_port()
    timings = tmp_path / "server-timings.log"
    env = {**os.environ, "KNOWN_CAPACITY_SERVICE_MS": f"{SERVICE_MS:g}",
           "KNOWN_CAPACITY_LOG": str(timings)}
    with (tmp_path / "server.log").open("wb") as server_log:
        server = subprocess.Popen(
            [GUNICORN, "-k", "uvicorn_worker.UvicornWorker", "-w", "1", "-b",
             f"127.0.0.1:{port}", "--backlog", "2048", "tests.locust.known_capacity_app:app"],
            cwd=PROJECT_ROOT, env=env, stdout=server_log, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", timeout=30)
        step_log = tmp_path / "steps.jsonl"
        master_port = str(free_port())
        result = subprocess.run(
            [LOCUST, "-f", str(LOCUSTFILE), "--headless", "--host", f"http://127.0.0.1:{port}",
             "--processes", "2", "--master-bind-host", "127.0.0.1", "--master-bind-port",
             master_port, "--master-host", "127.0.0.1", "--master-port", master_port,
             "--load-profile", "search", "--start-rate", f"{CAPACITY_RPS / 4:g}",
             "--growth", "2", "--precision", "0.05", "--step-seconds", f"{STEP_S:g}",
             "--settle-seconds", f"{SETTLE_S:g}", "--p95-ms", "250", "--request-timeout", "2",
             "--model-mix", "lr=1",
             "--step-log", str(step_log), "--only-summary", "-t", "240s"],
            cwd=tmp_path, capture_output=True, text=True, timeout=270, check=False)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    events = [json.loads(line) for line in step_log.read_text().splitlines()]
    steps = [open_model.StepResult.from_record(e) for e in events if e["event"] == "step"]
    assert steps, result.stderr[-3000:]
    summary = [(s.rate, round(s.throughput_rps, 1), s.percentiles_ms()["p95"], s.passed)
               for s in steps]
    print(f"known capacity {CAPACITY_RPS:g} req/s; steps (offered, served, p95 ms, passed):",
          summary)
    assert events[-1]["event"] == "end" and events[-1]["outcome"] == "converged", summary

    knee = open_model.knee_step(steps)
    assert knee is not None, summary
    print(f"served knee {knee.throughput_rps:.1f} req/s at {knee.rate:g} offered")
    assert knee.throughput_rps == pytest.approx(CAPACITY_RPS, rel=0.10), summary

    half = next(s for s in steps if s.rate == pytest.approx(CAPACITY_RPS / 2))
    window = (half.started + SETTLE_S, half.started + STEP_S)
    server_seconds = []
    for line in timings.read_text().splitlines():
        arrived, took = (float(x) for x in line.split()[:2])
        if window[0] <= arrived < window[1]:
            server_seconds.append(took)
    client_p95 = half.percentiles_ms()["p95"]
    server_p95 = 1000.0 * _percentile(server_seconds, 95)
    print(f"step at {half.rate:g} req/s: {half.ok} answers measured by the load test, "
          f"{len(server_seconds)} by the server; p95 {client_p95:.2f} ms (load test, from the "
          f"intended send; {half.percentiles_ms(service=True)['p95']:.2f} from the actual send) "
          f"against {server_p95:.2f} ms (server)")
    assert len(server_seconds) == pytest.approx(half.ok, abs=3)
    assert client_p95 == pytest.approx(server_p95, rel=0.10)
