"""Steps must not measure each other (issue 18, item 4). A synthetic service reproduces the
hysteresis the quick run showed (after an overloaded step, a rate that passed before fails),
with the pause the master took before the drain probe, and shows it gone when the master waits
for the probe instead (loadtest/drain.py)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from loadtest import open_model
from loadtest.drain import DrainWait

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
