"""Load profiles as pure schedules: what user count and spawn rate apply at a given run time.

Kept free of Locust imports so the schedules are unit-testable and the matrix can compute the
same step boundaries the load test used.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass

PROFILES = ("plain", "workshop", "staircase", "search", "soak", "spike")
# The profiles that send arrivals on a schedule (open model, loadtest/open_model.py).
OPEN_PROFILES = ("staircase", "search", "soak", "spike")
# The open profiles that hold their schedule whatever a step measures: no pause to drain a
# failing step, no stop (a soak or a spike reports how the service fares, not where it breaks).
HELD_PROFILES = ("soak", "spike")
# The original workshop experiment: 10 000 users spawned at 500 users/s, then held.
WORKSHOP_USERS = 10_000
WORKSHOP_SPAWN_RATE = 500.0
# The course's think time between a user's requests: `wait_time = between(1, 2.5)`.
WORKSHOP_THINK_TIME = (1.0, 2.5)


@dataclass(frozen=True)
class Step:
    """One phase of a profile: from start_s to end_s (run time, seconds) hold `users`."""

    index: int
    start_s: float
    end_s: float
    users: int
    spawn_rate: float
    rate_rps: float | None  # target arrival rate; None when the profile is user-count based

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def workshop_steps(users: int, spawn_rate: float, hold_seconds: float) -> list[Step]:
    """Ramp to `users` at `spawn_rate` users/s, then hold (the original 10 000-user experiment)."""
    if users <= 0 or spawn_rate <= 0 or hold_seconds <= 0:
        raise ValueError("workshop needs users > 0, spawn_rate > 0 and hold_seconds > 0")
    ramp = users / spawn_rate
    return [Step(0, 0.0, ramp + hold_seconds, users, spawn_rate, None)]


def think_time(rng: random.Random, low: float, high: float) -> float:
    """Seconds a workshop user waits after an answer before its next request: uniform in
    [low, high], as Locust's between(low, high). With 10 000 users and (1, 2.5) that offers about
    10 000 / 1.75 = 5 700 req/s while answers are instant, less as they slow down."""
    check_think_time(low, high)
    return rng.uniform(low, high)


def check_think_time(low: float, high: float) -> None:
    if not (math.isfinite(low) and math.isfinite(high)) or low < 0 or high < low:
        raise ValueError(f"think time needs 0 <= min <= max, got min {low:g}, max {high:g}")


def plain_steps(users: int, spawn_rate: float, run_seconds: float | None) -> list[Step]:
    """Locust's own -u/-r/-t as a one-step schedule; no run time means run until stopped."""
    if users <= 0 or spawn_rate <= 0:
        raise ValueError("plain needs --users > 0 and --spawn-rate > 0")
    end = float(run_seconds) if run_seconds else math.inf
    return [Step(0, 0.0, end, users, spawn_rate, None)]


def step_at(steps: list[Step], run_time: float) -> Step | None:
    """The step active at `run_time`, or None once the schedule is over."""
    for step in steps:
        if step.start_s <= run_time < step.end_s:
            return step
    return None
