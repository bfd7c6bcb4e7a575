"""A soak trial minute by minute: one arrival rate held for a long time, and whether the service
changed under it. Each step of the soak profile is one sample (a minute by default); beside its
latency and errors come the api containers' memory (docker_stats.csv) and the containers that
appeared during it (a replica restarted). Two trends are flagged: memory growing (the slope of a
least-squares line through the per-minute means, in MB per 10 minutes) and p95 drifting (the
median p95 of the last third of the minutes over that of the first third)."""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:  # records.py holds a list of SoakSummary: no import back at run time
    from matrix.analyse.records import StepRecord, TrialRecord
    from matrix.config import SoakProfile

MB = 1024**2
SLOPE_MINUTES = 10.0  # the memory slope is given per this many minutes


class SoakMinute(BaseModel):
    """One sample of a soak: a step of the held rate."""

    model_config = ConfigDict(extra="ignore")

    index: int
    start_s: float  # since the soak's first step began
    offered_rps: float | None
    served_rps: float
    p95_ms: float | None
    errors: int  # failed requests: HTTP errors, timeouts, connection errors
    dropped: int  # not sent: the generator's in-flight limit was reached
    memory_mb: float | None  # all api containers together, mean over the step's samples
    restarts: int  # api containers first seen during this step
    passed: bool


class SoakSummary(BaseModel):
    model_config = ConfigDict(extra="ignore")

    trial: int
    rate_rps: float | None
    minutes: list[SoakMinute]
    step_seconds: float
    memory_slope_mb_per_10min: float | None
    max_memory_slope_mb_per_10min: float
    p95_first_ms: float | None
    p95_last_ms: float | None
    p95_drift: float | None  # last third's median p95 / first third's
    max_p95_drift: float
    flags: list[str]

    @property
    def restarts(self) -> int:
        return sum(m.restarts for m in self.minutes)

    @property
    def errors(self) -> int:
        return sum(m.errors for m in self.minutes)

    @property
    def failed_minutes(self) -> int:
        return sum(not m.passed for m in self.minutes)


@dataclass(frozen=True)
class _Sample:
    when: float
    container: str
    mem_bytes: int


def read_memory_samples(path: Path) -> list[_Sample]:
    """Each row of docker_stats.csv (stack/docker_stats.py) as (time, container, memory)."""
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return [
            _Sample(float(row["timestamp"]), row["container"], int(row["mem_bytes"]))
            for row in csv.DictReader(handle)
        ]


def least_squares_slope(points: Sequence[tuple[float, float]]) -> float | None:
    """The slope of the least-squares line through (x, y) points; None below two distinct x."""
    if len({x for x, _ in points}) < 2:
        return None
    return statistics.linear_regression([x for x, _ in points], [y for _, y in points]).slope


def _memory_mb(samples: Sequence[_Sample], start: float, end: float) -> float | None:
    """Mean over the sampling instants in [start, end] of all containers' memory together."""
    totals: dict[float, int] = defaultdict(int)
    for sample in samples:
        if start <= sample.when <= end:
            totals[sample.when] += sample.mem_bytes
    if not totals:
        return None
    return round(statistics.fmean(totals.values()) / MB, 2)


def _restarts_per_step(samples: Sequence[_Sample], steps: Sequence[StepRecord]) -> list[int]:
    """Containers first seen after the first sampling instant, each counted in the last step
    that had begun by then (a replacement task's container appears after its start)."""
    counts = [0] * len(steps)
    if not samples or not steps:
        return counts
    first_instant = min(s.when for s in samples)
    first_seen: dict[str, float] = {}
    for sample in sorted(samples, key=lambda s: s.when):
        first_seen.setdefault(sample.container, sample.when)
    for when in first_seen.values():
        if when <= first_instant:
            continue
        begun = [i for i, step in enumerate(steps) if step.started <= when]
        if begun:
            counts[begun[-1]] += 1
    return counts


def _drift(p95s: Sequence[float]) -> tuple[float | None, float | None, float | None]:
    """The median p95 of the first and last third of the minutes, and their ratio."""
    if len(p95s) < 2:
        return None, None, None
    third = max(1, len(p95s) // 3)
    first = statistics.median(p95s[:third])
    last = statistics.median(p95s[-third:])
    ratio = round(last / first, 3) if first > 0 else None
    return round(first, 3), round(last, 3), ratio


def soak_summary(trial: TrialRecord, docker_stats: Path, profile: SoakProfile) -> SoakSummary:
    """The soak trial's per-minute rows, its memory slope and p95 drift, and what is flagged."""
    samples = read_memory_samples(docker_stats)
    steps = sorted(trial.steps, key=lambda s: s.index)
    restarts = _restarts_per_step(samples, steps)
    origin = steps[0].started if steps else 0.0
    minutes = [
        SoakMinute(
            index=step.index,
            start_s=round(step.started - origin, 1),
            offered_rps=step.offered_rps,
            served_rps=step.served_rps,
            p95_ms=step.p95_ms,
            errors=step.failed,
            dropped=step.dropped,
            memory_mb=_memory_mb(samples, step.started, step.ended),
            restarts=restarts[position],
            passed=step.passed,
        )
        for position, step in enumerate(steps)
    ]
    per_minute = least_squares_slope(
        [
            ((m.start_s + profile.step_seconds / 2) / 60.0, m.memory_mb)
            for m in minutes
            if m.memory_mb is not None
        ]
    )
    slope = None if per_minute is None else round(per_minute * SLOPE_MINUTES, 3)
    first, last, drift = _drift([m.p95_ms for m in minutes if m.p95_ms is not None])
    summary = SoakSummary(
        trial=trial.trial,
        rate_rps=steps[0].offered_rps if steps else None,
        minutes=minutes,
        step_seconds=profile.step_seconds,
        memory_slope_mb_per_10min=slope,
        max_memory_slope_mb_per_10min=profile.max_memory_slope_mb_per_10min,
        p95_first_ms=first,
        p95_last_ms=last,
        p95_drift=drift,
        max_p95_drift=profile.max_p95_drift,
        flags=[],
    )
    summary.flags = soak_flags(summary)
    return summary


def soak_flags(summary: SoakSummary) -> list[str]:
    """What a reader of the soak must look at; empty when the service held steady."""
    flags = []
    slope, limit = summary.memory_slope_mb_per_10min, summary.max_memory_slope_mb_per_10min
    if slope is not None and slope > limit:
        flags.append(f"memory grows {slope:.1f} MB per 10 min (flagged above {limit:g})")
    if slope is None:
        flags.append("no memory samples: the memory trend is unknown")
    drift = summary.p95_drift
    if drift is not None and drift > summary.max_p95_drift:
        flags.append(
            f"p95 drifted from {summary.p95_first_ms:g} to {summary.p95_last_ms:g} ms "
            f"(x{drift:.2f}, flagged above x{summary.max_p95_drift:g})"
        )
    if summary.restarts:
        flags.append(f"{summary.restarts} api container(s) restarted")
    if summary.failed_minutes:
        flags.append(
            f"{summary.failed_minutes} of {len(summary.minutes)} samples missed the objective"
        )
    return flags
