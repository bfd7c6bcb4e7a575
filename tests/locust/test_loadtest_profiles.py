"""The load profiles as schedules."""

from __future__ import annotations

import math

import pytest

from tests.locust.helpers import load_helper

profiles = load_helper("loadtest_profiles")


def test_staircase_users_times_rate_is_the_arrival_rate() -> None:
    steps = profiles.staircase_steps(20, 20, 10, 100, user_rate=2.0)
    assert [s.rate_rps for s in steps] == [20, 40, 60, 80, 100]
    assert [s.users for s in steps] == [10, 20, 30, 40, 50]
    assert [(s.start_s, s.end_s) for s in steps][:2] == [(0, 10), (10, 20)]
    assert profiles.step_at(steps, 15).index == 1
    assert profiles.step_at(steps, 50) is None


def test_staircase_rounds_users_up() -> None:
    assert profiles.users_for_rate(25, 2.0) == 13
    assert profiles.users_for_rate(0.1, 1.0) == 1


@pytest.mark.parametrize("args", [(0, 10, 10, 100), (10, 0, 10, 100), (10, 10, 0, 100),
                                  (100, 10, 10, 50)])
def test_staircase_rejects_nonsense(args: tuple) -> None:
    with pytest.raises(ValueError):
        profiles.staircase_steps(*args, user_rate=1.0)


def test_workshop_is_the_original_experiment() -> None:
    (step,) = profiles.workshop_steps(profiles.WORKSHOP_USERS, profiles.WORKSHOP_SPAWN_RATE, 60)
    assert (step.users, step.spawn_rate) == (10_000, 500.0)
    assert step.end_s == pytest.approx(20 + 60)


def test_plain_without_run_time_runs_until_stopped() -> None:
    (step,) = profiles.plain_steps(5, 1.0, None)
    assert math.isinf(step.end_s)
    assert profiles.step_at([step], 1e9) is step
