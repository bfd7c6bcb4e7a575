"""The open-model pieces against known answers: schedules, the measured window, merged
histograms, the step verdict and the rate search."""

from __future__ import annotations

import random

import pytest

from loadtest import open_model


def plan(**changes: object):
    values = {
        "index": 0,
        "rate": 100.0,
        "rate_per_user": 100.0,
        "duration_s": 10.0,
        "settle_s": 1.0,
        "arrival": "constant",
        "timeout_s": 5.0,
        "late_ms": 10.0,
        "max_in_flight": 100,
    }
    values.update(changes)
    return open_model.StepPlan(**values)


def test_constant_arrivals_are_evenly_spaced_at_the_rate() -> None:
    offsets = list(open_model.arrival_offsets(200.0, 5.0, "constant", random.Random(1)))
    assert len(offsets) in (999, 1000)
    gaps = {round(b - a, 9) for a, b in zip(offsets, offsets[1:], strict=False)}
    assert gaps == {0.005}
    assert 0 <= offsets[0] < 0.005 and offsets[-1] < 5.0


def test_poisson_arrivals_average_the_rate_with_exponential_gaps() -> None:
    offsets = list(open_model.arrival_offsets(1000.0, 20.0, "poisson", random.Random(7)))
    assert 19_000 < len(offsets) < 21_000
    gaps = [b - a for a, b in zip(offsets, offsets[1:], strict=False)]
    # Exponential gaps: the standard deviation equals the mean (constant spacing has none).
    mean = sum(gaps) / len(gaps)
    std = (sum((g - mean) ** 2 for g in gaps) / len(gaps)) ** 0.5
    assert std == pytest.approx(mean, rel=0.05)


def test_unknown_arrival_process_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown arrival"):
        list(open_model.arrival_offsets(10.0, 1.0, "bursty", random.Random()))


def test_recorder_counts_only_the_measured_window() -> None:
    recorder = open_model.StepRecorder(plan())
    recorder.arrival(0.5, sent=True)  # settle time: left out...
    recorder.outcome(0.5, 0.0, 0.010, None, 0.51)
    recorder.arrival(0.9, sent=True)  # ...but an answer completed in the window is served there
    recorder.outcome(0.9, 0.0, 0.2, None, 1.1)
    recorder.arrival(2.0, sent=True)
    recorder.outcome(2.0, 0.020, 0.030, None, 2.05)  # sent 20 ms late: late, 50 ms latency
    recorder.arrival(3.0, sent=False)  # dropped
    recorder.arrival(9.99, sent=True)
    recorder.outcome(9.99, 0.0, 0.5, "timeout", 10.49)
    message = recorder.to_message()
    assert {
        k: message[k] for k in ("scheduled", "sent", "late", "dropped", "ok", "failed", "served")
    } == {"scheduled": 3, "sent": 2, "late": 1, "dropped": 1, "ok": 1, "failed": 1, "served": 2}
    assert message["failures"] == {"timeout": 1}
    histogram = open_model.decode_histogram(message["histogram"])
    assert histogram.get_total_count() == 2
    assert histogram.get_max_value() == pytest.approx(500_000, rel=0.001)
    service = open_model.decode_histogram(message["service_histogram"])
    assert service.get_value_at_percentile(0) == pytest.approx(30_000, rel=0.001)


def _report(
    index: int, latencies_ms: list[float], lag_ms: float = 0.0, failures: int = 0, dropped: int = 0
) -> dict:
    recorder = open_model.StepRecorder(plan(index=index))
    for i, latency in enumerate(latencies_ms):
        offset = 1.0 + i * 0.001
        recorder.arrival(offset, sent=True)
        failure = "HTTP 503" if i < failures else None
        recorder.outcome(offset, lag_ms / 1000.0, latency / 1000.0, failure, offset + 0.1)
    for _ in range(dropped):
        recorder.arrival(5.0, sent=False)
    return recorder.to_message()


def test_merge_adds_the_generators_and_their_histograms() -> None:
    step = open_model.merge_reports(plan(), [_report(0, [10.0] * 90), _report(0, [1000.0] * 10)], 2)
    assert (step.scheduled, step.ok, step.generators) == (100, 100, 2)
    figures = step.percentiles_ms()
    assert figures["p50"] == pytest.approx(10.0, rel=0.001)
    assert figures["p95"] == pytest.approx(1000.0, rel=0.001)
    assert step.throughput_rps == pytest.approx(100 / 9.0)


def _judged(reports: list[dict], expected: int = 1, **objective: float):
    step = open_model.merge_reports(plan(), reports, expected)
    return open_model.judge(step, open_model.Objective(**objective))


def test_a_step_within_the_objective_passes() -> None:
    step = _judged([_report(0, [20.0] * 100)], p95_ms=100)
    assert step.passed and not step.generator_limited and step.reasons == []


def test_p95_failures_and_completion_each_fail_a_step() -> None:
    assert "p95" in _judged([_report(0, [200.0] * 100)], p95_ms=100).reasons[0]
    assert "failures" in " ".join(_judged([_report(0, [20.0] * 100, failures=5)]).reasons)
    dropped = _judged([_report(0, [20.0] * 100, dropped=5)])
    assert not dropped.passed and "completed 95.2%" in " ".join(dropped.reasons)


def test_p99_is_judged_only_when_asked() -> None:
    latencies = [20.0] * 98 + [900.0] * 2
    assert _judged([_report(0, latencies)], p95_ms=100).passed
    assert not _judged([_report(0, latencies)], p95_ms=100, p99_ms=500).passed


def test_late_generator_explains_a_failure_only_the_lag_causes() -> None:
    # 50 ms service time but sent 80 ms late: 130 ms from the intended time.
    step = _judged([_report(0, [50.0] * 100, lag_ms=80.0)], p95_ms=100)
    assert step.generator_limited and not step.passed
    assert "late on 100.0%" in step.reasons[0]


def test_late_generator_does_not_excuse_a_slow_service() -> None:
    step = _judged([_report(0, [400.0] * 100, lag_ms=80.0)], p95_ms=100)
    assert not step.passed and not step.generator_limited
    assert "(from the actual send)" in step.reasons[0]


def test_a_missing_generator_report_makes_the_step_generator_limited() -> None:
    step = _judged([_report(0, [20.0] * 100)], expected=2)
    assert step.generator_limited and not step.passed


def test_step_record_round_trips() -> None:
    step = _judged([_report(0, [20.0] * 100)])
    record = step.to_record()
    assert record["p95"] == pytest.approx(20.0, rel=0.001)
    again = open_model.StepResult.from_record(record)
    assert again.percentiles_ms() == step.percentiles_ms()


def _search_against(capacity: float, **kwargs: float) -> tuple[object, list[float]]:
    """Runs a search against a service that passes exactly the rates up to `capacity`."""
    search = open_model.RateSearch(**kwargs)
    rates = []
    while (rate := search.next_rate()) is not None:
        rates.append(rate)
        search.record(rate, rate <= capacity)
    return search, rates


@pytest.mark.parametrize("capacity", [37.0, 333.0, 1234.0, 9999.0])
def test_search_brackets_the_capacity_within_the_precision(capacity: float) -> None:
    search, rates = _search_against(capacity, start_rate=100.0, precision=0.05)
    assert search.outcome == open_model.CONVERGED
    assert search.lo <= capacity < search.hi
    assert (search.hi - search.lo) / search.lo <= 0.05
    assert len(rates) <= 15


def test_search_climbs_by_the_growth_factor_then_bisects() -> None:
    _, rates = _search_against(500.0, start_rate=100.0, growth=2.0, precision=0.05)
    assert rates[:4] == [100.0, 200.0, 400.0, 800.0]
    assert rates[4] == 600.0  # halfway between the last pass and the first failure


def test_search_stops_at_its_ceiling_and_says_so() -> None:
    search, rates = _search_against(1e9, start_rate=100.0, ceiling=1000.0)
    assert search.outcome == open_model.CEILING
    assert max(rates) == 1000.0


def test_search_ends_on_a_generator_limited_step() -> None:
    search = open_model.RateSearch(start_rate=100.0)
    search.record(search.next_rate(), True)
    search.record(search.next_rate(), False, generator_limited=True)
    assert search.next_rate() is None
    assert search.outcome == open_model.GENERATOR_LIMITED


def test_search_goes_down_when_the_first_rate_fails_and_gives_up_below_min_rate() -> None:
    search, rates = _search_against(30.0, start_rate=100.0)
    assert rates[:3] == [100.0, 50.0, 25.0]
    assert search.outcome == open_model.CONVERGED and search.lo <= 30.0 < search.hi
    hopeless, _ = _search_against(0.0, start_rate=100.0, min_rate=5.0)
    assert hopeless.outcome == open_model.NO_PASS and hopeless.lo is None


def test_staircase_stops_after_the_first_failing_step() -> None:
    steps = open_model.FixedSteps(open_model.staircase_rates(100, 100, 500))
    assert steps.rates == [100, 200, 300, 400, 500]
    seen = []
    while (rate := steps.next_rate()) is not None:
        seen.append(rate)
        steps.record(rate, rate < 300)
    assert seen == [100, 200, 300]


def _step(rate: float, passed: bool, limited: bool = False):
    step = open_model.merge_reports(plan(rate=rate), [_report(0, [1.0])], 1)
    step.passed, step.generator_limited = passed, limited
    return step


def test_knee_is_the_highest_pass_below_every_failure() -> None:
    steps = [
        _step(100, True),
        _step(200, True),
        _step(400, False),
        _step(300, True),
        _step(350, False),
        _step(500, True),
    ]  # 500: a lucky pass above a failure
    assert open_model.knee_step(steps).rate == 300
    assert open_model.knee_step([_step(100, True), _step(200, False, limited=True)]).rate == 100
    assert open_model.knee_step([_step(100, False)]) is None


def test_drain_pause_covers_the_backlog_an_overloaded_step_left() -> None:
    # 9 s measured of a 10 s step: 450 requests timed out, 100 were still unanswered when the
    # step was reported, and the service served 50 req/s: (550 x 10/9) / 50 = 12.2 s.
    step = open_model.merge_reports(plan(), [_report(0, [30.0] * 10)], 1)
    step.sent, step.ok, step.failed, step.served = 1000, 300, 600, 450
    step.failures = {"timeout": 450, "HTTP 503": 150}
    assert open_model.drain_seconds(step, 2.0) == pytest.approx(550 * 10 / 9 / 50)
    # Never shorter than a request timeout, never longer than the cap.
    step.failures, step.sent, step.ok, step.failed = {}, 10, 10, 0
    assert open_model.drain_seconds(step, 2.0) == 2.0
    step.failures = {"timeout": 10**6}
    assert open_model.drain_seconds(step, 2.0) == open_model.MAX_DRAIN_S


def _confirmed_search(capacity: float, held: float) -> tuple[open_model.RateSearch, list]:
    """A search whose short steps pass up to `capacity` but whose longer confirmation steps
    pass only up to `held` (a rate sustained for seconds, not for longer)."""
    search = open_model.RateSearch(start_rate=100.0, precision=0.05, confirm=True)
    steps = []
    while (rate := search.next_rate()) is not None:
        confirming = search.confirming is not None
        step = _step(rate, rate <= (held if confirming else capacity))
        step.confirmation = confirming
        search.record(rate, step.passed)
        steps.append(step)
    return search, steps


def test_a_knee_that_holds_is_confirmed() -> None:
    search, steps = _confirmed_search(capacity=333.0, held=1000.0)
    assert search.outcome == open_model.CONFIRMED
    confirmation = steps[-1]
    assert confirmation.confirmation and confirmation.rate == search.lo
    assert open_model.knee_step(steps) is confirmation


def test_a_knee_that_does_not_hold_steps_down_by_the_precision_then_twice_that() -> None:
    search, steps = _confirmed_search(capacity=333.0, held=290.0)
    held = [s for s in steps if s.confirmation]
    assert [s.passed for s in held] == [False, False, True]
    assert held[1].rate == pytest.approx(held[0].rate * 0.95)
    assert held[2].rate == pytest.approx(held[0].rate * 0.95 * 0.9)
    assert search.outcome == open_model.STEPPED_DOWN
    # The knee is the rate that held, though a short step passed above it.
    assert open_model.knee_step(steps) is held[2]


def test_when_no_confirmation_holds_the_knee_is_the_highest_short_step_below_every_hold() -> None:
    search, steps = _confirmed_search(capacity=333.0, held=10.0)
    holds = [s for s in steps if s.confirmation]
    assert len(holds) == open_model.MAX_CONFIRM_STEPS and not any(s.passed for s in holds)
    assert search.outcome == open_model.NOT_CONFIRMED
    knee = open_model.knee_step(steps)
    assert knee is not None and not knee.confirmation and knee.passed
    assert knee.rate < min(s.rate for s in holds)
    assert knee.rate == max(
        s.rate for s in steps if s.passed and s.rate < min(h.rate for h in holds)
    )
