"""Open-model load: arrival schedules, per-step recording into exact latency histograms, the step
verdict and the rate search.

Pure Python (no Locust, no gevent) so that three users share one implementation: the locustfile
drives it live (workers record, the master merges, judges and searches), the matrix re-reads the
recorded steps and recomputes every figure from the histograms, and the unit tests check it
against known answers.

Latency is measured from each request's *intended* send time, not from when it was actually
sent, so a generator that falls behind or a service that queues can never hide time (the
"coordinated omission" correction of wrk2 and HdrHistogram). Requests that could not be sent on
time are counted: `late` (sent more than `late_ms` after their intended time: the generator
could not keep its schedule) and `dropped` (not sent at all because `max_in_flight` requests
were already waiting for answers).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

OPEN_PROFILES = ("search", "staircase")
ARRIVALS = ("constant", "poisson")
# Histogram range: 1 us to 1 hour at 3 significant digits (0.1 % resolution at any value).
HIST_LOWEST_US = 1
HIST_HIGHEST_US = 3_600_000_000
HIST_DIGITS = 3
STEP_MESSAGE = "penguin_step"
# The counters each generator reports per step, summed over generators.
COUNTS = ("scheduled", "sent", "late", "dropped", "ok", "failed", "served")
STATS_MESSAGE = "penguin_step_stats"
# Every open-model request carries the wall-clock time (Unix seconds) it was scheduled to go
# out, so a server can time it from the same instant the load test's reported latency starts
# (the known-capacity test server does; the API ignores it).
SCHEDULED_HEADER = "X-Scheduled-Send"


def new_histogram() -> HdrHistogram:
    return HdrHistogram(HIST_LOWEST_US, HIST_HIGHEST_US, HIST_DIGITS)


def decode_histogram(encoded: str) -> HdrHistogram:
    histogram = new_histogram()
    if encoded:
        histogram.decode_and_add(encoded.encode("ascii"))
    return histogram


def percentile_ms(histogram: HdrHistogram, percentile: float) -> float | None:
    if histogram.get_total_count() == 0:
        return None
    return round(float(histogram.get_value_at_percentile(percentile)) / 1000.0, 3)


def arrival_offsets(rate: float, duration: float, kind: str, rng: random.Random) -> Iterator[float]:
    """Intended send times, in seconds from the step's start, of a step of `rate` requests/s
    lasting `duration` s: evenly spaced (with a random phase, so several generators interleave)
    or a Poisson process (exponential gaps)."""
    if rate <= 0 or duration <= 0:
        return
    if kind == "constant":
        interval = 1.0 / rate
        offset = rng.uniform(0.0, interval)
        while offset < duration:
            yield offset
            offset += interval
    elif kind == "poisson":
        offset = rng.expovariate(rate)
        while offset < duration:
            yield offset
            offset += rng.expovariate(rate)
    else:
        raise ValueError(f"unknown arrival process {kind!r}; use one of {', '.join(ARRIVALS)}")


@dataclass(frozen=True)
class StepPlan:
    """What the master tells every generator for one step."""

    index: int
    rate: float  # requests/s offered in total
    rate_per_user: float
    duration_s: float
    settle_s: float  # excluded from every figure: the first moments after the rate changes
    arrival: str
    timeout_s: float
    late_ms: float
    max_in_flight: int

    def to_message(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_message(cls, data: dict[str, Any]) -> StepPlan:
        return cls(**data)


@dataclass
class StepRecorder:
    """One generator's record of one step. Only requests intended inside the measured window
    [settle, duration) count; `served` counts successes *completed* inside it (throughput).
    Two histograms: latency from the intended send time (what a user of an open system waits,
    the figure judged) and from the actual send time (what the service and network took; it
    tells a slow generator from a slow service)."""

    plan: StepPlan
    scheduled: int = 0
    sent: int = 0
    late: int = 0
    dropped: int = 0
    ok: int = 0
    failed: int = 0
    served: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    histogram: HdrHistogram = field(default_factory=new_histogram)
    service_histogram: HdrHistogram = field(default_factory=new_histogram)

    def measured(self, offset: float) -> bool:
        return self.plan.settle_s <= offset < self.plan.duration_s

    def arrival(self, offset: float, sent: bool) -> None:
        """An intended request: handed to a sender, or dropped (too many in flight)."""
        if not self.measured(offset):
            return
        self.scheduled += 1
        if sent:
            self.sent += 1
        else:
            self.dropped += 1

    def outcome(
        self,
        offset: float,
        lag_s: float,
        service_s: float,
        failure: str | None,
        completed_offset: float,
    ) -> None:
        """The answer (or failure) of a request sent `lag_s` after its intended time that took
        `service_s` from the actual send."""
        if failure is None and self.measured(completed_offset):
            self.served += 1
        if not self.measured(offset):
            return
        if lag_s * 1000.0 > self.plan.late_ms:
            self.late += 1
        self.histogram.record_value(_micros(lag_s + service_s))
        self.service_histogram.record_value(_micros(service_s))
        if failure is None:
            self.ok += 1
        else:
            self.failed += 1
            self.failures[failure] += 1

    def to_message(self) -> dict[str, Any]:
        return {
            "index": self.plan.index,
            "scheduled": self.scheduled,
            "sent": self.sent,
            "late": self.late,
            "dropped": self.dropped,
            "ok": self.ok,
            "failed": self.failed,
            "served": self.served,
            "failures": dict(self.failures),
            "histogram": _encode(self.histogram),
            "service_histogram": _encode(self.service_histogram),
        }


def _micros(seconds: float) -> int:
    return max(HIST_LOWEST_US, min(HIST_HIGHEST_US, round(seconds * 1e6)))


def _encode(histogram: HdrHistogram) -> str:
    return str(histogram.encode().decode("ascii"))


@dataclass
class StepResult:
    """One step, all generators merged: the record the master writes and the matrix reads."""

    index: int
    rate: float
    duration_s: float
    settle_s: float
    arrival: str
    generators: int
    expected_generators: int
    scheduled: int
    sent: int
    late: int
    dropped: int
    ok: int
    failed: int
    served: int
    failures: dict[str, int]
    histogram: str  # HdrHistogram's compressed base64 form, microseconds from intended send
    service_histogram: str  # the same from the actual send
    started: float = 0.0  # unix time the master started the step
    ended: float = 0.0  # unix time the master had every generator's report
    # How long the master waited before this step for the last one's backlog to go
    # (loadtest/drain.py): proven by the drain probe (True), its timeout ran out (False), or
    # no probe, a pause it estimated (None).
    drain_wait_s: float = 0.0
    drain_proven: bool | None = None
    drain_timed_out: bool = False
    # A confirmation step: the search's knee rate held for longer (RateSearch.confirm).
    confirmation: bool = False
    passed: bool = False
    generator_limited: bool = False
    reasons: list[str] = field(default_factory=list)

    @property
    def window_s(self) -> float:
        return max(self.duration_s - self.settle_s, 1e-9)

    @property
    def throughput_rps(self) -> float:
        """Successful answers per second completed inside the measured window."""
        return self.served / self.window_s

    @property
    def failure_ratio(self) -> float:
        done = self.ok + self.failed
        return self.failed / done if done else 0.0

    @property
    def completion_ratio(self) -> float:
        """Share of the scheduled requests answered successfully."""
        return self.ok / self.scheduled if self.scheduled else 0.0

    @property
    def late_ratio(self) -> float:
        """Share of the scheduled requests the generator could not send on time."""
        return self.late / self.scheduled if self.scheduled else 0.0

    def percentiles_ms(self, service: bool = False) -> dict[str, float | None]:
        """p50, p95, p99 and max in ms, from the intended send time (or the actual one)."""
        histogram = decode_histogram(self.service_histogram if service else self.histogram)
        figures = {f"p{p}": percentile_ms(histogram, p) for p in (50, 95, 99)}
        figures["max"] = (
            round(histogram.get_max_value() / 1000.0, 3) if histogram.get_total_count() else None
        )
        return figures

    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        record.update(
            self.percentiles_ms(),
            throughput_rps=round(self.throughput_rps, 3),
            service_p95=self.percentiles_ms(service=True)["p95"],
        )
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> StepResult:
        names = cls.__dataclass_fields__
        return cls(**{key: value for key, value in record.items() if key in names})


def merge_reports(
    plan: StepPlan, reports: Sequence[dict[str, Any]], expected_generators: int
) -> StepResult:
    """The step's figures over every generator's report."""
    histogram, service_histogram = new_histogram(), new_histogram()
    failures: Counter[str] = Counter()
    totals = dict.fromkeys(COUNTS, 0)
    for report in reports:
        for key in COUNTS:
            totals[key] += int(report[key])
        failures.update(report["failures"])
        histogram.decode_and_add(report["histogram"].encode("ascii"))
        service_histogram.decode_and_add(report["service_histogram"].encode("ascii"))
    return StepResult(
        index=plan.index,
        rate=plan.rate,
        duration_s=plan.duration_s,
        settle_s=plan.settle_s,
        arrival=plan.arrival,
        generators=len(reports),
        expected_generators=expected_generators,
        scheduled=totals["scheduled"],
        sent=totals["sent"],
        late=totals["late"],
        dropped=totals["dropped"],
        ok=totals["ok"],
        failed=totals["failed"],
        served=totals["served"],
        failures=dict(failures),
        histogram=_encode(histogram),
        service_histogram=_encode(service_histogram),
    )


@dataclass(frozen=True)
class Objective:
    """What a step must achieve to pass. Mirrors the matrix file's `objective` section."""

    p95_ms: float = 500.0
    p99_ms: float | None = None
    max_failure_ratio: float = 0.01
    min_completion_ratio: float = 0.99
    max_late_ratio: float = 0.01


def objective_reasons(
    objective: Objective,
    p95: float | None,
    p99: float | None,
    failure_ratio: float,
    basis: str = "",
) -> list[str]:
    """Why latency or failures miss the objective (empty: they meet it). Shared by the open-model
    judge and the matrix's record of a closed-model run."""
    reasons: list[str] = []
    if p95 is None or p95 > objective.p95_ms:
        reasons.append(f"p95 {p95} ms > {objective.p95_ms:g} ms{basis}")
    if objective.p99_ms is not None and (p99 is None or p99 > objective.p99_ms):
        reasons.append(f"p99 {p99} ms > {objective.p99_ms:g} ms{basis}")
    if failure_ratio > objective.max_failure_ratio:
        reasons.append(f"failures {failure_ratio:.2%} > {objective.max_failure_ratio:.2%}")
    return reasons


def _service_reasons(step: StepResult, objective: Objective, service: bool) -> list[str]:
    figures = step.percentiles_ms(service=service)
    reasons = ["no request scheduled in the measured window"] if step.scheduled == 0 else []
    reasons += objective_reasons(
        objective,
        figures["p95"],
        figures["p99"],
        step.failure_ratio,
        " (from the actual send)" if service else "",
    )
    if step.completion_ratio < objective.min_completion_ratio:
        reasons.append(
            f"completed {step.completion_ratio:.1%} of scheduled requests "
            f"(< {objective.min_completion_ratio:.0%})"
        )
    return reasons


def judge(step: StepResult, objective: Objective) -> StepResult:
    """Sets passed / generator_limited / reasons.

    Latency is judged from the intended send time. When the generator sent more than
    `max_late_ratio` of the requests late, a failure may be the generator's own delay: the step
    is generator-limited (neither passed nor failed: it says nothing about the service) unless
    it fails even on the latency from the actual send, the failures or the completed share,
    which the generator's lateness cannot explain. A pass is never affected by lateness (late
    sends only add latency). Missing generator reports always make a step generator-limited."""
    reasons = _service_reasons(step, objective, service=False)
    limited = False
    if step.generators < step.expected_generators:
        limited = True
        reasons.insert(
            0, f"only {step.generators} of {step.expected_generators} load generators reported"
        )
    elif reasons and step.late_ratio > objective.max_late_ratio:
        late = (
            f"load generator late on {step.late_ratio:.1%} of requests "
            f"(> {objective.max_late_ratio:.1%})"
        )
        service_reasons = _service_reasons(step, objective, service=True)
        if service_reasons:
            reasons = [*service_reasons, late]
        else:
            limited = True
            reasons.insert(0, late)
    step.reasons = reasons
    step.generator_limited = limited
    step.passed = not reasons
    return step


# Why a search ended.
CONVERGED = "converged"
CONFIRMED = "converged, knee held"
STEPPED_DOWN = "converged, held after stepping down"
NOT_CONFIRMED = "converged, no rate held: knee from the shorter steps below"
# Confirmation steps tried at most, each `precision` below the last, before giving up.
MAX_CONFIRM_STEPS = 3
GENERATOR_LIMITED = "generator-limited"
CEILING = "ceiling"
NO_PASS = "no passing rate"
MAX_STEPS = "step limit"
FIXED_STEPS = "all steps done"


@dataclass
class RateSearch:
    """Finds the highest rate that passes: rates grow by `growth` from `start_rate` until the
    first failing step, then bisect between the highest passing and the lowest failing rate
    until they are within `precision` of each other (MLPerf's FindPeakPerformance and Triton
    perf_analyzer's binary search do the same). If the very first rate fails, rates shrink by
    `growth` until one passes. `ceiling` is a safety limit, not a target: a cell that passes it
    ends flagged. A generator-limited step ends the search: above it nothing can be measured.

    With `confirm`, a converged search holds its knee rate once more, in a longer step the
    driver runs (`confirming` names the rate; Envoy Nighthawk's adaptive load controller calls
    it the testing stage): the knee is reported only if it holds; otherwise the rate steps down
    by `precision`, then twice that, and so on (at most by half), and is held again, at most
    MAX_CONFIRM_STEPS times.
    """

    start_rate: float
    growth: float = 2.0
    precision: float = 0.05
    ceiling: float | None = None
    max_steps: int = 30
    min_rate: float = 1.0
    passed_rates: list[float] = field(default_factory=list)
    failed_rates: list[float] = field(default_factory=list)
    outcome: str | None = None
    steps: int = 0
    confirm: bool = False
    confirming: float | None = None  # the rate being held in a confirmation step
    confirm_failures: int = 0

    @property
    def lo(self) -> float | None:
        """The highest passing rate below every failing rate."""
        below = [r for r in self.passed_rates if self.hi is None or r < self.hi]
        return max(below, default=None)

    @property
    def hi(self) -> float | None:
        return min(self.failed_rates, default=None)

    def record(self, rate: float, passed: bool, generator_limited: bool = False) -> None:
        self.steps += 1
        if self.confirming is not None:
            self._record_confirmation(rate, passed, generator_limited)
        elif generator_limited:
            self.outcome = GENERATOR_LIMITED
        elif passed:
            self.passed_rates.append(rate)
        else:
            self.failed_rates.append(rate)

    def _record_confirmation(self, rate: float, passed: bool, generator_limited: bool) -> None:
        if generator_limited:
            self.outcome = GENERATOR_LIMITED
        elif passed:
            self.outcome = STEPPED_DOWN if self.confirm_failures else CONFIRMED
        else:
            # Each step down twice the last (precision, 2x, 4x ...): a knee that 3 s steps
            # overstate by more than the precision is found within MAX_CONFIRM_STEPS holds.
            lower = rate * (1.0 - min(0.5, self.precision * 2**self.confirm_failures))
            self.confirm_failures += 1
            if self.confirm_failures >= MAX_CONFIRM_STEPS or lower < self.min_rate:
                self.outcome = NOT_CONFIRMED
            else:
                self.confirming = lower

    def next_rate(self) -> float | None:
        """The next rate to measure, or None when the search is over (see `outcome`)."""
        if self.outcome is not None:
            return None
        if self.confirming is not None:
            return self.confirming
        if self.steps >= self.max_steps:
            self.outcome = MAX_STEPS
            return None
        lo, hi = self.lo, self.hi
        if not self.passed_rates and not self.failed_rates:
            return self._capped(self.start_rate)
        if hi is None:  # still climbing
            assert lo is not None
            if self.ceiling is not None and lo >= self.ceiling - 1e-9:
                self.outcome = CEILING
                return None
            return self._capped(lo * self.growth)
        if lo is None:  # even the lowest rate tried failed: go down
            lower = hi / self.growth
            if lower < self.min_rate:
                self.outcome = NO_PASS
                return None
            return lower
        if (hi - lo) / lo <= self.precision:
            if self.confirm:
                self.confirming = lo
                return lo
            self.outcome = CONVERGED
            return None
        return (lo + hi) / 2.0

    def _capped(self, rate: float) -> float:
        return rate if self.ceiling is None else min(rate, self.ceiling)


# A later trial's holds: at most this many, each `precision` from the last.
MAX_HOLDS = 5
HOLDS_LIMIT = "hold limit: knee from the highest hold that passed"


@dataclass
class HoldSearch:
    """A later trial of a cell (matrix/README.md, "Trials"): holds only, starting at a rate the
    cell's earlier trials held. Up by `precision` after a hold that passed; down after one that
    failed, by `precision`, then twice that, and so on (at most by half), as RateSearch steps
    down from a failed confirmation, so a cell that now serves much less still finds a rate
    that holds; until a passing hold and a failing one lie `precision` apart (the knee is the
    passing one), or MAX_HOLDS ran. Each hold is as long as a confirmation step.

    Why not another search: a 3 s step passes rates a 10 s hold fails (at 0.05 CPU the held
    knee lies 5-20 % lower), so a search's short steps spend most of a trial finding a limit its
    holds then walk down from. Every knee the cell reports is a held rate with a failing rate
    one `precision` above it, whichever way its trial found it."""

    start_rate: float
    precision: float = 0.05
    max_holds: int = MAX_HOLDS
    min_rate: float = 1.0
    passed_rates: list[float] = field(default_factory=list)
    failed_rates: list[float] = field(default_factory=list)
    outcome: str | None = None
    steps: int = 0
    last: float | None = None
    last_passed: bool = False
    failures_in_a_row: int = 0

    def record(self, rate: float, passed: bool, generator_limited: bool = False) -> None:
        self.steps += 1
        self.last, self.last_passed = rate, passed
        self.failures_in_a_row = 0 if passed else self.failures_in_a_row + 1
        if generator_limited:
            self.outcome = GENERATOR_LIMITED
        elif passed:
            self.passed_rates.append(rate)
        else:
            self.failed_rates.append(rate)

    def next_rate(self) -> float | None:
        """The next rate to hold, or None when the knee is bracketed (see `outcome`)."""
        if self.outcome is not None:
            return None
        if self.last is None:
            return self.start_rate
        up = 1.0 + self.precision
        if self.passed_rates and self.failed_rates:
            highest = max(self.passed_rates)
            above = [r for r in self.failed_rates if r > highest]
            # A step down is x(1 - precision), a step up x(1 + precision): either is a bracket.
            if above and min(above) * (1.0 - self.precision) <= highest * (1 + 1e-9):
                self.outcome = CONFIRMED
                return None
        if self.steps >= self.max_holds:
            self.outcome = HOLDS_LIMIT if self.passed_rates else NO_PASS
            return None
        if self.last_passed:
            return self.last * up
        lower = self.last * (1.0 - min(0.5, self.precision * 2.0 ** (self.failures_in_a_row - 1)))
        if lower < self.min_rate:
            self.outcome = NO_PASS
            return None
        return lower


@dataclass
class FixedSteps:
    """A staircase of fixed rates that stops after the first step that does not pass; with
    `stop_on_failure` off (a soak: one rate held for every step) it runs every step whatever
    they measure, since a soak reports how the service fares, not where it breaks."""

    rates: list[float]
    outcome: str | None = None
    steps: int = 0
    stop_on_failure: bool = True

    def record(self, rate: float, passed: bool, generator_limited: bool = False) -> None:
        self.steps += 1
        if not self.stop_on_failure:
            return
        if generator_limited:
            self.outcome = GENERATOR_LIMITED
        elif not passed:
            self.outcome = CONVERGED

    def next_rate(self) -> float | None:
        if self.outcome is None and self.steps >= len(self.rates):
            self.outcome = FIXED_STEPS
        return None if self.outcome is not None else self.rates[self.steps]


def staircase_rates(start: float, step: float, top: float) -> list[float]:
    if start <= 0 or step <= 0 or top < start:
        raise ValueError("staircase needs start > 0, step > 0 and max >= start")
    count = int(math.floor((top - start) / step + 1e-9)) + 1
    return [start + i * step for i in range(count)]


# How long the master waits at most after an overloaded step for the service to catch up.
MAX_DRAIN_S = 60.0


def drain_seconds(step: StepResult, request_timeout_s: float) -> float:
    """The pause after a failing step: the requests it left unanswered (timed out, or never
    answered before the step was reported), at the rate the service served, at least one
    request timeout and at most MAX_DRAIN_S. The settle seconds are counted in proportion."""
    unanswered = step.failures.get("timeout", 0) + max(0, step.sent - step.ok - step.failed)
    whole_step = unanswered * step.duration_s / step.window_s
    served = max(step.throughput_rps, 1.0)
    return min(MAX_DRAIN_S, max(request_timeout_s, whole_step / served))


def knee_step(steps: Sequence[StepResult]) -> StepResult | None:
    """The step that stands for the cell's limit: the highest-rate passing step below every
    failing step (a pass above a failure is noise, not capacity). Generator-limited steps say
    nothing about the service and are left out. A search that confirmed its knee reports the
    confirmation step that held. When none held, every failed hold is a failing step like the
    others, so the rule above picks the highest short step below all of them: a lower knee
    from less evidence (the trial's outcome says so), not none. None would count as a knee of 0
    and sink the cell's interval and its recommendation on one unlucky trial."""
    judged = [s for s in steps if not s.generator_limited]
    held = [s for s in judged if s.confirmation and s.passed]
    if held:
        return max(held, key=lambda s: s.rate)
    lowest_fail = min((s.rate for s in judged if not s.passed), default=math.inf)
    passing = [s for s in judged if s.passed and s.rate < lowest_fail]
    return max(passing, key=lambda s: s.rate, default=None)
