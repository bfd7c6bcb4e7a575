"""Typed records of a run, from the measurement to the report: a cell holds its trials, a trial
its steps. Saved as cell.json (pydantic round-trips them with their types), read back for the
report, rendered by the templates in matrix/report/templates/."""

from __future__ import annotations

import statistics
from typing import Literal

from pydantic import BaseModel, ConfigDict

from matrix.analyse.confidence import Interval, knee_interval
from matrix.analyse.soak import SoakSummary
from matrix.analyse.spike import SpikeTimeline
from matrix.measure.prometheus import ServerFigures


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore")


class StepRecord(_Record):
    """One step of constant offered rate (or, for a closed-model profile, the whole hold)."""

    index: int
    offered_rps: float | None  # None: closed model (users, not a rate)
    served_rps: float
    scheduled: int = 0
    sent: int = 0
    late: int = 0
    dropped: int = 0
    ok: int = 0
    failed: int = 0
    failures: dict[str, int] = {}
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    service_p95_ms: float | None = None  # from the actual send, not the intended one
    passed: bool = False
    generator_limited: bool = False
    reasons: list[str] = []
    started: float = 0.0
    ended: float = 0.0
    # The wait before this step for the last one's backlog to go (loadtest/drain.py): proven
    # by the drain probe (True), cut by its timeout (drain_timed_out), or a pause the master
    # estimated without a probe (None).
    drain_wait_s: float = 0.0
    drain_proven: bool | None = None
    drain_timed_out: bool = False
    # The knee rate held for longer after the search converged (profile confirm_seconds).
    confirmation: bool = False
    # Host-side figures over the same window.
    loadgen_cpu_share: float | None = None  # of the cores the generator may use
    loadgen_max_process_share: float | None = None  # busiest process, of one core
    host_cpu_share: float | None = None
    loadgen_saturated: bool = False
    api_cpu_cores: float | None = None  # all api containers, from their cgroups
    throttled_share: float | None = None  # of CFS periods, all api containers
    throttled_ms_per_s: float | None = None  # per api container
    # Service demand over exactly the step's measured window (matrix/measure/measurements.py,
    # HostWindows.demand): CPU-us per successful answer completed in it. All api replicas
    # together (their idle CPU not subtracted), the same divided by the replicas (so a
    # replica's utilisation is the served rate x this / its CPU limit), the Nginx container's,
    # and the load generator's processes'. None where the counters were not recorded.
    demand_us_per_request: float | None = None
    demand_us_per_request_per_replica: float | None = None
    nginx_us_per_request: float | None = None
    loadgen_us_per_request: float | None = None
    # Closed model (workshop): p50-max above are of successful answers only; refusals apart.
    refused_p95_ms: float | None = None
    answered_rps: float | None = None  # every answer, refusals and errors included
    users: int | None = None
    # The replicas' own view of the same window, from the stack's Prometheus
    # (matrix/measure/prometheus.py); None when there was none to ask.
    server: ServerFigures | None = None

    @property
    def late_ratio(self) -> float:
        return self.late / self.scheduled if self.scheduled else 0.0

    @property
    def failure_ratio(self) -> float:
        done = self.ok + self.failed
        return self.failed / done if done else 0.0


class TimelinePoint(_Record):
    """One second of a closed-model trial, every generator together."""

    second: int
    users: int
    ok: int
    refused: int
    other_failures: int
    ok_p95_ms: float | None = None


class TrialRecord(_Record):
    trial: int
    model: Literal["open", "closed"] = "open"
    outcome: str  # why the search ended (converged, generator-limited, ceiling, ...)
    steps: list[StepRecord]
    knee_index: int | None = None
    locust_exit_code: int | None = None
    requests: int = 0
    failures: int = 0
    # Closed model: the whole run second by second (ramp, hold, end), for the plots.
    timeline: list[TimelinePoint] = []
    where: Literal["host", "stack"] = "host"

    @property
    def knee(self) -> StepRecord | None:
        return next((s for s in self.steps if s.index == self.knee_index), None)

    @property
    def knee_rps(self) -> float | None:
        """The served rate at the highest passing step: what the cell delivered."""
        knee = self.knee
        return knee.served_rps if knee else None

    @property
    def max_served_rps(self) -> float:
        return max((s.served_rps for s in self.steps), default=0.0)

    @property
    def generator_limited(self) -> bool:
        return self.outcome == "generator-limited" or any(
            s.loadgen_saturated and not s.passed for s in self.steps
        )

    @property
    def bracket_share(self) -> float | None:
        """How far above the knee's offered rate the lowest failing rate above it lies (0.05:
        5 %): the trial located its knee no closer than that. None without a knee or a failure
        above it (a ceiling)."""
        knee = self.knee
        if knee is None or not knee.offered_rps:
            return None
        above = [
            s.offered_rps
            for s in self.steps
            if not s.passed
            and not s.generator_limited
            and s.offered_rps is not None
            and s.offered_rps > knee.offered_rps
        ]
        return min(above) / knee.offered_rps - 1.0 if above else None

    @property
    def breaking(self) -> StepRecord | None:
        """The lowest-rate step that failed (the search bisected below it)."""
        failed = [s for s in self.steps if not s.passed and not s.generator_limited]
        return min(failed, key=lambda s: s.offered_rps or 0.0, default=None)


class CellRecord(_Record):
    cell_id: str
    replicas: int
    cpus: float
    memory: str
    memory_bytes: int
    total_cpus: float
    status: Literal["measured", "failed"] = "failed"
    error: str | None = None
    started: str = ""
    finished: str = ""
    reserved: bool = True
    warmup_requests: int | None = None
    trials: list[TrialRecord] = []
    restarts: int = 0
    oom_kills: int = 0
    api_cpu_mean_cores: float | None = None
    api_cpu_peak_cores: float | None = None
    api_mem_peak_mb: float | None = None
    # The api containers with no load, after the warm-up drained and before the first step
    # (matrix/measure/idle.py): CPU in cores and throttled CFS periods per second, all together.
    idle_cpu_cores: float | None = None
    idle_throttled_per_s: float | None = None
    nginx_requests: int | None = None
    # api tasks per node hostname once the cell converged; on the local cluster (`--cluster`)
    # also each node's mean CPU (cores, its whole cgroup) over the cell's trials.
    placement: dict[str, int] = {}
    node_cpu_mean_cores: dict[str, float] = {}
    config_id: str = ""
    admission: str = "stack"
    admission_limit: int | None = None  # in-flight per replica applied to Nginx; 0: off
    observation: str = ""
    # The open-model search run before the cell's own load (search_first), or a sibling's.
    reference: TrialRecord | None = None
    # A soak profile: each trial minute by minute, with its trends (matrix/analyse/soak.py).
    soak: list[SoakSummary] = []
    # Why no further trial ran (adaptive trials): converged, max trials, budget; "" otherwise.
    trials_ended: str = ""
    # The closed-loop run after the trials (matrix file's closed_loop), for the comparison.
    closed_loop: TrialRecord | None = None
    # A target without the penguin service's metrics: why the server-side figures are absent
    # (matrix/measure/prometheus.py target_metrics_note); None when they were read.
    server_metrics: str | None = None
    # A spike profile: each trial's timeline, with its times (matrix/analyse/spike.py).
    spike: list[SpikeTimeline] = []
    autoscale: str = "stack"

    @property
    def knees(self) -> list[float]:
        """Each trial's knee; a trial without a passing step counts as 0."""
        return [t.knee_rps or 0.0 for t in self.trials]

    @property
    def knee_low(self) -> float | None:
        return min(self.knees) if self.trials else None

    @property
    def knee_high(self) -> float | None:
        return max(self.knees) if self.trials else None

    @property
    def knee_median(self) -> float | None:
        return statistics.median(self.knees) if self.trials else None

    @property
    def lowest_trial(self) -> TrialRecord | None:
        return min(self.trials, key=lambda t: t.knee_rps or 0.0, default=None)

    @property
    def max_served_rps(self) -> float:
        return max((t.max_served_rps for t in self.trials), default=0.0)

    @property
    def generator_limited(self) -> bool:
        return any(t.generator_limited for t in self.trials)

    @property
    def requests(self) -> int:
        return sum(t.requests for t in self.trials)

    @property
    def failures(self) -> int:
        return sum(t.failures for t in self.trials)

    @property
    def failure_ratio(self) -> float | None:
        return self.failures / self.requests if self.requests else None

    @property
    def reference_knee(self) -> float | None:
        return self.reference.knee_rps if self.reference is not None else None

    @property
    def knee_ci(self) -> Interval | None:
        """The 95 % interval of the knee over the trials (matrix/analyse/confidence.py); None
        with one trial or a trial that served nothing."""
        return knee_interval(self.knees, self.knee_resolution)

    @property
    def knee_resolution(self) -> float:
        """The median of the trials' bracket shares (TrialRecord.bracket_share): how closely
        a trial locates its knee, the floor of the knee's interval; 0 without any."""
        shares = [s for t in self.trials if (s := t.bracket_share) is not None]
        return statistics.median(shares) if shares else 0.0

    @property
    def knee_floor(self) -> float | None:
        """What the cell can be relied on to serve: the interval's low end, or without an
        interval the lowest trial."""
        interval = self.knee_ci
        return interval.low if interval is not None else self.knee_low

    @property
    def knee_demand_us(self) -> float | None:
        """CPU-µs per request at the knee step, the median over the trials that have it."""
        values = [
            t.knee.demand_us_per_request
            for t in self.trials
            if t.knee is not None and t.knee.demand_us_per_request is not None
        ]
        return statistics.median(values) if values else None
