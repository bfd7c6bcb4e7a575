"""The whole open-model search, proven against a known answer: real Locust processes (a master
and two workers) search the limit of a test server that can serve 20 requests/s by construction
(one worker whose only event loop each request holds for 50 ms; tests/locust/known_capacity_app.py).

- The served knee must land within 10 % of that capacity.
- For the step at half the capacity, the p95 the load test reports (from each request's intended
  send) must match, within 10 %, the server's own p95 of the same requests over the same
  interval: from the time the load test scheduled each one (it travels in a header) until the
  server sent the answer. Its p95 from the actual send must likewise match the server's timing
  from each request's arrival (within the allowance below), and can never exceed the reported
  one.

Why the server times from the scheduled send: the reported figure rightly charges the
generator's own delays to latency, and on a busy 2-core machine they reach 5 ms at the p95. A
server timing from arrival leaves them out, so the two differed by up to the whole 10 % when the
step's p95 happened to be low (a CI run: 63.0 ms reported, 58.1 from the actual send, 54.8 at
the server from arrival). Timed from the same instant, only the answer's way back to the client
is outside the server's figure.

The p95 from the actual send must lie between the server's two p95s (from arrival and from the
scheduled send), and above the one from arrival by no more than the generator's own path:
10 % or CLIENT_PATH_MS, whichever is larger.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest import open_model
from tests.locust.known_capacity import known_capacity_server, percentile, run_locust

# Long enough that the load test's own share of a request's time (its event loop, the loopback
# hop: 1-4 ms here, more on a busy machine) stays well inside the 10 % the comparison allows.
SERVICE_MS = 50.0
CAPACITY_RPS = 1000.0 / SERVICE_MS
# The generator's own share of a request's time from its actual send, measured on this 2-core
# machine in two CI runs: 3.3 ms (58.1 ms from the actual send against 54.8 ms at the server from
# arrival) and 6.3 ms (66.1 against 59.8), with CI's other work on the machine.
CLIENT_PATH_MS = 10.0
SETTLE_S = 1.0
STEP_S = 6.0


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_search_finds_a_known_capacity_and_measures_latency_like_the_server(tmp_path: Path) -> None:
    step_log = tmp_path / "steps.jsonl"
    with known_capacity_server(tmp_path, SERVICE_MS) as (url, timings):
        result = run_locust(
            url,
            tmp_path,
            [
                "--load-profile",
                "search",
                "--start-rate",
                f"{CAPACITY_RPS / 4:g}",
                "--growth",
                "2",
                "--precision",
                "0.05",
                "--step-seconds",
                f"{STEP_S:g}",
                "--settle-seconds",
                f"{SETTLE_S:g}",
                "--p95-ms",
                "250",
                "--request-timeout",
                "2",
                "--model-mix",
                "lr=1",
                "--step-log",
                str(step_log),
                "-t",
                "240s",
            ],
            timeout=270,
        )
    events = [json.loads(line) for line in step_log.read_text().splitlines()]
    steps = [open_model.StepResult.from_record(e) for e in events if e["event"] == "step"]
    assert steps, result.stderr[-3000:]
    summary = [
        (s.rate, round(s.throughput_rps, 1), s.percentiles_ms()["p95"], s.passed) for s in steps
    ]
    print(
        f"known capacity {CAPACITY_RPS:g} req/s; steps (offered, served, p95 ms, passed):", summary
    )
    assert events[-1]["event"] == "end" and events[-1]["outcome"] == "converged", summary

    knee = open_model.knee_step(steps)
    assert knee is not None, summary
    print(f"served knee {knee.throughput_rps:.1f} req/s at {knee.rate:g} offered")
    assert knee.throughput_rps == pytest.approx(CAPACITY_RPS, rel=0.10), summary

    half = next(s for s in steps if s.rate == pytest.approx(CAPACITY_RPS / 2))
    window = (half.started + SETTLE_S, half.started + STEP_S)
    from_arrival, from_scheduled = [], []
    for line in timings.read_text().splitlines():
        arrived, took, _status, since_scheduled = (float(x) for x in line.split())
        # The load test keeps a request by its scheduled time; so does this.
        scheduled = arrived + took - since_scheduled
        if window[0] <= scheduled < window[1]:
            from_arrival.append(took)
            from_scheduled.append(since_scheduled)
    reported_p95 = half.percentiles_ms()["p95"]
    sent_p95 = half.percentiles_ms(service=True)["p95"]
    server_p95 = 1000.0 * percentile(from_scheduled, 95)
    server_arrival_p95 = 1000.0 * percentile(from_arrival, 95)
    print(
        f"step at {half.rate:g} req/s: {half.ok} answers measured by the load test, "
        f"{len(from_scheduled)} by the server; p95 reported {reported_p95:.2f} ms against "
        f"{server_p95:.2f} ms at the server (both from the scheduled send); from the actual "
        f"send {sent_p95:.2f} ms against {server_arrival_p95:.2f} ms from arrival"
    )
    assert len(from_scheduled) == pytest.approx(half.ok, abs=3)
    assert reported_p95 == pytest.approx(server_p95, rel=0.10)
    # The actual send lies between the scheduled send and the server's arrival, so its p95
    # lies between those two p95s (plus the way back, which only the client's figures hold).
    assert reported_p95 is not None and sent_p95 is not None
    assert server_arrival_p95 <= sent_p95 <= reported_p95
    # How far above the server's figure: the generator's own path both ways (its event loop,
    # the loopback hop), 10 % of the step's p95 or CLIENT_PATH_MS, whichever is larger.
    assert sent_p95 == pytest.approx(server_arrival_p95, rel=0.10, abs=CLIENT_PATH_MS)
