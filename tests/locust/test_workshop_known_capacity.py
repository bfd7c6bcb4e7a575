"""The workshop (closed-model) measurement, proven against a known answer: real Locust processes
(a master and two workers) run the workshop profile, users posting and thinking 1-2.5 s, against
a test server that serves 20 requests/s by construction and refuses with 503 + Retry-After any
request that finds 4 others already waiting (tests/locust/known_capacity_app.py). The users offer
about twice what it serves, so it is overloaded the way the workshop's configurations are.

- Successful answers per second over the hold must come near (never above) the server's
  capacity and match its own count of the requests it served.
- The p95 of successful answers must match the server's own p95 of the same requests, untouched
  by the refusals, which the load test must time apart (and find fast).
- Every generator reports every second, so the per-second series is complete.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from loadtest.closed_model import REFUSED
from loadtest.open_model import Objective
from matrix.measure.measurements import HostWindows, workshop_trial
from tests.locust.known_capacity import known_capacity_server, percentile, run_locust

SERVICE_MS = 50.0
CAPACITY_RPS = 1000.0 / SERVICE_MS
MAX_WAITING = 4
USERS = 60  # thinking 1.75 s on average: ~34 req/s offered while answers are fast
HOLD_S = 12


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_workshop_load_measures_a_known_capacity_and_times_refusals_apart(tmp_path: Path) -> None:
    step_log = tmp_path / "steps.jsonl"
    with known_capacity_server(tmp_path, SERVICE_MS, MAX_WAITING) as (url, timings):
        result = run_locust(
            url,
            tmp_path,
            [
                "--load-profile",
                "workshop",
                "--workshop-users",
                str(USERS),
                "--workshop-spawn-rate",
                "30",
                "--hold-seconds",
                str(HOLD_S),
                "--think-min",
                "1",
                "--think-max",
                "2.5",
                "--request-timeout",
                "10",
                "--model-mix",
                "default",
                "--body",
                "seed",
                "--step-log",
                str(step_log),
                "-t",
                "120s",
            ],
            timeout=150,
        )
    events = [json.loads(line) for line in step_log.read_text().splitlines()]
    trial = workshop_trial(events, Objective(p95_ms=500.0), HostWindows())
    assert trial is not None, result.stderr[-3000:]
    step = trial.step
    print(
        f"known capacity {CAPACITY_RPS:g} req/s; hold {step.ended - step.started:.1f} s: "
        f"served {step.served_rps:.1f} req/s, answered {step.answered_rps:.1f}, failures "
        f"{step.failures}, ok p50/p95 {step.p50_ms}/{step.p95_ms} ms, refused p95 "
        f"{step.refused_p95_ms} ms, users {step.users}"
    )
    assert trial.ramp_complete and step.users == USERS

    # Every generator sent every second from its start to its end.
    seconds: dict[str, list[int]] = defaultdict(list)
    for event in events:
        if event["event"] == "window":
            seconds[event["worker"]].append(event["second"])
    assert len(seconds) == 2
    for series in seconds.values():
        assert series == list(range(series[0], series[0] + len(series)))

    # Served: the capacity, and what the server itself counted over the same seconds.
    # At most the capacity; a little under it, as the test server's own event loop (and on a
    # busy machine, the wait for a core) adds to each 50 ms.
    assert 0.8 * CAPACITY_RPS <= step.served_rps <= 1.02 * CAPACITY_RPS
    served, refused_by_server = [], 0
    for line in timings.read_text().splitlines():
        arrived, took, status = line.split()
        answered = float(arrived) + float(took)
        if step.started <= answered < step.ended:
            if status == "200":
                served.append(float(took))
            else:
                refused_by_server += 1
    print(
        f"server: {len(served)} served and {refused_by_server} refused in the hold; "
        f"load test: {step.ok} ok and {step.failures.get(REFUSED, 0)} refused"
    )
    assert step.ok == pytest.approx(len(served), rel=0.03)
    assert step.failures.get(REFUSED, 0) == pytest.approx(refused_by_server, rel=0.05)
    assert set(step.failures) == {REFUSED}  # no timeout, no connection error
    # Overloaded: the excess is refused, the accepted wait at most MAX_WAITING service times.
    assert refused_by_server > 0.2 * len(served)
    server_p95 = 1000.0 * percentile(served, 95)
    assert step.p95_ms is not None and step.refused_p95_ms is not None
    assert server_p95 <= (MAX_WAITING + 1) * SERVICE_MS * 1.1
    assert step.p95_ms == pytest.approx(server_p95, rel=0.20, abs=5.0)
    assert step.refused_p95_ms < step.p95_ms / 2
