"""The spike: a base rate, a jump to a multiple of one replica's knee, a hold, and the fall back
to the base rate, held again (open model: arrivals on a schedule, whatever the answers).

A pure schedule, shared by its two drivers: the locustfile's `spike` profile (the matrix's
`kind: spike`, steps of constant rate run by the open-model driver, none skipped on failure) and
the autoscaler's Swarm test (tests/autoscaler/spike.py, its own small asyncio generator).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

BASE, PEAK, AFTER = "base", "peak", "after"


@dataclass(frozen=True)
class Phase:
    """A stretch of constant arrival rate; a rate of 0 is a pause."""

    name: str
    rate: float  # requests/s
    seconds: float


def spike_phases(
    base_rate: float, peak_rate: float, lead_s: float, peak_s: float, tail_s: float
) -> list[Phase]:
    """base_rate for lead_s, peak_rate for peak_s, base_rate again for tail_s (a phase of 0 s
    is left out)."""
    if base_rate < 0 or peak_rate <= base_rate:
        raise ValueError(
            f"a spike needs 0 <= base rate < peak rate, got {base_rate:g} and {peak_rate:g}"
        )
    if min(lead_s, peak_s, tail_s) < 0 or peak_s == 0:
        raise ValueError("a spike needs a peak of more than 0 s and no negative phase")
    phases = [Phase(BASE, base_rate, lead_s), Phase(PEAK, peak_rate, peak_s)]
    phases.append(Phase(AFTER, base_rate, tail_s))
    return [phase for phase in phases if phase.seconds > 0]


def phase_steps(phase: Phase, step_s: float) -> int:
    """Whole steps of step_s that cover the phase (a phase is never cut short)."""
    return math.ceil(phase.seconds / step_s - 1e-9)


def step_rates(phases: list[Phase], step_s: float) -> list[float]:
    """One rate per step of step_s: each phase rounded up to whole steps."""
    if step_s <= 0:
        raise ValueError(f"step length must be > 0 s, got {step_s:g}")
    return [phase.rate for phase in phases for _ in range(phase_steps(phase, step_s))]


def spike_counts(text: str) -> tuple[int, int, int]:
    """'LEAD,PEAK,TAIL' step counts (the locustfile's --spike-steps) as three whole numbers."""
    parts = text.split(",")
    try:
        counts = tuple(int(part) for part in parts)
    except ValueError:
        counts = ()
    if len(counts) != 3 or min(counts) < 0 or counts[1] < 1:
        raise ValueError(
            f"--spike-steps takes LEAD,PEAK,TAIL step counts with PEAK >= 1, not {text!r}"
        )
    return counts[0], counts[1], counts[2]


def spike_step_rates(
    base_rate: float, peak_rate: float, counts: tuple[int, int, int]
) -> list[float]:
    """The rate of every step: `counts` steps of base, peak and base again."""
    lead, peak, tail = counts
    return step_rates(spike_phases(base_rate, peak_rate, lead, peak, tail), 1.0)
