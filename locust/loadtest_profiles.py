"""Load profiles as pure schedules: what user count and spawn rate apply at a given run time.

Kept free of Locust imports so the schedules are unit-testable and the matrix can compute the
same step boundaries the load test used.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

PROFILES = ("plain", "workshop", "staircase")
# The original workshop experiment: 10 000 users spawned at 500 users/s, then held.
WORKSHOP_USERS = 10_000
WORKSHOP_SPAWN_RATE = 500.0


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


def users_for_rate(rate_rps: float, user_rate: float) -> int:
    """Users needed so that users x per-user rate = the target arrival rate."""
    if user_rate <= 0:
        raise ValueError(f"per-user rate must be > 0, got {user_rate}")
    return max(1, math.ceil(rate_rps / user_rate - 1e-9))


def staircase_steps(
    start_rate: float, step_rate: float, step_seconds: float, max_rate: float, user_rate: float
) -> list[Step]:
    """Steps of constant arrival rate: start_rate, start_rate + step_rate, ... up to max_rate."""
    if start_rate <= 0 or step_rate <= 0 or step_seconds <= 0 or max_rate < start_rate:
        raise ValueError(
            "staircase needs start_rate > 0, step_rate > 0, step_seconds > 0 and"
            f" max_rate >= start_rate (got {start_rate}, {step_rate}, {step_seconds}, {max_rate})"
        )
    steps: list[Step] = []
    rate = start_rate
    index = 0
    while rate <= max_rate + 1e-9:
        users = users_for_rate(rate, user_rate)
        previous = steps[-1].users if steps else 0
        # Spawn each step's new users within about a second so the step is at its rate at once.
        spawn_rate = float(max(1, abs(users - previous)))
        start = index * step_seconds
        steps.append(Step(index, start, start + step_seconds, users, spawn_rate, rate))
        index += 1
        rate = start_rate + index * step_rate
    return steps


def workshop_steps(users: int, spawn_rate: float, hold_seconds: float) -> list[Step]:
    """Ramp to `users` at `spawn_rate` users/s, then hold (the original 10 000-user experiment)."""
    if users <= 0 or spawn_rate <= 0 or hold_seconds <= 0:
        raise ValueError("workshop needs users > 0, spawn_rate > 0 and hold_seconds > 0")
    ramp = users / spawn_rate
    return [Step(0, 0.0, ramp + hold_seconds, users, spawn_rate, None)]


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
