"""One autoscaler pass: observe, decide, log, apply. Separate from the process entry point so
tests drive it with a fake engine, a fake Prometheus and a fake clock."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from autoscaler import metrics
from autoscaler.engine import EngineError, Scaler
from autoscaler.observe import NoFigures, observe
from autoscaler.policy import Decision, Observation, Policy
from matrix.measure.prometheus import QueryFn

LOG = logging.getLogger("autoscaler")


def decision_record(decision: Decision, service: str, at: float, error: str | None = None) -> str:
    """One JSON line per decision: when (epoch seconds), inputs, desired, applied and why."""
    observation = decision.observation
    record: dict[str, object] = {
        "at": round(at, 3),
        "service": service,
        "current": decision.current,
        "desired": decision.desired,
        "applied": decision.applied,
        "code": decision.code,
        "reason": decision.reason,
        "rps": None if observation is None else round(observation.rps, 2),
        "in_flight": None if observation is None else round(observation.in_flight, 2),
        "refused_rps": None if observation is None else round(observation.refused_rps, 2),
    }
    if observation is not None and observation.missing is not None:
        record["missing"] = observation.missing
    if error is not None:
        record["error"] = error
    return json.dumps(record, sort_keys=False)


def step(
    policy: Policy,
    scaler: Scaler,
    query: QueryFn,
    wall_clock: Callable[[], float],
) -> Decision | None:
    """One pass; None when the service's replica count could not be read (nothing decided)."""
    settings = policy.settings
    try:
        current = scaler.replicas(settings.service)
    except EngineError as error:
        LOG.warning(json.dumps({"service": settings.service, "error": str(error)}))
        return None
    observation: Observation | None
    problem = None
    at = wall_clock()
    try:
        observation = observe(query, at, settings.rate_window_s)
    except NoFigures as error:
        observation, problem = None, str(error)
    decision = policy.decide(current, observation)
    metrics.record(decision, settings.target_rps_per_replica)
    failure = None
    if decision.changes:
        try:
            scaler.scale(settings.service, decision.applied)
        except EngineError as error:
            failure = str(error)
        metrics.record_scaling(decision, ok=failure is None)
    level = logging.ERROR if failure else logging.WARNING if problem else logging.INFO
    LOG.log(level, decision_record(decision, settings.service, at, failure or problem))
    return decision
