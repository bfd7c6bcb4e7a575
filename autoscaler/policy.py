"""The scaling policy, HPA-like, as a pure class: observations and a clock in, a decision out.

desired = ceil(current x observed / target) for each metric (the request rate per replica, and
the requests in flight per replica when a target is set), the highest wins. A ratio within the
tolerance band changes nothing. Scale-up is applied at once; scale-down only to the highest
recommendation of the stabilisation window, so a dip does not remove a replica the next second
needs. After any change, a cooldown holds the count while new replicas start and show in the
figures. Outside the tolerance band the rate recommendation is ceil(rate / target), so no
decision goes below the replicas the current rate needs; none goes outside [min, max] (min >= 1);
and without figures (Prometheus down or silent) the count is held, never dropped.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from autoscaler.settings import AutoscaleSettings

# Decision codes: few and fixed, so they can label a metric.
SCALE_UP = "scale_up"
SCALE_DOWN = "scale_down"
HOLD_TOLERANCE = "hold_tolerance"
HOLD_STABILISING = "hold_stabilising"
HOLD_COOLDOWN = "hold_cooldown"
HOLD_NO_DATA = "hold_no_data"
HOLD_BOUND = "hold_bound"
CODES = (
    SCALE_UP,
    SCALE_DOWN,
    HOLD_TOLERANCE,
    HOLD_STABILISING,
    HOLD_COOLDOWN,
    HOLD_NO_DATA,
    HOLD_BOUND,
)


@dataclass(frozen=True)
class Observation:
    """The api service as a whole, over the last rate window."""

    rps: float  # requests/s offered: served by the replicas, or refused in front of them
    in_flight: float  # requests being served right now, summed over replicas
    refused_rps: float  # 503 answers/s
    missing: str | None = None  # a source that had no figures (the others stood in)


@dataclass(frozen=True)
class Decision:
    at: float
    current: int
    desired: int  # what the figures ask for, bounded, before stabilisation and cooldown
    applied: int  # the count to set
    code: str
    reason: str
    observation: Observation | None

    @property
    def changes(self) -> bool:
        return self.applied != self.current


def _ratio_recommendation(current: int, ratio: float, tolerance: float) -> int:
    """ceil(current x ratio), or current when the ratio is within the tolerance band."""
    if abs(ratio - 1.0) <= tolerance:
        return current
    return math.ceil(current * ratio - 1e-9)


class Policy:
    """Keeps the recommendations of the stabilisation window and the time of the last change."""

    def __init__(self, settings: AutoscaleSettings, clock: Callable[[], float]) -> None:
        self.settings = settings
        self.clock = clock
        self._recommendations: deque[tuple[float, int]] = deque()
        self._last_change: float | None = None

    def _bounded(self, replicas: int) -> int:
        return max(self.settings.min_replicas, min(self.settings.max_replicas, replicas))

    def needed_for_rate(self, rps: float) -> int:
        """The fewest replicas that serve `rps` at the target rate each."""
        return math.ceil(rps / self.settings.target_rps_per_replica - 1e-9)

    def recommend(self, current: int, observation: Observation) -> tuple[int, str]:
        """The unstabilised recommendation and what drove it."""
        s = self.settings
        if current <= 0:
            needed = self.needed_for_rate(observation.rps)
            return needed, f"no replica running; {observation.rps:.1f} req/s need {needed}"
        per_replica = observation.rps / current
        ratio = per_replica / s.target_rps_per_replica
        wanted = _ratio_recommendation(current, ratio, s.tolerance)
        why = (
            f"{per_replica:.1f} req/s per replica against {s.target_rps_per_replica:g} "
            f"(ratio {ratio:.2f})"
        )
        if s.target_inflight_per_replica > 0:
            inflight_ratio = observation.in_flight / current / s.target_inflight_per_replica
            by_inflight = _ratio_recommendation(current, inflight_ratio, s.tolerance)
            if by_inflight > wanted:
                wanted = by_inflight
                why = (
                    f"{observation.in_flight / current:.1f} in flight per replica "
                    f"(ratio {inflight_ratio:.2f})"
                )
        if observation.refused_rps > 0 and wanted <= current:
            # Refusals mean the replicas are full whatever the averages say.
            wanted = current + 1
            why = f"{observation.refused_rps:.1f} refusals (503)/s"
        return wanted, why

    def decide(self, current: int, observation: Observation | None) -> Decision:
        now = self.clock()
        s = self.settings
        if observation is None:
            # No figures: hold (within the bounds), never scale on a guess.
            held = self._bounded(current)
            return Decision(
                now,
                current,
                held,
                held,
                HOLD_NO_DATA,
                "no figures from Prometheus: holding the replica count",
                None,
            )
        raw, why = self.recommend(current, observation)
        desired = self._bounded(raw)
        window_start = now - s.stabilisation_s
        if not self._recommendations:
            # A fresh start counts the current count as recommended: no scale-down before a
            # whole window of figures has been seen.
            self._recommendations.append((now, self._bounded(current)))
        self._recommendations.append((now, desired))
        while len(self._recommendations) > 1 and self._recommendations[0][0] <= window_start:
            self._recommendations.popleft()
        code, applied = self._stabilise(current, raw, desired)
        if code in (SCALE_UP, SCALE_DOWN):
            last = self._last_change
            if last is not None and now - last < s.cooldown_s:
                code, applied = HOLD_COOLDOWN, current
                why += f"; cooldown, {s.cooldown_s - (now - last):.0f} s left"
            else:
                self._last_change = now
        elif code == HOLD_STABILISING:
            why += f"; scale-down waits for the {s.stabilisation_s:g} s stabilisation window"
        return Decision(now, current, desired, applied, code, why, observation)

    def _stabilise(self, current: int, raw: int, desired: int) -> tuple[str, int]:
        if desired > current:
            return SCALE_UP, desired
        if desired == current:
            return (HOLD_BOUND if raw != desired else HOLD_TOLERANCE), current
        # The window's highest recommendation; never below `desired`, which is itself never
        # below ceil(rate / target), the replicas the current rate needs.
        target = max(max(replicas for _, replicas in self._recommendations), desired)
        if target >= current:
            return HOLD_STABILISING, current
        return SCALE_DOWN, target
