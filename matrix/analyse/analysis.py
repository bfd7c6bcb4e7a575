"""Across cells: the summary table, the recommendation and horizontal against vertical scaling.

Every decision uses each cell's *lowest* trial: a configuration is recommended only if it held
the target load every time it was measured."""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from matrix.analyse.records import CellRecord

HOST_SATURATION = 0.9
SUMMARY_FIELDS = (
    "cell",
    "status",
    "replicas",
    "cpus",
    "memory",
    "total_cpus",
    "trials",
    "knee_rps_low",
    "knee_rps_median",
    "knee_rps_high",
    "knee_offered_rps",
    "knee_p95_ms",
    "knee_p99_ms",
    "knee_throttled_share",
    "max_served_rps",
    "requests",
    "failures",
    "failure_ratio",
    "restarts",
    "oom_kills",
    "api_cpu_peak_cores",
    "api_mem_peak_mb",
    "nginx_requests",
    "generator_limited",
    "meets_target",
    "error",
)


def docker_stats_summary(path: Path, start: float, end: float) -> dict[str, float | None]:
    """Mean and peak CPU (in cores, all api tasks together) and peak memory during [start, end]."""
    by_time: dict[float, float] = defaultdict(float)
    mem_peak = 0
    if path.is_file():
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                when = float(row["timestamp"])
                if start <= when <= end:
                    by_time[when] += float(row["cpu_percent"]) / 100.0
                    mem_peak = max(mem_peak, int(row["mem_bytes"]))
    totals = list(by_time.values())
    return {
        "api_cpu_mean_cores": round(sum(totals) / len(totals), 3) if totals else None,
        "api_cpu_peak_cores": round(max(totals), 3) if totals else None,
        "api_mem_peak_mb": round(mem_peak / 1024**2, 1) if mem_peak else None,
    }


def meets_target(cell: CellRecord, target_rps: float) -> bool:
    """Every trial served the target rate within the objective, without a restart or an OOM
    kill."""
    return (
        cell.status == "measured"
        and cell.knee_low is not None
        and cell.knee_low >= target_rps - 1e-9
        and not cell.restarts
        and not cell.oom_kills
    )


def summary_row(cell: CellRecord, target_rps: float) -> dict[str, object]:
    lowest = cell.lowest_trial
    knee = lowest.knee if lowest else None
    return {
        "cell": cell.cell_id,
        "status": cell.status,
        "replicas": cell.replicas,
        "cpus": cell.cpus,
        "memory": cell.memory,
        "total_cpus": cell.total_cpus,
        "trials": len(cell.trials),
        "knee_rps_low": cell.knee_low,
        "knee_rps_median": cell.knee_median,
        "knee_rps_high": cell.knee_high,
        "knee_offered_rps": knee.offered_rps if knee else None,
        "knee_p95_ms": knee.p95_ms if knee else None,
        "knee_p99_ms": knee.p99_ms if knee else None,
        "knee_throttled_share": knee.throttled_share if knee else None,
        "max_served_rps": round(cell.max_served_rps, 3),
        "requests": cell.requests,
        "failures": cell.failures,
        "failure_ratio": round(cell.failure_ratio, 6) if cell.failure_ratio is not None else None,
        "restarts": cell.restarts,
        "oom_kills": cell.oom_kills,
        "api_cpu_peak_cores": cell.api_cpu_peak_cores,
        "api_mem_peak_mb": cell.api_mem_peak_mb,
        "nginx_requests": cell.nginx_requests,
        "generator_limited": cell.generator_limited,
        "meets_target": meets_target(cell, target_rps),
        "error": cell.error or "",
    }


def write_summary(path: Path, cells: Sequence[CellRecord], target_rps: float) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=SUMMARY_FIELDS)
        writer.writeheader()
        for cell in cells:
            writer.writerow(summary_row(cell, target_rps))


def _cost_key(cell: CellRecord) -> tuple[float, int, int]:
    return (cell.total_cpus, cell.replicas * cell.memory_bytes, cell.replicas)


def _shape(cell: CellRecord) -> str:
    return f"{cell.replicas} replica(s) x {cell.cpus:g} CPU x {cell.memory}"


def _range(cell: CellRecord) -> str:
    if len(cell.trials) == 1:
        return f"{cell.knee_low:.0f} req/s"
    return (
        f"{cell.knee_median:.0f} req/s (median of {len(cell.trials)} trials, "
        f"{cell.knee_low:.0f}-{cell.knee_high:.0f})"
    )


@dataclass(frozen=True)
class Recommendation:
    cell: CellRecord | None
    text: str


def recommend(cells: Sequence[CellRecord], target_rps: float) -> Recommendation:
    """The cheapest configuration (total CPU, then total memory, then fewer replicas) whose every
    trial served the target rate within the objective."""
    eligible = sorted((c for c in cells if meets_target(c, target_rps)), key=_cost_key)
    if eligible:
        best = eligible[0]
        text = (
            f"The cheapest configuration that met the objective at {target_rps:g} req/s in "
            f"every trial is **{_shape(best)}** ({best.total_cpus:g} CPU in total; it "
            f"served {_range(best)} at its limit)."
        )
        if best.generator_limited:
            text += (
                " The load generator could not keep its schedule in this cell, so its true "
                "capacity may be higher."
            )
        return Recommendation(best, text)
    measured = [c for c in cells if c.status == "measured" and c.knee_low]
    if not measured:
        return Recommendation(
            None,
            f"No configuration met the objective at any measured rate; "
            f"none can be recommended for {target_rps:g} req/s.",
        )
    top = max(measured, key=lambda c: c.knee_low or 0.0)
    text = (
        f"No measured configuration met the objective at {target_rps:g} req/s in every "
        f"trial. The best, {_shape(top)}, served {_range(top)}: measure larger cells."
    )
    if any(c.generator_limited for c in measured):
        text += (
            " Some cells were limited by the load generator: give Locust more processes or "
            "machines before concluding."
        )
    return Recommendation(None, text)


@dataclass(frozen=True)
class ScalingComparison:
    total_cpus: float
    horizontal: CellRecord  # more, smaller replicas
    vertical: CellRecord  # fewer, bigger replicas

    @property
    def gain(self) -> float | None:
        """Horizontal median knee over vertical median knee (1.25 = 25 % more)."""
        h, v = self.horizontal.knee_median, self.vertical.knee_median
        if not h or not v:
            return None
        return float(h) / float(v)

    def describe(self) -> str:
        h, v = self.horizontal, self.vertical
        line = (
            f"At {self.total_cpus:g} CPU in total, {h.replicas} x {h.cpus:g} CPU served "
            f"{_range(h) if h.trials else 'nothing'} and {v.replicas} x {v.cpus:g} CPU "
            f"served {_range(v) if v.trials else 'nothing'}"
        )
        gain = self.gain
        if h.overlaps(v):
            line += ": their trial ranges overlap, so there is **no measurable difference**"
        elif gain is not None:
            # Said as a positive share either way: "cost -20%" would read as a saving.
            if gain >= 1:
                line += f": the {h.replicas} smaller replicas served {gain - 1:.0%} more"
            else:
                line += f": the {h.replicas} smaller replicas served {1 - gain:.0%} less"
        if h.generator_limited or v.generator_limited:
            line += " (load generator limited in one of them: treat as a lower bound)"
        return line + "."


def scaling_comparisons(cells: Sequence[CellRecord]) -> list[ScalingComparison]:
    """Pairs of cells with the same total CPU: most replicas against fewest replicas."""
    groups: dict[float, list[CellRecord]] = defaultdict(list)
    for cell in cells:
        if cell.status == "measured":
            groups[round(cell.total_cpus, 6)].append(cell)
    comparisons = []
    for total, members in sorted(groups.items()):
        counts = {c.replicas for c in members}
        if len(counts) < 2:
            continue

        def best_of(count: int, members: list[CellRecord] = members) -> CellRecord:
            return max(
                (c for c in members if c.replicas == count), key=lambda c: c.knee_median or 0.0
            )

        comparisons.append(ScalingComparison(total, best_of(max(counts)), best_of(min(counts))))
    return comparisons
