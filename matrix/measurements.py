"""Reads what one cell recorded (Locust CSVs, the step log, CPU samples) and turns it into
per-step figures: offered and achieved rate, p95, failures, load generator CPU."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from matrix.config import Objective

# Locust's "current" percentiles in the history cover roughly the last 10 s.
LOCUST_PERCENTILE_WINDOW_S = 10.0
# Users join at a step boundary and workers report every second: skip that edge for rates.
STEP_SETTLE_S = 2.0


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
class StepWindow:
    index: int
    start: float  # unix seconds
    end: float
    users: int
    rate_rps: float | None


@dataclass(frozen=True)
class CpuSample:
    """One load generator sample: CPU of its processes in % of one core, and the host's."""

    timestamp: float
    total_percent: float
    max_process_percent: float
    host_percent: float


@dataclass
class StepMetrics:
    index: int
    rate_rps: float | None
    users: int
    start: float
    end: float
    requests: int
    failures: int
    throughput_rps: float
    failure_ratio: float
    p50_ms: float | None
    p95_ms: float | None
    loadgen_cpu_share: float | None = None  # of the cores the generator may use
    loadgen_max_process_share: float | None = None  # busiest single process, of one core
    host_cpu_share: float | None = None
    loadgen_saturated: bool = False
    meets_objective: bool = False
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


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


def throughput_series(history: Sequence[HistoryRow], span: int = 3) -> list[tuple[float, float]]:
    """(timestamp, req/s) from the cumulative request count over `span` history rows. The
    history's own Requests/s column is smoothed by the master and lags; single rows jitter with
    the phase between worker reports and the writer."""
    period = _writer_period(history)
    return [
        (history[i].timestamp,
         (history[i].total_requests - history[i - span].total_requests) / (span * period))
        for i in range(span, len(history))
    ]


def read_request_counts(path: Path) -> dict[str, tuple[int, int]]:
    """Per request name of a Locust *_stats.csv: (requests, failures); 'Aggregated' included."""
    counts: dict[str, tuple[int, int]] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for record in csv.DictReader(handle):
            counts[record["Name"]] = (int(record["Request Count"]), int(record["Failure Count"]))
    return counts


def read_step_log(path: Path, history: Sequence[HistoryRow]) -> list[StepWindow]:
    """Step windows from the locustfile's --step-log; one step over the history without it."""
    events: list[dict[str, object]] = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            event = json.loads(line)
            # Locust restarts the shape's clock when the first users spawn, so the first step
            # may be logged twice; the later entry carries the true start.
            if (events and event.get("event") == "step" and events[-1].get("event") == "step"
                    and events[-1].get("index") == event.get("index")):
                events[-1] = event
            else:
                events.append(event)
    if not events:
        if not history:
            return []
        return [StepWindow(0, history[0].timestamp, history[-1].timestamp,
                           max(row.users for row in history), None)]
    last_time = history[-1].timestamp if history else float(events[-1]["time"])  # type: ignore[arg-type]
    windows: list[StepWindow] = []
    for position, event in enumerate(events):
        if event.get("event") != "step":
            continue
        following = events[position + 1] if position + 1 < len(events) else None
        end = float(following["time"]) if following else last_time  # type: ignore[arg-type]
        rate = event.get("rate_rps")
        windows.append(StepWindow(
            index=int(event["index"]),  # type: ignore[call-overload]
            start=float(event["time"]),  # type: ignore[arg-type]
            end=end,
            users=int(event["users"]),  # type: ignore[call-overload]
            rate_rps=float(rate) if rate is not None else None,  # type: ignore[arg-type]
        ))
    return windows


def read_cpu_samples(path: Path) -> list[CpuSample]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return [
            CpuSample(float(r["timestamp"]), float(r["total_percent"]),
                      float(r["max_process_percent"]), float(r["host_percent"]))
            for r in csv.DictReader(handle)
        ]


def _writer_period(history: Sequence[HistoryRow]) -> float:
    """Seconds between history rows. Locust writes one row per ~1 s tick but stamps it with the
    truncated second, so single gaps read as 0 or 2 s; the whole file's average is exact."""
    if len(history) < 2 or history[-1].timestamp <= history[0].timestamp:
        return 1.0
    return (history[-1].timestamp - history[0].timestamp) / (len(history) - 1)


def _rows_between(history: Sequence[HistoryRow], start: float, end: float
                  ) -> tuple[int, int] | None:
    """Indexes of the first and last history rows stamped inside [start, end]."""
    inside = [i for i, row in enumerate(history) if start <= row.timestamp <= end]
    return (inside[0], inside[-1]) if len(inside) >= 2 else None


def step_metrics(
    history: Sequence[HistoryRow],
    windows: Sequence[StepWindow],
    objective: Objective,
    cpu_samples: Sequence[CpuSample] = (),
    loadgen_cores: float = 1.0,
    saturation: float = 0.9,
) -> list[StepMetrics]:
    """Per-step rates, latency and failures, judged against the objective."""
    results: list[StepMetrics] = []
    period = _writer_period(history)
    for window in windows:
        settle = min(STEP_SETTLE_S, (window.end - window.start) / 3)
        span = _rows_between(history, window.start + settle, window.end)
        requests = failures = 0
        throughput = 0.0
        if span:
            first, last = history[span[0]], history[span[1]]
            requests = last.total_requests - first.total_requests
            failures = last.total_failures - first.total_failures
            throughput = requests / ((span[1] - span[0]) * period)
        inside = [r for r in history if window.start <= r.timestamp <= window.end]
        # Prefer rows whose 10 s percentile window lies inside this step.
        settled = [r for r in inside
                   if r.timestamp >= window.start + min(LOCUST_PERCENTILE_WINDOW_S,
                                                         (window.end - window.start) / 2)]
        p95s = [r.p95_ms for r in (settled or inside[-1:]) if r.p95_ms is not None]
        p50s = [r.p50_ms for r in (settled or inside[-1:]) if r.p50_ms is not None]
        metrics = StepMetrics(
            index=window.index, rate_rps=window.rate_rps, users=window.users,
            start=window.start, end=window.end, requests=requests, failures=failures,
            throughput_rps=round(throughput, 3),
            failure_ratio=round(failures / requests, 6) if requests else 0.0,
            p50_ms=max(p50s) if p50s else None, p95_ms=max(p95s) if p95s else None,
        )
        samples = [s for s in cpu_samples if window.start + settle <= s.timestamp <= window.end]
        if samples:
            metrics.loadgen_cpu_share = round(
                sum(s.total_percent for s in samples) / len(samples) / (100.0 * loadgen_cores), 4)
            metrics.loadgen_max_process_share = round(
                sum(s.max_process_percent for s in samples) / len(samples) / 100.0, 4)
            metrics.host_cpu_share = round(
                sum(s.host_percent for s in samples) / len(samples) / 100.0, 4)
            metrics.loadgen_saturated = (metrics.loadgen_cpu_share > saturation
                                         or metrics.loadgen_max_process_share > saturation)
        judge(metrics, objective)
        results.append(metrics)
    return results


def judge(metrics: StepMetrics, objective: Objective) -> None:
    """Sets meets_objective and the reasons it failed."""
    reasons: list[str] = []
    if metrics.requests <= 0:
        reasons.append("no requests completed")
    if metrics.p95_ms is None or metrics.p95_ms > objective.p95_ms:
        reasons.append(f"p95 {metrics.p95_ms} ms > {objective.p95_ms:g} ms")
    if metrics.failure_ratio > objective.max_failure_ratio:
        reasons.append(f"failures {metrics.failure_ratio:.2%} > {objective.max_failure_ratio:.2%}")
    wanted = objective.min_throughput_ratio * (metrics.rate_rps or 0.0)
    if metrics.rate_rps and metrics.throughput_rps < wanted:
        reasons.append(f"served {metrics.throughput_rps:.1f} of {metrics.rate_rps:g} req/s offered")
    metrics.reasons = reasons
    metrics.meets_objective = not reasons


def knee(steps: Sequence[StepMetrics]) -> StepMetrics | None:
    """The last step of the unbroken run of passing steps from the start: the highest arrival
    rate the configuration served within the objective. A lucky pass after a failure does not
    count, because the service had already broken at a lower rate."""
    best = None
    for step in sorted(steps, key=lambda s: s.index):
        if not step.meets_objective:
            break
        best = step
    return best


def served_rate(step: StepMetrics) -> float:
    """The rate a passing step stands for: the offered rate in a staircase, else the achieved."""
    return step.rate_rps if step.rate_rps is not None else step.throughput_rps
