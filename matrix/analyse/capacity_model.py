"""A capacity model that predicts a cell's knee from its service demand and its CPU quota.

Two layers (matrix/README.md, "The capacity model"):

1. The utilisation law, U = X x D: the api replicas together may use replicas x cpus cores, so
   at a demand of D CPU-seconds per request they cannot serve more than replicas x cpus / D
   requests a second (the saturation rate). The demand depends on how requests arrive, in two
   regimes the measurements show: *paced*, while the replicas keep up, it falls slowly with the
   rate (the idle baseline spread over more requests), fitted as D(rate) = a x rate^b; once
   the quota binds, requests wait for the next CFS period and a worker that wakes finds a batch
   of them, so the demand drops to a *saturated* level (about half the paced one at 0.1 CPU),
   the median of the steps that used the whole quota. The saturation rate is the quota over
   the saturated demand (without a saturated step: where rate x D(rate) meets the quota).
2. A small discrete-event simulation of one step, for the knee: arrivals at the profile's
   pattern (evenly spaced or Poisson), dealt round-robin over the replicas as Nginx does, each
   replica's Gunicorn workers (one per whole CPU, at least one) serving one request at a time
   for the demand at that rate, and the CFS quota: each worker may run cpus / workers x 100 ms
   in every 100 ms period and then waits for the next one. The step is judged as the load test
   judges it (p95 from the intended send over the requests after the settle time, answers
   within the timeout); the knee is what the highest passing rate served, by bisection.

Pure and deterministic (a fixed seed for Poisson arrivals): the same inputs give the same
prediction."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from matrix.analyse.records import TrialRecord
    from matrix.config import Objective, SearchProfile, StaircaseProfile

# Docker's (and the kernel's) default CFS period: a quota of `cpus` is cpus x 100 ms per 100 ms.
CFS_PERIOD_S = 0.1
# A step whose api containers used at least this share of their quota ran saturated.
SATURATED_SHARE = 0.9
# The simulation's bisection stops when the bracket is this narrow (relative).
MODEL_PRECISION = 0.005
SEED = 18

Arrival = Literal["constant", "poisson"]


@dataclass(frozen=True)
class DemandCurve:
    """CPU-µs per request as a power of the rate: D(rate) = a x rate^b (b < 0: cheaper when
    busier)."""

    a: float
    b: float
    points: int

    def at(self, rate: float) -> float:
        return float(self.a * rate**self.b)


def fit_demand(points: Sequence[tuple[float, float]]) -> DemandCurve | None:
    """Least squares on log rate / log demand over (served req/s, CPU-µs per request) pairs;
    a single rate gives a flat curve. None without a usable point."""
    usable = [(math.log(r), math.log(d)) for r, d in points if r > 0 and d > 0]
    if not usable:
        return None
    xs, ys = [x for x, _ in usable], [y for _, y in usable]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    slope = 0.0 if spread < 1e-12 else sum((x - mean_x) * (y - mean_y) for x, y in usable) / spread
    return DemandCurve(math.exp(mean_y - slope * mean_x), slope, len(usable))


@dataclass(frozen=True)
class DemandPoint:
    """One step's served rate and CPU-µs per request, and whether it used the whole quota."""

    rate: float
    demand_us: float
    saturated: bool


@dataclass(frozen=True)
class DemandModel:
    """The demand in its two regimes: paced (a curve over the rate) and saturated (a level)."""

    paced: DemandCurve | None
    saturated_us: float | None

    def at(self, rate: float, capacity_us: float) -> float:
        """CPU-µs per request at `rate` on replicas that may use `capacity_us` per second: the
        paced curve while it fits in the quota, the saturated level once it does not. The
        saturated level is also a floor: batching is the cheapest a request gets, so a steep
        paced curve extrapolated past the measured rates never undercuts it."""
        paced = self.paced.at(rate) if self.paced is not None else None
        if paced is None:
            assert self.saturated_us is not None  # demand_model never builds neither
            return self.saturated_us
        if self.saturated_us is None:
            return paced
        if rate * paced > capacity_us:
            return self.saturated_us
        return max(paced, self.saturated_us)


def demand_model(points: Sequence[DemandPoint]) -> DemandModel | None:
    """The paced curve fitted to the unsaturated points, the saturated level as the median of
    the saturated ones; None without a usable point."""
    paced = fit_demand([(p.rate, p.demand_us) for p in points if not p.saturated])
    saturated = sorted(p.demand_us for p in points if p.saturated and p.demand_us > 0)
    level = None
    if saturated:
        middle = len(saturated) // 2
        level = (
            saturated[middle]
            if len(saturated) % 2
            else (saturated[middle - 1] + saturated[middle]) / 2
        )
    if paced is None and level is None:
        return None
    return DemandModel(paced, level)


def saturation_rps(model: DemandModel, replicas: int, cpus: float) -> float:
    """The utilisation law's limit: the quota over the saturated demand, or without one the rate
    at which rate x D(rate) on the paced curve uses the whole quota."""
    capacity_us = replicas * cpus * 1e6  # CPU-µs per second
    if model.saturated_us is not None:
        return capacity_us / model.saturated_us
    assert model.paced is not None
    exponent = 1.0 + model.paced.b
    if exponent <= 0.05:
        # Demand falling as fast as the rate rises: the fit says nothing about a limit.
        raise ValueError(f"demand curve exponent {model.paced.b:.2f}: no saturation rate")
    return float((capacity_us / model.paced.a) ** (1.0 / exponent))


@dataclass(frozen=True)
class StepShape:
    """What one step of the load test is and how it is judged."""

    seconds: float
    settle_seconds: float
    timeout_seconds: float
    p95_ms: float
    min_completion_ratio: float
    arrival: Arrival = "constant"


@dataclass(frozen=True)
class SimulatedStep:
    served_rps: float  # answers completed between the settle time and the step's end, per second
    p95_ms: float
    completed_share: float
    passed: bool


def _arrivals(rate: float, seconds: float, arrival: Arrival) -> list[float]:
    if arrival == "constant":
        return [i / rate for i in range(int(rate * seconds))]
    rng = random.Random(SEED)
    times, now = [], rng.expovariate(rate)
    while now < seconds:
        times.append(now)
        now += rng.expovariate(rate)
    return times


def _serve(start: float, work: float, budget: float, state: list[float]) -> float:
    """Runs `work` CPU-seconds from `start` on one worker whose quota is `budget` per period;
    `state` is [period index, budget left in it]. Returns the finish time."""
    now = start
    while True:
        period = math.floor(now / CFS_PERIOD_S + 1e-12)
        if period != state[0]:
            state[0], state[1] = period, budget
        if state[1] <= 1e-12:
            now = (period + 1) * CFS_PERIOD_S
            continue
        run = min(work, state[1], (period + 1) * CFS_PERIOD_S - now)
        now += run
        work -= run
        state[1] -= run
        if work <= 1e-12:
            return now


def simulate_step(
    rate: float, demand_us: float, replicas: int, cpus: float, shape: StepShape
) -> SimulatedStep:
    """One step at `rate` req/s on `replicas` replicas of `cpus` CPU, each request needing
    `demand_us` CPU-µs, judged on its p95 and completed share."""
    workers_per_replica = max(1, math.floor(cpus))
    budget = min(1.0, cpus / workers_per_replica) * CFS_PERIOD_S
    servers = replicas * workers_per_replica
    free = [0.0] * servers
    quota = [[-1.0, budget] for _ in range(servers)]
    work = demand_us / 1e6
    latencies, scheduled, served = [], 0, 0
    for i, arrived in enumerate(_arrivals(rate, shape.seconds, shape.arrival)):
        server = i % servers  # round robin, as Nginx deals requests
        finished = _serve(max(arrived, free[server]), work, budget, quota[server])
        free[server] = finished
        served += shape.settle_seconds <= finished <= shape.seconds
        if arrived >= shape.settle_seconds:
            scheduled += 1
            latencies.append(finished - arrived)
    if not scheduled:
        return SimulatedStep(0.0, 0.0, 1.0, True)
    latencies.sort()
    p95_ms = latencies[min(len(latencies) - 1, math.ceil(0.95 * len(latencies)) - 1)] * 1000
    completed = sum(latency <= shape.timeout_seconds for latency in latencies) / scheduled
    passed = p95_ms <= shape.p95_ms and completed >= shape.min_completion_ratio
    window = shape.seconds - shape.settle_seconds
    return SimulatedStep(served / window, p95_ms, completed, passed)


@dataclass(frozen=True)
class Prediction:
    knee_rps: float  # served at the highest passing rate, as the lab reports a knee
    knee_offered_rps: float
    saturation_rps: float
    demand_us_per_request: float  # D at the predicted knee


def predict(model: DemandModel, replicas: int, cpus: float, shape: StepShape) -> Prediction:
    """The highest rate whose simulated step passes, and the utilisation law's limit."""
    saturation = saturation_rps(model, replicas, cpus)
    capacity_us = replicas * cpus * 1e6

    def step(rate: float) -> SimulatedStep:
        return simulate_step(rate, model.at(rate, capacity_us), replicas, cpus, shape)

    def passes(rate: float) -> bool:
        return step(rate).passed

    low, high = saturation / 20, saturation * 2
    while not passes(low) and low > 1e-3:
        low /= 2
    while passes(high):
        low, high = high, high * 2
    while (high - low) / low > MODEL_PRECISION:
        middle = (low + high) / 2
        if passes(middle):
            low = middle
        else:
            high = middle
    return Prediction(min(low, step(low).served_rps), low, saturation, model.at(low, capacity_us))


def step_shape(profile: SearchProfile | StaircaseProfile, objective: Objective) -> StepShape:
    """The step a matrix's open profile runs, with the objective it is judged by."""
    return StepShape(
        seconds=profile.step_seconds,
        settle_seconds=profile.settle_seconds,
        timeout_seconds=profile.request_timeout_seconds,
        p95_ms=objective.p95_ms,
        min_completion_ratio=objective.min_completion_ratio,
        arrival=profile.arrival,
    )


def demand_points(trials: Sequence[TrialRecord], total_cpus: float) -> list[DemandPoint]:
    """Every step with a demand figure except each trial's knee step: the knee's own demand is
    left out, so the prediction is not the knee restated (at the knee the replicas use their
    whole quota, and served x demand is the quota by definition). Steps above the knee are in:
    they show the saturated demand."""
    points = []
    for trial in trials:
        for step in trial.steps:
            demand = step.demand_us_per_request
            if step.index == trial.knee_index or not demand or step.served_rps <= 0:
                continue
            cores = step.api_cpu_cores
            saturated = cores is not None and cores >= SATURATED_SHARE * total_cpus
            points.append(DemandPoint(step.served_rps, demand, saturated))
    return points


def predict_cell(
    trials: Sequence[TrialRecord], replicas: int, cpus: float, shape: StepShape
) -> Prediction | None:
    """The cell's predicted knee from its trials' demand; None without demand figures (or with
    a curve that implies no limit)."""
    model = demand_model(demand_points(trials, replicas * cpus))
    if model is None:
        return None
    try:
        return predict(model, replicas, cpus, shape)
    except ValueError:
        return None
