"""Step figures and the knee, on a real recorded Locust run (tests/matrix/fixtures/README.md)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from matrix.config import Objective
from matrix.measurements import (
    knee,
    read_cpu_samples,
    read_history,
    read_request_counts,
    read_step_log,
    step_metrics,
    throughput_series,
)

FIXTURE = Path(__file__).parent / "fixtures" / "staircase-loopback"


@pytest.fixture(scope="module")
def recorded() -> tuple:
    history = read_history(FIXTURE / "locust_stats_history.csv")
    windows = read_step_log(FIXTURE / "steps.jsonl", history)
    samples = read_cpu_samples(FIXTURE / "loadgen_cpu.csv")
    return history, windows, samples


def test_reads_the_recorded_files(recorded: tuple) -> None:
    history, windows, samples = recorded
    assert [w.rate_rps for w in windows] == [100, 250, 400, 550, 700]
    assert history[-1].total_requests == read_request_counts(
        FIXTURE / "locust_stats.csv")["Aggregated"][0]
    assert all(w.end > w.start for w in windows)
    assert samples and samples[0].total_percent >= samples[0].max_process_percent


def test_served_rate_tracks_the_offered_rate(recorded: tuple) -> None:
    history, windows, samples = recorded
    steps = step_metrics(history, windows, Objective(), samples, loadgen_cores=2.0)
    for step in steps:
        assert step.throughput_rps == pytest.approx(step.rate_rps, rel=0.15)
        assert step.failures == 0
        assert step.p95_ms is not None and step.p95_ms > 0
        assert not step.loadgen_saturated
    # The lenient default objective passes every step, so the knee is the top of the staircase.
    assert knee(steps).rate_rps == 700


def test_a_strict_objective_puts_the_knee_where_latency_broke(recorded: tuple) -> None:
    history, windows, _ = recorded
    steps = step_metrics(history, windows, Objective(p95_ms=30))
    verdicts = [s.meets_objective for s in steps]
    assert verdicts[:3] == [True, True, True] and verdicts[3] is False
    assert knee(steps).rate_rps == 400
    assert "p95" in steps[3].reasons[0]


def test_a_pass_after_a_break_does_not_raise_the_knee(recorded: tuple) -> None:
    history, windows, _ = recorded
    steps = step_metrics(history, windows, Objective(p95_ms=30))
    steps[3].meets_objective = False
    steps[4].meets_objective = True
    assert knee(steps).rate_rps == 400


def test_undelivered_rate_breaks_the_objective(recorded: tuple) -> None:
    history, windows, _ = recorded
    # Claim 50 % more was offered than was served: every step falls short of the 90 % default.
    inflated = [replace(w, rate_rps=w.rate_rps * 1.5) for w in windows]
    steps = step_metrics(history, inflated, Objective())
    assert all(not s.meets_objective and "offered" in " ".join(s.reasons) for s in steps)
    assert knee(steps) is None


def test_saturated_load_generator_is_flagged(recorded: tuple) -> None:
    history, windows, samples = recorded
    # Pretend the generator had a tenth of a core: every step is then beyond its capacity.
    steps = step_metrics(history, windows, Objective(), samples, loadgen_cores=0.1)
    assert all(s.loadgen_saturated for s in steps[1:])


def test_throughput_series_uses_the_cumulative_counts(recorded: tuple) -> None:
    history, _, _ = recorded
    series = throughput_series(history)
    assert max(rate for _, rate in series) > 500
