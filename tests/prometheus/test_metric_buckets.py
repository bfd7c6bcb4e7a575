"""The request histogram's buckets and the quantile arithmetic the report relies on."""

from __future__ import annotations

import math
import random

import pytest

from matrix.measure.prometheus import histogram_quantile
from service.metrics import REQUEST_BUCKETS, REQUEST_QUANTILE_ERROR, geometric_buckets


def test_buckets_are_at_most_ten_percent_apart_between_1_ms_and_5_s() -> None:
    bounds = list(REQUEST_BUCKETS)
    assert bounds == sorted(bounds) and len(set(bounds)) == len(bounds)
    assert bounds[0] < 0.001 and bounds[-1] >= 5.0
    inside = [b for b in bounds if b >= 0.001]
    covering = inside[: next(i for i, b in enumerate(inside) if b >= 5.0) + 1]
    assert covering[0] == 0.001
    assert max(hi / lo for lo, hi in zip(covering, covering[1:], strict=False)) <= 1.1
    assert REQUEST_QUANTILE_ERROR < 0.1


def test_geometric_buckets_stop_at_the_first_bound_past_high() -> None:
    assert geometric_buckets(1.0, 100.0, 1) == (1.0, 10.0, 100.0)
    assert geometric_buckets(1.0, 50.0, 2)[-2:] == pytest.approx((10**1.5, 100.0), rel=1e-6)


@pytest.mark.parametrize("scale", [0.00075, 0.0173, 0.25, 1.9, 3.7])
def test_p95_from_the_buckets_is_within_the_bucket_error(scale: float) -> None:
    # Latencies spread over a range: wherever their p95 falls between 1 ms and 5 s, the estimate
    # from the cumulative buckets lands within REQUEST_QUANTILE_ERROR of the exact quantile.
    rng = random.Random(7)
    values = sorted(scale * rng.uniform(0.3, 1.4) for _ in range(4000))
    exact = values[math.ceil(0.95 * len(values)) - 1]
    assert 0.001 <= exact <= 5.0
    buckets = [(b, float(sum(v <= b for v in values))) for b in REQUEST_BUCKETS]
    buckets.append((math.inf, float(len(values))))
    estimate = histogram_quantile(0.95, buckets)
    assert estimate is not None
    assert abs(estimate - exact) / exact <= REQUEST_QUANTILE_ERROR


def test_histogram_quantile_follows_prometheus() -> None:
    buckets = [(0.1, 10.0), (0.2, 30.0), (math.inf, 40.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.15)
    assert histogram_quantile(0.99, buckets) == 0.2  # in +Inf: the highest finite bound
    assert histogram_quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]) is None
    assert histogram_quantile(0.5, [(0.1, 3.0)]) is None  # no +Inf bucket
