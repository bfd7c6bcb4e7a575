"""Reads what one trial recorded (the master's step log, Locust's CSVs, the load generator's
CPU, the api containers' cgroup counters) and turns it into typed step records.

Open-model steps (search, staircase) are recomputed from their latency histograms and judged
again with the load test's own judge(), so a report rebuilt from the raw files says what the
live run said. A closed-model run (workshop, plain) has no schedule to judge against: it becomes
one record over its hold, from Locust's statistics, and says so."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from loadtest.closed_model import OK, REFUSED, Window, merge_windows, summarise
from loadtest.open_model import Objective, StepResult, judge, knee_step, objective_reasons
from matrix.analyse.records import StepRecord, TimelinePoint
from matrix.config import MatrixFile
from matrix.measure.cgroups import CpuCounters, interpolate, window_cpu, window_usage_us


@dataclass(frozen=True)
class HistoryRow:
    timestamp: float
    users: int
    rps: float
    p50_ms: float | None
    p95_ms: float | None
    total_requests: int
    total_failures: int


@dataclass(frozen=True)
class CpuSample:
    """One load generator sample: CPU of its processes in % of one core, and the host's."""

    timestamp: float
    total_percent: float
    max_process_percent: float
    host_percent: float
    # Cumulative CPU time of the generator's processes (None in files from before it was kept).
    cpu_seconds: float | None = None


def _number(text: str | None) -> float | None:
    if text is None or text.strip() in ("", "N/A"):
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_history(path: Path) -> list[HistoryRow]:
    """The Aggregated rows of a Locust *_stats_history.csv, oldest first."""
    rows: list[HistoryRow] = []
    with path.open(newline="", encoding="utf-8") as handle:
        for record in csv.DictReader(handle):
            if record.get("Name") != "Aggregated":
                continue
            rows.append(
                HistoryRow(
                    timestamp=float(record["Timestamp"]),
                    users=int(float(record["User Count"])),
                    rps=_number(record["Requests/s"]) or 0.0,
                    p50_ms=_number(record["50%"]),
                    p95_ms=_number(record["95%"]),
                    total_requests=int(float(record["Total Request Count"])),
                    total_failures=int(float(record["Total Failure Count"])),
                )
            )
    rows.sort(key=lambda row: row.timestamp)
    return rows


def read_request_counts(path: Path) -> dict[str, tuple[int, int]]:
    """Per request name of a Locust *_stats.csv: (requests, failures); 'Aggregated' included."""
    counts: dict[str, tuple[int, int]] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for record in csv.DictReader(handle):
            counts[record["Name"]] = (int(record["Request Count"]), int(record["Failure Count"]))
    return counts


def read_cpu_samples(path: Path) -> list[CpuSample]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return [
            CpuSample(
                float(r["timestamp"]),
                float(r["total_percent"]),
                float(r["max_process_percent"]),
                float(r["host_percent"]),
                _number(r.get("cpu_seconds")),
            )
            for r in csv.DictReader(handle)
        ]


def open_objective(matrix: MatrixFile) -> Objective:
    """The step objective of a matrix file, in the load test's terms."""
    return Objective(
        p95_ms=matrix.objective.p95_ms,
        p99_ms=matrix.objective.p99_ms,
        max_failure_ratio=matrix.objective.max_failure_ratio,
        min_completion_ratio=matrix.objective.min_completion_ratio,
        max_late_ratio=matrix.load_generator.max_late_ratio,
    )


def read_step_events(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of the master's --step-log."""
    if not path.is_file():
        return []
    return [
        json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]


@dataclass(frozen=True)
class HostWindows:
    """What the host recorded during a trial, to be cut into step windows."""

    cpu_samples: Sequence[CpuSample] = ()
    cgroup_samples: dict[str, list[tuple[float, CpuCounters]]] = field(default_factory=dict)
    loadgen_cores: float = 1.0
    saturation: float = 0.9
    # The Nginx container's cgroup counters (empty in trials from before they were kept).
    nginx_samples: dict[str, list[tuple[float, CpuCounters]]] = field(default_factory=dict)

    def demand(self, step: StepRecord, start: float, end: float) -> StepRecord:
        """CPU-us per request completed in [start, end]: the api containers' (all of them, idle
        not subtracted, and per replica), Nginx's and the generator's, each counter cut at
        exactly the window's ends. The requests are the successful answers completed inside the
        window (the served rate's count): the work the cell did for its users."""
        completed = step.served_rps * (end - start)
        if completed < 1:
            return step
        api = window_usage_us(self.cgroup_samples, start, end)
        if api is not None:
            step.demand_us_per_request = round(api[0] / completed, 2)
            step.demand_us_per_request_per_replica = round(api[0] / completed / api[1], 2)
        nginx = window_usage_us(self.nginx_samples, start, end)
        if nginx is not None:
            step.nginx_us_per_request = round(nginx[0] / completed, 2)
        cumulative = [
            (s.timestamp, s.cpu_seconds) for s in self.cpu_samples if s.cpu_seconds is not None
        ]
        first, last = interpolate(cumulative, start), interpolate(cumulative, end)
        if first is not None and last is not None:
            step.loadgen_us_per_request = round((last - first) * 1e6 / completed, 2)
        return step

    def annotate(self, step: StepRecord, start: float, end: float) -> StepRecord:
        samples = [s for s in self.cpu_samples if start <= s.timestamp <= end]
        if samples:
            step.loadgen_cpu_share = round(
                sum(s.total_percent for s in samples) / len(samples) / (100.0 * self.loadgen_cores),
                4,
            )
            step.loadgen_max_process_share = round(
                sum(s.max_process_percent for s in samples) / len(samples) / 100.0, 4
            )
            step.host_cpu_share = round(
                sum(s.host_percent for s in samples) / len(samples) / 100.0, 4
            )
            step.loadgen_saturated = (
                step.loadgen_cpu_share > self.saturation
                or step.loadgen_max_process_share > self.saturation
            )
        cpu = window_cpu(self.cgroup_samples, start, end)
        if cpu is not None:
            step.api_cpu_cores = cpu.cpu_cores
            step.throttled_share = cpu.throttled_share
            step.throttled_ms_per_s = cpu.throttled_ms_per_s
        return self.demand(step, start, end)


def open_steps(
    events: Sequence[dict[str, Any]], objective: Objective, host: HostWindows
) -> tuple[list[StepRecord], str, int | None]:
    """The steps of an open-model trial, re-judged, with the search's outcome and knee."""
    results = [
        judge(StepResult.from_record(e), objective)
        for e in events
        if e.get("event") == "step" and "histogram" in e
    ]
    end = next((e for e in events if e.get("event") == "end"), None)
    outcome = str(end["outcome"]) if end else "interrupted"
    records = []
    for result in results:
        figures = result.percentiles_ms()
        record = StepRecord(
            index=result.index,
            offered_rps=result.rate,
            served_rps=round(result.throughput_rps, 3),
            scheduled=result.scheduled,
            sent=result.sent,
            late=result.late,
            dropped=result.dropped,
            ok=result.ok,
            failed=result.failed,
            failures=result.failures,
            p50_ms=figures["p50"],
            p95_ms=figures["p95"],
            p99_ms=figures["p99"],
            max_ms=figures["max"],
            service_p95_ms=result.percentiles_ms(service=True)["p95"],
            passed=result.passed,
            generator_limited=result.generator_limited,
            reasons=result.reasons,
            started=result.started,
            ended=result.ended,
            drain_wait_s=result.drain_wait_s,
            drain_proven=result.drain_proven,
            drain_timed_out=result.drain_timed_out,
            confirmation=result.confirmation,
        )
        records.append(
            host.annotate(
                record, result.started + result.settle_s, result.started + result.duration_s
            )
        )
    knee = knee_step(results)
    return records, outcome, knee.index if knee else None


def closed_step(
    history: Sequence[HistoryRow],
    events: Sequence[dict[str, Any]],
    objective: Objective,
    host: HostWindows,
) -> StepRecord | None:
    """A closed-model run as one record over its hold (after the users ramp up): throughput
    from the cumulative counts, p95 the worst of Locust's rolling ~10 s percentiles. Latency here
    is from the actual send (a closed loop cannot say when a request was wanted)."""
    step = next((e for e in events if e.get("event") == "step"), None)
    if not history:
        return None
    start = history[0].timestamp
    if step is not None and step.get("spawn_rate"):
        start = float(step["time"]) + float(step["users"]) / float(step["spawn_rate"])
    inside = [r for r in history if r.timestamp >= start] or list(history)
    first, last = inside[0], inside[-1]
    span = max(last.timestamp - first.timestamp, 1e-9)
    requests = last.total_requests - first.total_requests
    failures = last.total_failures - first.total_failures
    p95s = [r.p95_ms for r in inside if r.p95_ms is not None]
    record = StepRecord(
        index=0,
        offered_rps=None,
        served_rps=round(requests / span, 3),
        ok=requests - failures,
        failed=failures,
        p95_ms=max(p95s) if p95s else None,
        started=first.timestamp,
        ended=last.timestamp,
    )
    # Locust's rolling percentiles have no p99 worth judging: only p95 and failures count here.
    reasons = objective_reasons(
        replace(objective, p99_ms=None), record.p95_ms, None, record.failure_ratio
    )
    record.reasons, record.passed = reasons, not reasons
    return host.annotate(record, first.timestamp, last.timestamp)


@dataclass(frozen=True)
class ClosedTrial:
    step: StepRecord
    timeline: list[TimelinePoint]
    ramp_complete: bool


def _timeline(windows: Sequence[Window]) -> list[TimelinePoint]:
    points = []
    for window in windows:
        ok = window.counts.get(OK, 0)
        refused = window.counts.get(REFUSED, 0)
        p95 = window.ok.get_value_at_percentile(95.0) / 1000.0 if ok else None
        points.append(
            TimelinePoint(
                second=window.second,
                users=window.users,
                ok=ok,
                refused=refused,
                other_failures=window.answered - ok - refused,
                ok_p95_ms=round(p95, 3) if p95 is not None else None,
            )
        )
    return points


def workshop_trial(
    events: Sequence[dict[str, Any]], objective: Objective, host: HostWindows
) -> ClosedTrial | None:
    """A workshop (closed-model) trial from the generators' per-second windows: one record over
    the hold, from the first second every user was running to the end of the schedule. Latency is
    from the actual send (a closed loop cannot say when a request was wanted); the p50-max are of
    successful answers, 503 refusals are timed apart, failures are counted by kind."""
    windows = merge_windows(e for e in events if e.get("event") == "window")
    if not windows:
        return None
    step = next((e for e in events if e.get("event") == "step"), None)
    end_event = next((e for e in events if e.get("event") == "end"), None)
    target = int(step["users"]) if step else max(w.users for w in windows)
    full = next((w.second for w in windows if w.users >= target), None)
    ramp_complete = full is not None
    if full is not None:
        start = float(full)
    elif step is not None and step.get("spawn_rate"):
        # The ramp never completed: take its nominal end. (The step event itself may be logged
        # after the ramp, as Locust starts the users before the shape's next tick.)
        start = windows[0].second + float(step["users"]) / float(step["spawn_rate"])
    else:
        start = float(windows[0].second)
    end = float(end_event["time"]) if end_event else float(windows[-1].second + 1)
    # Whole seconds only: the record's window is exactly the one its figures cover.
    start, end = float(math.ceil(start)), float(math.floor(end))
    summary = summarise(windows, start, end)
    failures = {kind: count for kind, count in sorted(summary.counts.items()) if kind != OK}
    record = StepRecord(
        index=0,
        offered_rps=None,
        served_rps=round(summary.served_rps, 3),
        ok=summary.ok,
        failed=summary.answered - summary.ok,
        failures=failures,
        p50_ms=summary.ok_p50_ms,
        p95_ms=summary.ok_p95_ms,
        p99_ms=summary.ok_p99_ms,
        max_ms=summary.ok_max_ms,
        refused_p95_ms=summary.refused_p95_ms,
        answered_rps=round(summary.answered_rps, 3),
        users=summary.users,
        started=start,
        ended=end,
    )
    reasons = objective_reasons(
        replace(objective, p99_ms=None), record.p95_ms, None, record.failure_ratio
    )
    if not ramp_complete:
        reasons.append(f"the generators never ran all {target} users")
    record.reasons, record.passed = reasons, not reasons
    return ClosedTrial(host.annotate(record, start, end), _timeline(windows), ramp_complete)
