"""The autoscaler's own /metrics: its inputs, its decisions and its changes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from autoscaler.policy import CODES, Decision

REGISTRY = CollectorRegistry()
CURRENT = Gauge(
    "penguin_autoscaler_current_replicas",
    "Replicas of the service before the decision.",
    registry=REGISTRY,
)
DESIRED = Gauge(
    "penguin_autoscaler_desired_replicas",
    "Replicas the figures ask for (bounded), before stabilisation and cooldown.",
    registry=REGISTRY,
)
APPLIED = Gauge(
    "penguin_autoscaler_applied_replicas", "Replicas the decision set.", registry=REGISTRY
)
OBSERVED_RPS = Gauge(
    "penguin_autoscaler_observed_rps", "Requests/s offered to the service.", registry=REGISTRY
)
OBSERVED_IN_FLIGHT = Gauge(
    "penguin_autoscaler_observed_in_flight",
    "Requests in flight over the service.",
    registry=REGISTRY,
)
OBSERVED_REFUSED = Gauge(
    "penguin_autoscaler_observed_refused_rps", "503 answers/s.", registry=REGISTRY
)
TARGET_RPS = Gauge(
    "penguin_autoscaler_target_rps_per_replica", "The target rate per replica.", registry=REGISTRY
)
PROMETHEUS_UP = Gauge(
    "penguin_autoscaler_prometheus_up",
    "1 when the last observation had figures.",
    registry=REGISTRY,
)
DECISIONS = Counter(
    "penguin_autoscaler_decisions", "Decisions by code.", ["code"], registry=REGISTRY
)
SCALINGS = Counter(
    "penguin_autoscaler_scalings",
    "Replica changes applied, by direction (up, down) and outcome (ok, failed).",
    ["direction", "outcome"],
    registry=REGISTRY,
)
for _code in CODES:
    DECISIONS.labels(_code)  # every series exists from the start, at 0


def record(decision: Decision, target_rps: float) -> None:
    CURRENT.set(decision.current)
    DESIRED.set(decision.desired)
    APPLIED.set(decision.applied)
    TARGET_RPS.set(target_rps)
    DECISIONS.labels(decision.code).inc()
    observation = decision.observation
    PROMETHEUS_UP.set(0 if observation is None else 1)
    if observation is not None:
        OBSERVED_RPS.set(observation.rps)
        OBSERVED_IN_FLIGHT.set(observation.in_flight)
        OBSERVED_REFUSED.set(observation.refused_rps)


def record_scaling(decision: Decision, ok: bool) -> None:
    direction = "up" if decision.applied > decision.current else "down"
    SCALINGS.labels(direction, "ok" if ok else "failed").inc()


def serve(port: int) -> None:
    start_http_server(port, registry=REGISTRY)
