"""A recorded trial (tests/matrix/fixtures/README.md) read back as typed steps: figures
recomputed from the histograms agree with what the Locust master judged live, and the host-side
counters fit the cell's limits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest.open_model import Objective
from matrix.analyse.records import StepRecord
from matrix.config import MatrixFile
from matrix.measure.cgroups import CpuCounters, read_samples
from matrix.measure.measurements import (
    CpuSample,
    HostWindows,
    closed_step,
    open_objective,
    open_steps,
    read_cpu_samples,
    read_history,
    read_request_counts,
    read_step_events,
)

SEARCH = Path(__file__).parent / "fixtures" / "search-swarm"
STAIRCASE = Path(__file__).parent / "fixtures" / "staircase-loopback"
CELL_CPUS = 0.2  # the fixture's cell: 1 replica x 0.2 CPU


@pytest.fixture(scope="module")
def events() -> list[dict]:
    return read_step_events(SEARCH / "steps.jsonl")


@pytest.fixture(scope="module")
def host() -> HostWindows:
    return HostWindows(
        read_cpu_samples(SEARCH / "loadgen_cpu.csv"),
        read_samples(SEARCH / "cgroup_cpu.csv"),
        loadgen_cores=2.0,
    )


def test_recomputed_steps_agree_with_the_live_verdicts(
    events: list[dict], host: HostWindows
) -> None:
    live = {e["index"]: e for e in events if e["event"] == "step"}
    steps, outcome, knee = open_steps(events, Objective(), host)
    assert outcome == "converged" and [s.index for s in steps] == sorted(live)
    for step in steps:
        recorded = live[step.index]
        assert step.passed == recorded["passed"] and step.reasons == recorded["reasons"]
        assert step.p95_ms == recorded["p95"] and step.offered_rps == recorded["rate"]
        assert step.served_rps == pytest.approx(recorded["throughput_rps"], abs=0.01)
        assert step.scheduled >= step.sent >= step.ok
    end = events[-1]
    assert end["event"] == "end" and steps[knee].offered_rps == end["knee_rate"]


def test_knee_is_served_and_below_every_failure(events: list[dict], host: HostWindows) -> None:
    steps, _, knee = open_steps(events, Objective(), host)
    knee_step = next(s for s in steps if s.index == knee)
    assert knee_step.passed
    assert all(s.offered_rps > knee_step.offered_rps for s in steps if not s.passed)
    assert knee_step.served_rps <= max(s.served_rps for s in steps)
    # Served, not offered: a step that could not keep up served less than it was offered.
    assert knee_step.served_rps < knee_step.offered_rps


def test_a_stricter_objective_moves_the_knee_down(events: list[dict], host: HostWindows) -> None:
    _, _, loose = open_steps(events, Objective(p95_ms=500), host)
    steps, _, strict = open_steps(events, Objective(p95_ms=60), host)
    by_index = {s.index: s for s in steps}
    assert by_index[strict].offered_rps < by_index[loose].offered_rps
    assert all(s.p95_ms <= 60 for s in steps if s.passed)


def test_cgroup_cpu_never_exceeds_the_quota_and_throttling_grows_with_load(
    events: list[dict], host: HostWindows
) -> None:
    steps, _, _ = open_steps(events, Objective(), host)
    for step in steps:
        assert step.api_cpu_cores is not None and step.throttled_share is not None
        assert 0 < step.api_cpu_cores <= CELL_CPUS * 1.05
    lightest = min(steps, key=lambda s: s.offered_rps or 0)
    heaviest = max(steps, key=lambda s: s.offered_rps or 0)
    assert heaviest.throttled_share > lightest.throttled_share
    assert heaviest.throttled_ms_per_s > lightest.throttled_ms_per_s
    assert all(s.loadgen_cpu_share is not None and s.host_cpu_share is not None for s in steps)


def test_locust_counted_every_request_the_steps_did(events: list[dict]) -> None:
    requests, failures = read_request_counts(SEARCH / "locust_stats.csv")["Aggregated"]
    scheduled = sum(e["scheduled"] for e in events if e["event"] == "step")
    # Locust also counts the settle seconds the steps leave out.
    assert requests > scheduled
    assert failures >= sum(e["failed"] for e in events if e["event"] == "step")


def test_a_closed_model_run_becomes_one_step_over_its_hold() -> None:
    history = read_history(STAIRCASE / "locust_stats_history.csv")
    events = [json.loads(line) for line in (STAIRCASE / "steps.jsonl").read_text().splitlines()]
    step = closed_step(history, events, Objective(p95_ms=500), HostWindows())
    assert step is not None and step.offered_rps is None
    assert step.served_rps > 100 and step.p95_ms is not None
    assert step.passed == (step.p95_ms <= 500 and step.failure_ratio <= 0.01)
    assert closed_step([], events, Objective(), HostWindows()) is None


def test_objective_of_a_matrix_file_includes_the_generator_tolerance() -> None:
    matrix = MatrixFile.model_validate(
        {
            "cells": {"replicas": [1], "cpus": [0.5], "memory": ["256M"]},
            "profile": {"kind": "search", "start_rate": 10},
            "objective": {"p95_ms": 200, "p99_ms": 400},
            "load_generator": {"max_late_ratio": 0.02},
            "target_rps": 10,
        }
    )
    assert open_objective(matrix) == Objective(p95_ms=200, p99_ms=400, max_late_ratio=0.02)


def test_demand_of_the_recorded_steps_fits_the_quota(events: list[dict], host: HostWindows) -> None:
    """CPU per answer x answers per second is the CPU used, which the quota caps; the fixture
    predates the Nginx and generator counters, which stay unknown."""
    steps, _, _ = open_steps(events, Objective(), host)
    for step in steps:
        assert step.demand_us_per_request is not None
        used = step.demand_us_per_request * step.served_rps / 1e6
        assert used <= CELL_CPUS * 1.05
        assert used == pytest.approx(step.api_cpu_cores, rel=0.1)
        assert step.demand_us_per_request_per_replica == step.demand_us_per_request  # 1 replica
        assert step.nginx_us_per_request is None and step.loadgen_us_per_request is None


def test_demand_per_request_over_the_exact_window() -> None:
    """Two replicas at 0.1 core each, Nginx at 0.02, the generator at 0.3, answering 200 req/s
    over a window that starts and ends between samples."""

    def counter(cores: float) -> list[tuple[float, CpuCounters]]:
        return [(t, CpuCounters(round(cores * t * 1e6), 0, 0, 0)) for t in (0.0, 0.5, 1.0, 1.5)]

    loadgen = [CpuSample(t, 30.0, 15.0, 50.0, 0.3 * t) for t in (0.0, 1.0, 2.0)]
    host = HostWindows(
        loadgen, {"a": counter(0.1), "b": counter(0.1)}, nginx_samples={"n": counter(0.02)}
    )
    step = StepRecord(index=0, offered_rps=200.0, served_rps=200.0)
    host.demand(step, 0.2, 1.2)
    assert step.demand_us_per_request == pytest.approx(1000.0)  # 0.2 core / 200 req/s
    assert step.demand_us_per_request_per_replica == pytest.approx(500.0)
    assert step.nginx_us_per_request == pytest.approx(100.0)
    assert step.loadgen_us_per_request == pytest.approx(1500.0)
    idle = StepRecord(index=1, offered_rps=1.0, served_rps=0.0)
    assert host.demand(idle, 0.2, 1.2).demand_us_per_request is None  # no answer: no demand
