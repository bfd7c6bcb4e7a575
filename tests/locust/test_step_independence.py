"""Steps must not measure each other (issue 18, item 4). A synthetic service reproduces the
hysteresis the quick run showed (after an overloaded step, a rate that passed before fails),
with the pause the master took before the drain probe, and shows it gone when the master waits
for the probe instead (loadtest/drain.py)."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from loadtest import open_model
from loadtest.drain import DrainWait
from tests.locust.known_capacity import known_capacity_server, run_locust

STEP_S, SETTLE_S, TIMEOUT_S = 3.0, 0.5, 2.0


class ProxiedService:
    """One server, first come first served, `capacity` requests/s, behind a proxy that answers
    504 to a request still queued after `proxy_timeout` s, while the server still works it off
    (as a replica does the requests left in its listen queue). The client sees a prompt
    failure, not a timeout: the backlog is invisible from its side."""

    def __init__(self, capacity: float, proxy_timeout: float = 1.0) -> None:
        self.service_s = 1.0 / capacity
        self.proxy_timeout = proxy_timeout
        self.free_at = 0.0  # when the server has worked off everything queued so far

    def step(self, rate: float, start: float, index: int) -> open_model.StepResult:
        plan = open_model.StepPlan(
            index, rate, rate, STEP_S, SETTLE_S, "constant", TIMEOUT_S, 10.0, 1000
        )
        recorder = open_model.StepRecorder(plan)
        for offset in open_model.arrival_offsets(rate, STEP_S, "constant", random.Random(index)):
            arrival = start + offset
            self.free_at = max(arrival, self.free_at) + self.service_s
            latency = self.free_at - arrival
            recorder.arrival(offset, sent=True)
            if latency > self.proxy_timeout:
                recorder.outcome(
                    offset, 0.0, self.proxy_timeout, "HTTP 504", offset + self.proxy_timeout
                )
            else:
                recorder.outcome(offset, 0.0, latency, None, offset + latency)
        result = open_model.merge_reports(plan, [recorder.to_message()], 1)
        return open_model.judge(result, open_model.Objective())


def run_steps(
    rates: list[float], wait: Callable[[ProxiedService, float, Any], float]
) -> list[open_model.StepResult]:
    """The rates in order on one service, `wait` deciding the pause after each step."""
    service, now, results = ProxiedService(capacity=100.0), 0.0, []
    for index, rate in enumerate(rates):
        result = service.step(rate, now, index)
        # The generators report once their last answer is in (the proxy's timeout at most).
        now += STEP_S + service.proxy_timeout
        now += wait(service, now, result)
        results.append(result)
    return results


def estimated_pause(_service: ProxiedService, _now: float, result: Any) -> float:
    """The master's pause before the probe: after a failing step only, estimated from what
    the clients saw."""
    return 0.0 if result.passed else open_model.drain_seconds(result, TIMEOUT_S)


def probed_wait(service: ProxiedService, now: float, _result: Any) -> float:
    """The master's wait with a probe: poll once a second until the service is at rest."""
    clock = [now]
    wait = DrainWait(lambda: {"quiet": service.free_at <= clock[0]}, 60.0, clock=lambda: clock[0])
    while not wait.poll():
        clock[0] += 1.0
    assert wait.quiet and not wait.timed_out
    return clock[0] - now


RATES = [80.0, 400.0, 80.0, 90.0]  # capacity 100: the second step is four times too much


def test_an_overloaded_step_fails_the_rates_after_it_without_the_probe() -> None:
    verdicts = [r.passed for r in run_steps(RATES, estimated_pause)]
    assert verdicts == [True, False, False, False]  # 80 passed, then failed after the overload


def test_waiting_for_the_probe_makes_the_steps_independent() -> None:
    results = run_steps(RATES, probed_wait)
    assert [r.passed for r in results] == [True, False, True, True]
    # The same rate measures the same before and after the overload.
    assert results[2].percentiles_ms()["p95"] == results[0].percentiles_ms()["p95"]


def test_a_wait_that_never_sees_rest_ends_at_its_timeout_and_says_so() -> None:
    clock = [0.0]
    answers = {"quiet": False, "reasons": ["api CPU 0.100 cores > 0.055"]}
    wait = DrainWait(lambda: answers, 5.0, clock=lambda: clock[0])
    while not wait.poll():
        clock[0] += 1.0
    assert wait.timed_out and not wait.quiet and clock[0] == 5.0
    assert wait.record() == {
        "drain_proven": False,
        "drain_timed_out": True,
        "drain_polls": 6,
        "drain_last": answers,
    }


class BusyEveryOtherTime:
    """A drain probe on loopback that answers 'busy' to every odd request, 'quiet' to every
    even one: each wait of the master takes exactly two polls."""

    def __init__(self) -> None:
        self.polls = 0
        probe = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                probe.polls += 1
                quiet = probe.polls % 2 == 0
                body = json.dumps({"quiet": quiet, "reasons": [] if quiet else ["busy"]})
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/quiet"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def arguments(options: dict[str, str], step_log: Path, probe_url: str) -> list[str]:
    pairs = {**options, "step-log": str(step_log), "drain-probe-url": probe_url}
    return [part for name, value in pairs.items() for part in (f"--{name}", value)]


@pytest.mark.integration
@pytest.mark.timeout(240)
def test_the_master_waits_for_the_probe_and_confirms_its_knee(tmp_path: Path) -> None:
    """Real Locust processes against the known-capacity server (20 req/s): every step after the
    first waits for the probe (two polls, a tick apart), and the converged search holds its knee
    rate for --confirm-seconds before it reports it."""
    probe = BusyEveryOtherTime()
    step_log = tmp_path / "steps.jsonl"
    # 10 req/s passes; the first failure is within --precision of the highest pass, so the
    # search converges after a few steps and holds that rate for 4 s.
    options = {
        "load-profile": "search",
        "start-rate": "10",
        "precision": "0.5",
        "step-seconds": "3",
        "settle-seconds": "0.5",
        "confirm-seconds": "4",
        "p95-ms": "250",
        "request-timeout": "2",
        "model-mix": "lr=1",
        "run-time": "180s",
    }
    try:
        with known_capacity_server(tmp_path, 50.0) as (url, _timings):
            result = run_locust(url, tmp_path, [*arguments(options, step_log, probe.url)], 210)
    finally:
        probe.server.shutdown()
    events = [json.loads(line) for line in step_log.read_text().splitlines()]
    steps = [e for e in events if e["event"] == "step"]
    assert steps, result.stderr[-3000:]
    print([(e["rate"], e["passed"], e["drain_wait_s"], e["confirmation"]) for e in steps])
    assert steps[0]["drain_wait_s"] == 0.0 and steps[0]["drain_proven"] is None
    for step in steps[1:]:
        assert step["drain_proven"] is True and not step["drain_timed_out"]
        assert step["drain_polls"] == 2 and step["drain_wait_s"] >= 0.9
    held = [e for e in steps if e["confirmation"]]
    assert held and held[0]["duration_s"] == 4.0
    short = [open_model.StepResult.from_record(e) for e in steps if not e["confirmation"]]
    lowest_fail = min((s.rate for s in short if not s.passed), default=float("inf"))
    assert held[0]["rate"] == max(s.rate for s in short if s.passed and s.rate < lowest_fail)
    end = events[-1]
    assert end["event"] == "end" and end["outcome"] in (
        open_model.CONFIRMED,
        open_model.STEPPED_DOWN,
        open_model.NOT_CONFIRMED,
    )
