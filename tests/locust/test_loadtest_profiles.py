"""The load profiles as schedules."""

from __future__ import annotations

import math

import pytest

from tests.locust.helpers import load_helper

profiles = load_helper("loadtest_profiles")


def test_workshop_is_the_original_experiment() -> None:
    (step,) = profiles.workshop_steps(profiles.WORKSHOP_USERS, profiles.WORKSHOP_SPAWN_RATE, 60)
    assert (step.users, step.spawn_rate) == (10_000, 500.0)
    assert step.end_s == pytest.approx(20 + 60)


def test_plain_without_run_time_runs_until_stopped() -> None:
    (step,) = profiles.plain_steps(5, 1.0, None)
    assert math.isinf(step.end_s)
    assert profiles.step_at([step], 1e9) is step
