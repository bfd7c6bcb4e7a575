"""One autoscaler pass against a fake Prometheus and a fake Swarm: what it asks Prometheus, what
it applies, what it logs and exposes, and how it behaves when either is down."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

import pytest

from autoscaler import metrics
from autoscaler.engine import EngineError
from autoscaler.loop import step
from autoscaler.observe import queries
from autoscaler.policy import HOLD_NO_DATA, SCALE_UP, Policy
from autoscaler.settings import AutoscaleSettings
from matrix.measure.prometheus import PrometheusUnavailable, Sample

WINDOW = 10


class FakePrometheus:
    """Answers the autoscaler's queries from a table; raises when marked down."""

    def __init__(self, values: Mapping[str, float | None]) -> None:
        self.values = dict(values)
        self.down = False
        self.asked: list[str] = []

    def __call__(self, expr: str, at: float) -> list[Sample]:
        self.asked.append(expr)
        if self.down:
            raise PrometheusUnavailable("http://prometheus:9090: connection refused")
        name = {v: k for k, v in queries(WINDOW).items()}[expr]
        value = self.values.get(name)
        return [] if value is None else [({}, value)]


class FakeScaler:
    def __init__(self, replicas: int) -> None:
        self.count = replicas
        self.scaled: list[int] = []
        self.broken = False

    def replicas(self, service: str) -> int:
        assert service == "t_api"
        if self.broken:
            raise EngineError("inspecting service t_api: engine gone")
        return self.count

    def scale(self, service: str, replicas: int) -> None:
        self.scaled.append(replicas)
        self.count = replicas


def policy() -> Policy:
    settings = AutoscaleSettings(
        service="t_api", target_rps_per_replica=100.0, max_replicas=3, rate_window_s=WINDOW
    )
    return Policy(settings, lambda: 50.0)


def test_a_spike_seen_by_nginx_scales_up_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    # The replicas served 120 req/s; Nginx took 260 (the rest refused in front of them).
    prometheus = FakePrometheus({"served": 120.0, "nginx": 260.0, "in_flight": 9, "refused": 0})
    scaler = FakeScaler(1)
    with caplog.at_level(logging.INFO, logger="autoscaler"):
        decision = step(policy(), scaler, prometheus, lambda: 1.7e9)
    assert decision is not None and decision.code == SCALE_UP
    assert scaler.scaled == [3]
    logged = json.loads(caplog.records[-1].getMessage())
    assert (logged["current"], logged["desired"], logged["applied"]) == (1, 3, 3)
    assert logged["rps"] == 260.0 and logged["code"] == SCALE_UP
    assert metrics.APPLIED._value.get() == 3
    assert metrics.SCALINGS.labels("up", "ok")._value.get() >= 1


def test_prometheus_down_holds_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    prometheus = FakePrometheus({})
    prometheus.down = True
    scaler = FakeScaler(2)
    with caplog.at_level(logging.INFO, logger="autoscaler"):
        decision = step(policy(), scaler, prometheus, lambda: 1.7e9)
    assert decision is not None and decision.code == HOLD_NO_DATA
    assert scaler.scaled == []
    logged = json.loads(caplog.records[-1].getMessage())
    assert "connection refused" in logged["error"] and logged["applied"] == 2
    assert metrics.PROMETHEUS_UP._value.get() == 0


def test_no_request_series_at_all_holds() -> None:
    scaler = FakeScaler(2)
    decision = step(policy(), scaler, FakePrometheus({"in_flight": 3.0}), lambda: 1.7e9)
    assert decision is not None and decision.code == HOLD_NO_DATA
    assert scaler.scaled == []


def test_replicas_too_busy_to_be_scraped_scale_on_nginxs_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A saturated replica misses its scrapes; Nginx's count still measures the demand.
    scaler = FakeScaler(1)
    with caplog.at_level(logging.INFO, logger="autoscaler"):
        decision = step(policy(), scaler, FakePrometheus({"nginx": 500.0}), lambda: 1.7e9)
    assert decision is not None and decision.code == SCALE_UP
    assert scaler.scaled == [3]
    logged = json.loads(caplog.records[-1].getMessage())
    assert logged["rps"] == 500.0 and "replicas not scraped" in logged["missing"]


def test_an_unreadable_service_decides_nothing() -> None:
    scaler = FakeScaler(2)
    scaler.broken = True
    prometheus = FakePrometheus({"served": 500.0})
    assert step(policy(), scaler, prometheus, lambda: 1.7e9) is None
    assert scaler.scaled == [] and prometheus.asked == []
