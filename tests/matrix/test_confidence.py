"""The knee's confidence interval and the ratio of two cells, against known answers."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from matrix.analyse.confidence import (
    converged,
    knee_interval,
    ratio_interval,
    t_quantile_975,
    trials_needed,
)


def test_fractional_degrees_of_freedom_round_down() -> None:
    assert t_quantile_975(2.9) == t_quantile_975(2)
    with pytest.raises(ValueError, match="at least 1"):
        t_quantile_975(0.5)


def test_two_trials_by_hand() -> None:
    # Knees 400 and 900: logs differ by ln(2.25); mean log = ln(600), sd = ln(2.25)/sqrt(2),
    # half-width = 12.706 * sd / sqrt(2) = 12.706 * ln(2.25) / 2 = 5.1518.
    interval = knee_interval([400.0, 900.0])
    assert interval is not None
    assert interval.centre == pytest.approx(600.0)
    half = 12.706205 * math.log(2.25) / 2
    assert interval.low == pytest.approx(600.0 * math.exp(-half))
    assert interval.high == pytest.approx(600.0 * math.exp(half))


def test_interval_matches_scipy_on_log_knees() -> None:
    knees = [512.0, 540.0, 498.0, 530.0, 505.0]
    logs = [math.log(k) for k in knees]
    low, high = stats.t.interval(
        0.95, len(logs) - 1, loc=sum(logs) / len(logs), scale=stats.sem(logs)
    )
    interval = knee_interval(knees)
    assert interval is not None
    assert (interval.low, interval.high) == pytest.approx((math.exp(low), math.exp(high)))


def test_no_interval_from_one_trial_or_a_trial_that_served_nothing() -> None:
    assert knee_interval([500.0]) is None
    assert knee_interval([500.0, 0.0]) is None
    assert not converged([500.0], 0.1)


def test_stopping_rule() -> None:
    # Five close knees: the interval is well inside +-10 % of their median.
    assert converged([512.0, 540.0, 498.0, 530.0, 505.0], 0.10)
    # Two knees 30 % apart: the t interval with one degree of freedom is far wider.
    assert not converged([400.0, 520.0], 0.10)
    # Two identical trials (a search's discrete rates make it common): a zero-width interval,
    # but not enough to stop on; a third that agrees is.
    interval = knee_interval([450.0, 450.0])
    assert interval is not None and interval.low == interval.high == pytest.approx(450.0)
    assert not converged([450.0, 450.0], 0.10)
    assert converged([450.0, 450.0, 460.0], 0.10)


def test_trials_needed_at_a_known_spread() -> None:
    # Log knees -0.05, 0 and +0.05 around 400: sd 0.05, so the half-width t(0.975, n-1) x 0.05
    # / sqrt(n) is 0.124 with three trials (t 4.303) and 0.0795 with four (t 3.182), and
    # +-10 % is ln(1.1) = 0.0953: four trials.
    knees = [400.0 * math.exp(d) for d in (-0.05, 0.0, 0.05)]
    assert not converged(knees, 0.10)
    assert trials_needed(knees, 0.10) == 4
    # A fourth trial where the three scatter around keeps the estimate honest: it converges.
    assert converged([*knees, 400.0], 0.10)
    # Narrow enough already: the trials run, and never fewer than the stopping rule's three.
    assert trials_needed([450.0, 450.0, 460.0, 455.0], 0.10) == 4
    assert trials_needed([450.0, 452.0], 0.10) == 3
    # A bracket alone wider than the target, one trial, a spread no 20 trials average out.
    assert trials_needed(knees, 0.10, resolution=0.12) is None
    assert trials_needed([400.0], 0.10) is None
    assert trials_needed([200.0, 800.0], 0.10) is None


@pytest.mark.parametrize(
    "knees",
    [
        [399.0, 424.0, 436.0],  # docs/quick-run, 1 x 0.05 CPU: +-12 %, not converged
        [968.0, 975.0, 1023.0],  # docs/quick-run, 1 x 0.1 CPU: converged
        [739.0, 858.0, 881.0, 898.0, 912.0, 918.0],  # six rising trials: -11 / +6 %
        [382.0, 368.0, 437.0],
        [450.0, 450.0, 460.0],
    ],
)
def test_trials_needed_agrees_with_the_stopping_rule(knees: list[float]) -> None:
    # For the trials run the estimate is the stopping rule itself: it names their count exactly
    # when they converged, and more when they did not.
    needed = trials_needed(knees, 0.10, 0.05)
    assert (needed == len(knees)) == converged(knees, 0.10, 0.05)
    assert needed is None or needed >= len(knees)


def test_ratio_matches_welch_by_scipy() -> None:
    a = [780.0, 810.0, 795.0, 760.0]
    b = [600.0, 640.0, 610.0]
    la, lb = [math.log(x) for x in a], [math.log(x) for x in b]
    result = stats.ttest_ind(la, lb, equal_var=False)
    ci = result.confidence_interval(0.95)
    interval = ratio_interval(a, b)
    assert interval is not None
    # Ours rounds Welch's fractional df down, so it is at least as wide as scipy's.
    assert interval.low <= math.exp(ci.low) and interval.high >= math.exp(ci.high)
    assert interval.low == pytest.approx(math.exp(ci.low), rel=0.02)
    assert interval.high == pytest.approx(math.exp(ci.high), rel=0.02)
    assert interval.centre == pytest.approx(math.exp(sum(la) / 4 - sum(lb) / 3))
    assert interval.low > 1  # clearly more


def test_ratio_of_overlapping_cells_contains_one() -> None:
    interval = ratio_interval([540.0, 787.0], [487.0, 554.0])
    assert interval is not None and interval.contains(1.0)
    assert ratio_interval([540.0], [487.0, 554.0]) is None


def test_no_interval_is_narrower_than_the_searchs_resolution() -> None:
    # Equal knees would give a zero-width t interval: the 5 % brackets set it instead.
    equal = knee_interval([400.0, 400.0, 400.0], resolution=0.05)
    assert equal is not None
    assert (equal.low, equal.high) == (pytest.approx(400 / 1.05), pytest.approx(420.0))
    # A spread wider than the resolution keeps its t interval.
    spread = [300.0, 330.0]
    assert knee_interval(spread, resolution=0.05) == knee_interval(spread)
    # A ratio: both cells' resolutions, as independent errors.
    ratio = ratio_interval([400.0, 400.0], [200.0, 200.0], (0.05, 0.05))
    assert ratio is not None and ratio.centre == pytest.approx(2.0)
    half = math.hypot(math.log(1.05), math.log(1.05))
    assert ratio.high == pytest.approx(2.0 * math.exp(half))
    assert converged([400.0, 400.0, 400.0], 0.1, resolution=0.05)
    assert not converged([400.0, 400.0, 400.0], 0.1, resolution=0.15)
