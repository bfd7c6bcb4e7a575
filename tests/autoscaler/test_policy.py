"""The scaling policy, with an injected clock: tolerance, stabilisation, cooldown, bounds and
what happens without figures."""

from __future__ import annotations

from typing import Any

import pytest

from autoscaler.policy import (
    HOLD_BOUND,
    HOLD_COOLDOWN,
    HOLD_NO_DATA,
    HOLD_STABILISING,
    HOLD_TOLERANCE,
    SCALE_DOWN,
    SCALE_UP,
    Observation,
    Policy,
)
from autoscaler.settings import AutoscaleSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(**overrides: Any) -> tuple[Policy, Clock]:
    values: dict[str, Any] = {
        "min_replicas": 1,
        "max_replicas": 4,
        "target_rps_per_replica": 100.0,
        "tolerance": 0.1,
        "stabilisation_s": 60.0,
        "cooldown_s": 10.0,
    }
    values.update(overrides)
    clock = Clock()
    return Policy(AutoscaleSettings(**values), clock), clock


def rate(rps: float, in_flight: float = 0.0, refused: float = 0.0) -> Observation:
    return Observation(rps=rps, in_flight=in_flight, refused_rps=refused)


def test_within_tolerance_nothing_changes() -> None:
    policy, _ = make()
    decision = policy.decide(2, rate(218.0))  # 109 per replica: 9 % over the target
    assert (decision.code, decision.applied) == (HOLD_TOLERANCE, 2)


def test_beyond_tolerance_scales_up_at_once_to_ceil_of_the_ratio() -> None:
    policy, _ = make()
    decision = policy.decide(1, rate(250.0))
    assert (decision.code, decision.desired, decision.applied) == (SCALE_UP, 3, 3)
    assert decision.changes


def test_scale_up_is_bounded_by_max() -> None:
    policy, _ = make(max_replicas=3)
    decision = policy.decide(1, rate(1000.0))
    assert (decision.code, decision.applied) == (SCALE_UP, 3)
    held = policy.decide(3, rate(1000.0))
    assert (held.code, held.applied) == (HOLD_BOUND, 3)


def test_never_below_min_even_without_traffic() -> None:
    policy, clock = make(min_replicas=2, stabilisation_s=0, cooldown_s=0)
    decision = policy.decide(3, rate(0.0))
    assert (decision.code, decision.applied) == (SCALE_DOWN, 2)
    clock.now += 100
    held = policy.decide(2, rate(0.0))
    assert (held.code, held.applied) == (HOLD_BOUND, 2)


def test_scale_down_waits_for_the_stabilisation_window() -> None:
    policy, clock = make()
    assert policy.decide(3, rate(300.0)).code == HOLD_TOLERANCE
    clock.now += 5
    for _ in range(11):  # the load fell; 55 s of low figures, still inside the window
        decision = policy.decide(3, rate(50.0))
        assert (decision.code, decision.applied) == (HOLD_STABILISING, 3)
        clock.now += 5
    clock.now += 5  # 65 s after the last high recommendation
    decision = policy.decide(3, rate(50.0))
    assert (decision.code, decision.applied) == (SCALE_DOWN, 1)


def test_scale_down_goes_to_the_highest_recommendation_of_the_window() -> None:
    policy, clock = make(cooldown_s=0)
    policy.decide(4, rate(400.0))
    clock.now += 30
    policy.decide(4, rate(180.0))  # recommends 2
    clock.now += 35  # the 4 left the window, the 2 has not
    decision = policy.decide(4, rate(50.0))
    assert (decision.code, decision.applied) == (SCALE_DOWN, 2)


def test_a_fresh_start_does_not_scale_down_before_a_window() -> None:
    policy, clock = make()
    assert policy.decide(3, rate(10.0)).code == HOLD_STABILISING
    clock.now += 61
    assert policy.decide(3, rate(10.0)).applied == 1


def test_cooldown_after_a_change_holds_even_a_scale_up() -> None:
    policy, clock = make(cooldown_s=10.0)
    assert policy.decide(1, rate(180.0)).applied == 2
    clock.now += 5
    decision = policy.decide(2, rate(390.0))
    assert (decision.code, decision.applied, decision.desired) == (HOLD_COOLDOWN, 2, 4)
    clock.now += 5
    assert policy.decide(2, rate(390.0)).applied == 4


def test_scale_down_stops_at_the_replicas_the_rate_needs() -> None:
    policy, clock = make(stabilisation_s=0, cooldown_s=0)
    decision = policy.decide(4, rate(250.0))  # 62.5 per replica; 250 req/s need 3
    assert (decision.code, decision.applied) == (SCALE_DOWN, 3)
    clock.now += 1
    assert policy.decide(3, rate(250.0)).code == HOLD_TOLERANCE  # ratio 0.83, not 2 replicas


def test_refusals_add_a_replica_whatever_the_average() -> None:
    policy, _ = make()
    decision = policy.decide(2, rate(150.0, refused=5.0))
    assert (decision.code, decision.applied) == (SCALE_UP, 3)
    assert "503" in decision.reason


def test_in_flight_target_scales_up_when_set() -> None:
    policy, _ = make(target_inflight_per_replica=8.0)
    decision = policy.decide(2, rate(150.0, in_flight=40.0))  # 20 per replica: ratio 2.5
    assert (decision.code, decision.applied) == (SCALE_UP, 4)
    off, _ = make()
    held = off.decide(2, rate(150.0, in_flight=40.0))
    assert (held.code, held.applied) == (HOLD_TOLERANCE, 2)


def test_prometheus_down_holds_the_count_and_says_so() -> None:
    policy, _ = make()
    decision = policy.decide(3, None)
    assert (decision.code, decision.applied) == (HOLD_NO_DATA, 3)
    assert not decision.changes
    assert "Prometheus" in decision.reason


def test_without_figures_a_zero_count_is_raised_to_min_never_kept() -> None:
    policy, _ = make(min_replicas=1)
    assert policy.decide(0, None).applied == 1


def test_max_below_min_is_refused() -> None:
    with pytest.raises(ValueError, match="AUTOSCALE_MAX_REPLICAS"):
        AutoscaleSettings(min_replicas=3, max_replicas=2)


def test_zero_min_is_refused() -> None:
    with pytest.raises(ValueError):
        AutoscaleSettings(min_replicas=0)
