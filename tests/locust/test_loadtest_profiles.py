"""The load profiles as schedules."""

from __future__ import annotations

import math

import pytest

from loadtest import profiles


def test_workshop_is_the_original_experiment() -> None:
    (step,) = profiles.workshop_steps(profiles.WORKSHOP_USERS, profiles.WORKSHOP_SPAWN_RATE, 60)
    assert (step.users, step.spawn_rate) == (10_000, 500.0)
    assert step.end_s == pytest.approx(20 + 60)


def test_plain_without_run_time_runs_until_stopped() -> None:
    (step,) = profiles.plain_steps(5, 1.0, None)
    assert math.isinf(step.end_s)
    assert profiles.step_at([step], 1e9) is step


def test_think_time_is_uniform_between_the_course_bounds() -> None:
    import random

    rng = random.Random(7)
    low, high = profiles.WORKSHOP_THINK_TIME
    assert (low, high) == (1.0, 2.5)  # the course's wait_time = between(1, 2.5)
    waits = [profiles.think_time(rng, low, high) for _ in range(20_000)]
    assert low <= min(waits) < low + 0.01 and high - 0.01 < max(waits) <= high
    assert sum(waits) / len(waits) == pytest.approx(1.75, abs=0.02)
    # Uniform: each quarter of the range gets about a quarter of the draws.
    quarters = [sum(low + q * 0.375 <= w < low + (q + 1) * 0.375 for w in waits) for q in range(4)]
    assert all(abs(count / len(waits) - 0.25) < 0.02 for count in quarters)
    assert profiles.think_time(rng, 2.0, 2.0) == 2.0


@pytest.mark.parametrize(("low", "high"), [(2.5, 1.0), (-1.0, 1.0), (1.0, math.inf)])
def test_think_time_refuses_impossible_bounds(low: float, high: float) -> None:
    import random

    with pytest.raises(ValueError, match="think time"):
        profiles.think_time(random.Random(), low, high)
