"""The capacity model against cases with known answers."""

from __future__ import annotations

import math

import pytest

from matrix.analyse.capacity_model import (
    CFS_PERIOD_S,
    DemandCurve,
    DemandModel,
    DemandPoint,
    StepShape,
    demand_model,
    fit_demand,
    predict,
    saturation_rps,
    simulate_step,
)

LONG_STRICT = StepShape(
    seconds=60, settle_seconds=1, timeout_seconds=5, p95_ms=50, min_completion_ratio=0.99
)
QUICK = StepShape(
    seconds=3, settle_seconds=0.5, timeout_seconds=2, p95_ms=500, min_completion_ratio=0.99
)


def test_fit_recovers_a_power_law() -> None:
    points = [(rate, 2000.0 * rate**-0.3) for rate in (50.0, 100.0, 400.0, 800.0)]
    curve = fit_demand(points)
    assert curve is not None
    assert (curve.a, curve.b, curve.points) == (pytest.approx(2000.0), pytest.approx(-0.3), 4)
    flat = fit_demand([(200.0, 250.0), (200.0, 150.0)])
    assert (
        flat is not None and flat.b == 0 and flat.at(999.0) == pytest.approx(math.sqrt(250 * 150))
    )
    assert fit_demand([(0.0, 100.0)]) is None


def paced(a: float, b: float = 0.0) -> DemandModel:
    return DemandModel(DemandCurve(a, b, 3), saturated_us=None)


def test_saturation_is_the_utilisation_law() -> None:
    flat = paced(200.0)  # 200 µs per request at any rate
    assert saturation_rps(flat, replicas=1, cpus=0.1) == pytest.approx(500.0)
    assert saturation_rps(flat, replicas=2, cpus=0.05) == pytest.approx(500.0)
    # D = 1000 x rate^-0.5: rate x D = 1000 sqrt(rate) = 100 000 µs/s at rate 10 000.
    assert saturation_rps(paced(1000.0, -0.5), 1, 0.1) == pytest.approx(10_000.0)
    with pytest.raises(ValueError, match="no saturation rate"):
        saturation_rps(paced(1000.0, -1.0), 1, 0.1)
    # A saturated level decides: the quota over it.
    assert saturation_rps(DemandModel(None, 125.0), 1, 0.1) == pytest.approx(800.0)


def test_the_demand_drops_to_its_saturated_level_once_the_quota_binds() -> None:
    # Paced 250 µs (0.1 CPU binds at 400 req/s), saturated 120 µs, as a 0.1 CPU replica does.
    points = [
        DemandPoint(100.0, 250.0, saturated=False),
        DemandPoint(200.0, 250.0, saturated=False),
        DemandPoint(850.0, 110.0, saturated=True),
        DemandPoint(900.0, 120.0, saturated=True),
        DemandPoint(950.0, 130.0, saturated=True),
    ]
    model = demand_model(points)
    assert model is not None and model.saturated_us == 120.0
    assert model.at(300.0, 1e5) == pytest.approx(250.0)  # 0.075 cores: still paced
    assert model.at(500.0, 1e5) == 120.0  # 0.125 cores paced: the quota binds
    assert saturation_rps(model, 1, 0.1) == pytest.approx(1e5 / 120)
    # The paced curve alone would have said 400 req/s; the saturated level says 833.
    prediction = predict(model, 1, 0.1, QUICK)
    assert prediction.knee_rps == pytest.approx(833.3, rel=0.03)
    assert demand_model([]) is None


def test_a_steep_paced_curve_never_undercuts_the_saturated_level() -> None:
    # Two paced points falling steeply (433 µs at 100/s, 272 at 200/s: b = -0.67) would
    # extrapolate to 77 µs at 1300 req/s, where rate x demand still fits 0.1 CPU; the
    # saturated level (116 µs) is the floor, so the quota binds at 862 req/s, as measured.
    model = demand_model(
        [
            DemandPoint(100.0, 433.0, saturated=False),
            DemandPoint(200.0, 272.0, saturated=False),
            DemandPoint(900.0, 116.0, saturated=True),
        ]
    )
    assert model is not None and model.paced is not None
    assert model.paced.at(1300.0) < 80.0
    assert model.at(1300.0, 1e5) == 116.0
    prediction = predict(model, 2, 0.05, QUICK)
    assert prediction.knee_rps == pytest.approx(1e5 / 116, rel=0.02)


def test_deterministic_service_without_quota_knees_at_one_over_demand() -> None:
    # 1 ms a request on a whole CPU (no throttling): the knee is 1/D = 1000 req/s.
    prediction = predict(paced(1000.0), 1, 1.0, LONG_STRICT)
    assert prediction.saturation_rps == pytest.approx(1000.0)
    assert prediction.knee_rps == pytest.approx(1000.0, rel=0.01)
    # Two replicas, each a whole CPU: twice that.
    assert predict(paced(1000.0), 2, 1.0, LONG_STRICT).knee_rps == pytest.approx(2000.0, rel=0.01)


def test_the_quota_makes_requests_wait_for_the_next_period() -> None:
    # 0.1 CPU: 10 ms of CPU per 100 ms period. One request needing 25 ms runs 10 ms in the
    # first period, 10 ms in the second and 5 ms in the third: it ends 2 periods + 5 ms later.
    step = simulate_step(
        1.0,
        25_000.0,
        1,
        0.1,
        StepShape(
            seconds=1, settle_seconds=0, timeout_seconds=5, p95_ms=500, min_completion_ratio=1
        ),
    )
    assert step.p95_ms == pytest.approx((2 * CFS_PERIOD_S + 0.005) * 1000)
    # Within the quota (40 % of it): no request waits.
    calm = simulate_step(40.0, 1000.0, 1, 0.1, QUICK)
    assert calm.passed and calm.p95_ms == pytest.approx(1.0)


def test_a_short_step_passes_a_little_above_saturation_but_serves_no_more() -> None:
    prediction = predict(paced(200.0), 1, 0.1, QUICK)
    assert prediction.saturation_rps == pytest.approx(500.0)
    # The backlog of a 3 s step above saturation stays under 500 ms for a while, so the
    # highest passing offered rate is above 500 req/s; what it served is not.
    assert prediction.knee_offered_rps > 500.0
    assert prediction.knee_rps <= 500.0 * 1.01
    assert prediction.knee_rps > 450.0
    # Far above: the step fails on its p95.
    assert not simulate_step(1500.0, 200.0, 1, 0.1, QUICK).passed
