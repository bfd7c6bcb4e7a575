"""Two runs of the same cells side by side: do their knees agree, and if not, what moved.

A rerun rarely gives the same knees, and issue 18 asks that each run's median lie inside the
other's interval. When it does not, a user needs to know whether the lab stopped somewhere else
or the cell served less. A knee step whose replicas used their whole CPU quota is bound by it:
there served x demand = quota (the utilisation law), so the knee is the quota over what one
answer cost, and two such knees differ exactly as that cost did. Whether the host itself changed
speed in between, the host speed index says (the bare ASGI app's CPU per request, measured at
each run's start and end).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from matrix.analyse.confidence import Interval, ratio_interval
from matrix.analyse.records import CellRecord

# A knee step whose api containers used at least this share of their CPU quota is bound by it
# (every knee step of the four quick runs in docs/reruns used 99-101 %).
QUOTA_BOUND_SHARE = 0.9


def quota_share(cell: CellRecord) -> float | None:
    """The api containers' CPU at the knee step over the cell's quota (replicas x CPU limit),
    the median over the trials that have it."""
    shares = [
        t.knee.api_cpu_cores / cell.total_cpus
        for t in cell.trials
        if t.knee is not None and t.knee.api_cpu_cores is not None and cell.total_cpus > 0
    ]
    return statistics.median(shares) if shares else None


@dataclass(frozen=True)
class CellComparison:
    """One cell measured in run A and in run B."""

    a: CellRecord
    b: CellRecord

    @property
    def cell_id(self) -> str:
        return self.a.cell_id

    @property
    def knee_ratio(self) -> Interval | None:
        """B's typical knee over A's, with its 95 % Welch interval (as two cells of one run
        are compared); None when either run has fewer than two trials."""
        return ratio_interval(
            self.b.knees, self.a.knees, (self.b.knee_resolution, self.a.knee_resolution)
        )

    @property
    def agree(self) -> bool | None:
        """Whether each run's median lies inside the other's 95 % interval (issue 18's
        test); None when either has no interval."""
        ci_a, ci_b = self.a.knee_ci, self.b.knee_ci
        med_a, med_b = self.a.knee_median, self.b.knee_median
        if ci_a is None or ci_b is None or med_a is None or med_b is None:
            return None
        return ci_b.contains(med_a) and ci_a.contains(med_b)

    @property
    def demand_ratio(self) -> float | None:
        """What one answer cost at B's knee over what it cost at A's (CPU per answer of the
        api containers, the median over each run's trials)."""
        da, db = self.a.knee_demand_us, self.b.knee_demand_us
        return db / da if da and db else None

    @property
    def median_ratio(self) -> float | None:
        """B's median knee over A's."""
        med_a, med_b = self.a.knee_median, self.b.knee_median
        return med_b / med_a if med_a and med_b else None

    @property
    def quota_shares(self) -> tuple[float | None, float | None]:
        """quota_share of the cell in run A and in run B."""
        return quota_share(self.a), quota_share(self.b)

    @property
    def quota_bound(self) -> bool | None:
        """Whether both runs' knee steps used their whole quota (QUOTA_BOUND_SHARE): then the
        knees differ as the cost of one answer did, and the demand ratio says by how much."""
        share_a, share_b = self.quota_shares
        if share_a is None or share_b is None:
            return None
        return share_a >= QUOTA_BOUND_SHARE and share_b >= QUOTA_BOUND_SHARE


def compare_cells(
    cells_a: Sequence[CellRecord], cells_b: Sequence[CellRecord]
) -> list[CellComparison]:
    """The cells both runs measured with the same replicas and CPU, in A's order."""
    by_id = {cell.cell_id: cell for cell in cells_b if cell.status == "measured" and cell.trials}
    return [
        CellComparison(cell, by_id[cell.cell_id])
        for cell in cells_a
        if cell.status == "measured" and cell.trials and cell.cell_id in by_id
    ]


def speed_index(start: float | None, end: float | None) -> float | None:
    """A run's host speed index: the mean of its start and end figures (µs per request;
    higher is slower), or the one it has."""
    values = [v for v in (start, end) if v is not None]
    return statistics.fmean(values) if values else None
