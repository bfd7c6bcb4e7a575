"""A spike trial as one timeline: offered and served rate, 503 refusals, p95 and replicas over
time, and the times that say whether the autoscaler followed it.

Each step of the spike profile (loadtest/spike.py) is one point; the replicas come from the
engine, sampled about once a second while the load ran (`desired`: the service's spec, what the
autoscaler set; `running`: its running tasks), and the autoscaler's own decisions from its log.
Times are seconds from the jump (the first peak step's start):

- scale-up: the first sample after the jump with more replicas than at the start (desired, and
  running: Swarm counts a task running once its health check passed);
- objective met again: the start of the first peak step from which every peak step met the
  objective's p95 and failure share, 503s counted as failures (0 when none missed it; none when
  the last one still missed it: a p95 alone would count fast refusals as good answers);
- back to min: from the fall (the last peak step's end), the first sample with both desired and
  running back at the start count (none when the replicas never rose, or never came back);
- failures on the way down: failed and unsent requests in the steps after the peak.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:  # records.py holds a list of SpikeTimeline: no import back at run time
    from matrix.analyse.records import StepRecord, TrialRecord

REPLICAS_FILE = "replicas.csv"
DECISIONS_FILE = "autoscaler_decisions.jsonl"
REFUSED = "HTTP 503"
# Issue 20's bounds for an autoscaled spike: up within 30 s of the jump, p95 within the
# objective within 60 s of it, back to the minimum within the stabilisation window + 30 s of
# the fall, and no failure on the way down.
SCALE_UP_WITHIN_S = 30.0
OBJECTIVE_BACK_WITHIN_S = 60.0
BACK_TO_MIN_MARGIN_S = 30.0
# The autoscaler's settings kept with the timeline (the names of its AUTOSCALE_* variables).
AUTOSCALER_SETTINGS = (
    "AUTOSCALE_MIN_REPLICAS",
    "AUTOSCALE_MAX_REPLICAS",
    "AUTOSCALE_TARGET_RPS_PER_REPLICA",
    "AUTOSCALE_STABILISATION_S",
    "AUTOSCALE_COOLDOWN_S",
    "AUTOSCALE_INTERVAL_S",
    "AUTOSCALE_RATE_WINDOW_S",
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ReplicaSample(_Model):
    at: float  # epoch seconds
    desired: int
    running: int


class AutoscalerDecision(_Model):
    """One line of the autoscaler's decision log (autoscaler/loop.py)."""

    at: float
    current: int
    desired: int
    applied: int
    code: str
    reason: str = ""
    rps: float | None = None
    refused_rps: float | None = None
    s: float = 0.0  # seconds from the jump, once placed on a timeline


class SpikePoint(_Model):
    """One step, its times in seconds from the jump."""

    index: int
    phase: str  # base, peak, after
    start_s: float
    end_s: float
    offered_rps: float | None
    served_rps: float
    refused_rps: float  # 503 answers per second of the step
    other_failures: int  # failures that are not 503s: timeouts, connection errors, 5xx
    dropped: int
    p95_ms: float | None
    failure_ratio: float  # failed of answered, 503s included


class SpikeTimeline(_Model):
    trial: int
    autoscale: str
    objective_p95_ms: float
    max_failure_ratio: float
    start_replicas: int
    points: list[SpikePoint]
    replicas: list[tuple[float, int, int]]  # (s from the jump, desired, running)
    decisions: list[AutoscalerDecision] = []
    peak_s: float  # the last peak step's end, from the jump: when the load fell
    scale_up_s: float | None
    scale_up_running_s: float | None
    max_replicas: int
    back_within_s: float | None  # the objective met again, from the jump
    back_to_min_s: float | None  # from the fall
    refused_in_peak: int
    failures_down: int  # failed or unsent after the peak, 503s included
    host_cpu_peak: float | None  # mean share of the host's CPU over the peak steps
    autoscaler: dict[str, str] = {}  # its AUTOSCALE_* settings, for an autoscaled cell

    @property
    def stabilisation_s(self) -> float | None:
        value = self.autoscaler.get("AUTOSCALE_STABILISATION_S")
        return float(value) if value else None

    @property
    def peak_points(self) -> list[SpikePoint]:
        return [p for p in self.points if p.phase == "peak"]

    @property
    def peak_rate(self) -> float | None:
        """The peak steps' offered rate (the mean, should they differ)."""
        rates = [p.offered_rps for p in self.peak_points if p.offered_rps]
        return statistics.fmean(rates) if rates else None

    def peak_arrival_share(self, step_seconds: float) -> float | None:
        """The share of the peak's wall time that had arrivals: each step sends for
        `step_seconds`, then the generators report and the next step starts, about a second
        without load in between. The offered rate averaged this share of the step's rate."""
        if self.peak_s <= 0:
            return None
        return min(1.0, len(self.peak_points) * step_seconds / self.peak_s)

    def peak_offered_mean(self, step_seconds: float) -> float | None:
        """The peak's offered rate averaged over its wall time, gaps included."""
        share, rate = self.peak_arrival_share(step_seconds), self.peak_rate
        return None if share is None or rate is None else share * rate

    def checks(self, host_saturation: float) -> list[tuple[str, str, bool]]:
        """Issue 20's bounds against this timeline: (what, measured, met)."""

        def seconds(value: float | None) -> str:
            return "never" if value is None else f"{value:.0f} s"

        within = f"{seconds(self.back_within_s)} after the jump"
        if self.back_within_s is None and (self.host_cpu_peak or 0.0) > host_saturation:
            within += (
                f"; the host was the limit (its CPU {self.host_cpu_peak:.0%} busy in the peak)"
            )
        allowed = (self.stabilisation_s or 0.0) + BACK_TO_MIN_MARGIN_S
        up = self.scale_up_s
        back = self.back_to_min_s
        return [
            (
                f"{self.start_replicas} -> {self.start_replicas + 1}+ replicas "
                f"within {SCALE_UP_WITHIN_S:.0f} s of the jump",
                f"{seconds(up)} (running: {seconds(self.scale_up_running_s)})",
                up is not None and up <= SCALE_UP_WITHIN_S,
            ),
            (
                f"p95 <= {self.objective_p95_ms:g} ms and failures <= "
                f"{self.max_failure_ratio:.0%} again within {OBJECTIVE_BACK_WITHIN_S:.0f} s",
                within,
                self.back_within_s is not None and self.back_within_s <= OBJECTIVE_BACK_WITHIN_S,
            ),
            (
                f"back to {self.start_replicas} within the stabilisation window + "
                f"{BACK_TO_MIN_MARGIN_S:.0f} s ({allowed:.0f} s) of the fall",
                f"{seconds(back)} after the fall",
                back is not None and back <= allowed,
            ),
            (
                "no failed or unsent request on the way down",
                f"{self.failures_down}",
                self.failures_down == 0,
            ),
        ]

    @property
    def changes(self) -> list[AutoscalerDecision]:
        """The decisions that changed the replicas, or held for want of figures."""
        return [d for d in self.decisions if d.applied != d.current or d.code == "hold_no_data"]


def read_replicas(path: Path) -> list[ReplicaSample]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return [
            ReplicaSample(
                at=float(row["at"]), desired=int(row["desired"]), running=int(row["running"])
            )
            for row in csv.DictReader(handle)
        ]


def parse_decisions(lines: Iterable[str]) -> list[AutoscalerDecision]:
    """The decision records among the autoscaler's log lines (each holds one JSON object after
    the logger's prefix); other lines and records without a time are left out."""
    decisions = []
    for line in lines:
        start = line.find("{")
        if start < 0:
            continue
        try:
            record = json.loads(line[start:])
        except ValueError:
            continue
        if isinstance(record, dict) and "at" in record and "code" in record:
            decisions.append(AutoscalerDecision.model_validate(record))
    return sorted(decisions, key=lambda d: d.at)


def _point(step: StepRecord, phase: str, origin: float) -> SpikePoint:
    window = max(step.ended - step.started, 1e-9)
    refused = step.failures.get(REFUSED, 0)
    return SpikePoint(
        index=step.index,
        phase=phase,
        start_s=round(step.started - origin, 3),
        end_s=round(step.ended - origin, 3),
        offered_rps=step.offered_rps,
        served_rps=step.served_rps,
        refused_rps=round(refused / window, 3),
        other_failures=step.failed - refused,
        dropped=step.dropped,
        p95_ms=step.p95_ms,
        failure_ratio=round(step.failure_ratio, 4),
    )


def _first(samples: Sequence[ReplicaSample], after: float, test: str, count: int) -> float | None:
    for sample in samples:
        if sample.at < after:
            continue
        value = sample.desired if test == "desired" else sample.running
        if value > count:
            return round(sample.at - after, 3)
    return None


def back_within_s(
    peak: Sequence[SpikePoint], objective_ms: float, max_failure_ratio: float
) -> float | None:
    """The start of the first peak step from which every peak step met the objective."""
    back: float | None = None
    for point in peak:
        within = (
            point.p95_ms is not None
            and point.p95_ms <= objective_ms
            and point.failure_ratio <= max_failure_ratio
        )
        if not within:
            back = None
        elif back is None:
            back = point.start_s
    return back


def spike_timeline(
    trial: TrialRecord,
    counts: tuple[int, int, int],
    samples: Sequence[ReplicaSample],
    decisions: Sequence[AutoscalerDecision],
    objective_p95_ms: float,
    max_failure_ratio: float,
    autoscale: str,
    autoscaler: dict[str, str],
    until: float = math.inf,
) -> SpikeTimeline:
    """The timeline of one spike trial; `counts` are its lead, peak and tail steps. Replica
    samples and decisions count from 5 s before its first step until `until` (the next trial's
    start): the way back to the minimum may end after the load did."""
    lead, peak_steps, _tail = counts
    steps = sorted(trial.steps, key=lambda s: s.index)
    if len(steps) < lead + peak_steps:
        raise ValueError(f"a spike of {lead + peak_steps}+ steps recorded only {len(steps)}")
    origin = steps[lead].started
    phases = ["base"] * lead + ["peak"] * peak_steps
    points = [
        _point(step, phases[i] if i < len(phases) else "after", origin)
        for i, step in enumerate(steps)
    ]
    peak = [p for p in points if p.phase == "peak"]
    after = [s for s, p in zip(steps, points, strict=True) if p.phase == "after"]
    fall = steps[lead + peak_steps - 1].ended
    first, last = steps[0].started - 5.0, until
    in_window = [s for s in samples if first <= s.at <= last]
    before_jump = [s for s in in_window if s.at <= origin]
    start = before_jump[-1].desired if before_jump else (in_window[0].desired if in_window else 0)
    after_jump = [s for s in in_window if s.at >= origin]
    rose = any(s.desired > start or s.running > start for s in after_jump)
    back_to_min = None
    if rose:
        for sample in in_window:
            if sample.at >= fall and sample.desired <= start and sample.running <= start:
                back_to_min = round(sample.at - fall, 3)
                break
    peak_records = steps[lead : lead + peak_steps]
    cpu = [s.host_cpu_share for s in peak_records if s.host_cpu_share is not None]
    return SpikeTimeline(
        trial=trial.trial,
        autoscale=autoscale,
        objective_p95_ms=objective_p95_ms,
        max_failure_ratio=max_failure_ratio,
        start_replicas=start,
        points=points,
        replicas=[(round(s.at - origin, 3), s.desired, s.running) for s in in_window],
        decisions=[
            d.model_copy(update={"s": round(d.at - origin, 1)})
            for d in decisions
            if first <= d.at <= last
        ],
        peak_s=round(fall - origin, 3),
        scale_up_s=_first(in_window, origin, "desired", start),
        scale_up_running_s=_first(in_window, origin, "running", start),
        max_replicas=max((max(s.desired, s.running) for s in after_jump), default=start),
        back_within_s=back_within_s(peak, objective_p95_ms, max_failure_ratio),
        back_to_min_s=back_to_min,
        refused_in_peak=sum(s.failures.get(REFUSED, 0) for s in peak_records),
        failures_down=sum(s.failed + s.dropped for s in after),
        host_cpu_peak=round(statistics.fmean(cpu), 3) if cpu else None,
        autoscaler=autoscaler,
    )
