"""Across cells: the summary table, the recommendation and horizontal against vertical scaling.

Every decision uses the low end of each cell's 95 % knee interval (with one trial, that trial):
a configuration is recommended only if it can be relied on to hold the target load. Two cells
are compared by the interval of the ratio of their knees (matrix/analyse/confidence.py)."""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from matrix.analyse.capacity_model import Prediction
from matrix.analyse.confidence import Interval, ratio_interval
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
    "trials_ended",
    "knee_rps_low",
    "knee_rps_median",
    "knee_rps_high",
    "knee_rps_ci_low",
    "knee_rps_ci_high",
    "demand_us_per_request",
    "predicted_knee_rps",
    "predicted_saturation_rps",
    "prediction_error",
    "closed_loop_rps",
    "closed_loop_p95_ms",
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
    """The low end of the knee's interval (one trial: that trial) reaches the target rate,
    without a restart or an OOM kill."""
    floor = cell.knee_floor
    return (
        cell.status == "measured"
        and floor is not None
        and floor >= target_rps - 1e-9
        and not cell.restarts
        and not cell.oom_kills
    )


def _round(value: float | None, digits: int = 1) -> float | None:
    return round(value, digits) if value is not None else None


def prediction_error(cell: CellRecord, prediction: Prediction | None) -> float | None:
    """Predicted over measured median knee, minus one (0.1: predicted 10 % high)."""
    if prediction is None or not cell.knee_median:
        return None
    return prediction.knee_rps / cell.knee_median - 1


def summary_row(
    cell: CellRecord, target_rps: float, prediction: Prediction | None = None
) -> dict[str, object]:
    lowest = cell.lowest_trial
    knee = lowest.knee if lowest else None
    interval = cell.knee_ci
    closed = cell.closed_loop.steps[0] if cell.closed_loop and cell.closed_loop.steps else None
    error = prediction_error(cell, prediction)
    return {
        "cell": cell.cell_id,
        "status": cell.status,
        "replicas": cell.replicas,
        "cpus": cell.cpus,
        "memory": cell.memory,
        "total_cpus": cell.total_cpus,
        "trials": len(cell.trials),
        "trials_ended": cell.trials_ended,
        "knee_rps_low": cell.knee_low,
        "knee_rps_median": _round(cell.knee_median),
        "knee_rps_high": cell.knee_high,
        "knee_rps_ci_low": _round(interval.low if interval else None),
        "knee_rps_ci_high": _round(interval.high if interval else None),
        "demand_us_per_request": _round(cell.knee_demand_us),
        "predicted_knee_rps": _round(prediction.knee_rps if prediction else None),
        "predicted_saturation_rps": _round(prediction.saturation_rps if prediction else None),
        "prediction_error": _round(error, 4),
        "closed_loop_rps": _round(closed.served_rps if closed else None),
        "closed_loop_p95_ms": _round(closed.p95_ms if closed else None, 2),
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


def write_summary(
    path: Path,
    cells: Sequence[CellRecord],
    target_rps: float,
    predictions: Mapping[str, Prediction | None] | None = None,
) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=SUMMARY_FIELDS)
        writer.writeheader()
        for cell in cells:
            writer.writerow(summary_row(cell, target_rps, (predictions or {}).get(cell.cell_id)))


def _cost_key(cell: CellRecord) -> tuple[float, int, int]:
    return (cell.total_cpus, cell.replicas * cell.memory_bytes, cell.replicas)


def _shape(cell: CellRecord) -> str:
    return f"{cell.replicas} replica(s) x {cell.cpus:g} CPU x {cell.memory}"


def _range(cell: CellRecord) -> str:
    """The knee as a person reads it: the median with its 95 % interval."""
    interval = cell.knee_ci
    if interval is None:
        if len(cell.trials) == 1:
            return f"{cell.knee_low:.0f} req/s (one trial, no interval)"
        return (
            f"{cell.knee_median:.0f} req/s (median of {len(cell.trials)} trials, "
            f"{cell.knee_low:.0f}-{cell.knee_high:.0f}; no interval: a trial served nothing)"
        )
    return (
        f"{cell.knee_median:.0f} req/s (median of {len(cell.trials)} trials, "
        f"95 % interval {interval.low:.0f}-{interval.high:.0f})"
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
            f"The cheapest configuration whose knee interval's low end reaches "
            f"{target_rps:g} req/s is **{_shape(best)}** ({best.total_cpus:g} CPU in total; "
            f"it served {_range(best)} at its limit)."
        )
        if best.generator_limited:
            text += (
                " The load generator could not keep its schedule in this cell, so its true "
                "capacity may be higher."
            )
        return Recommendation(best, text)
    measured = [c for c in cells if c.status == "measured" and c.knee_median]
    if not measured:
        return Recommendation(
            None,
            f"No configuration met the objective at any measured rate; "
            f"none can be recommended for {target_rps:g} req/s.",
        )
    top = max(measured, key=lambda c: c.knee_floor or 0.0)
    text = (
        f"No measured configuration can be relied on for {target_rps:g} req/s (the low end "
        f"of its knee interval). The best, {_shape(top)}, served {_range(top)}: measure "
        f"larger cells, or more trials where an interval is wide."
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
    def ratio(self) -> Interval | None:
        """Horizontal knee over vertical knee with its 95 % interval (1.25: 25 % more)."""
        h, v = self.horizontal, self.vertical
        return ratio_interval(h.knees, v.knees, (h.knee_resolution, v.knee_resolution))

    @property
    def decided(self) -> bool:
        """Whether the ratio's interval excludes 1: one of the two serves more."""
        ratio = self.ratio
        return ratio is not None and not ratio.contains(1.0)

    def describe(self) -> str:
        h, v = self.horizontal, self.vertical
        shape_h, shape_v = f"{h.replicas} x {h.cpus:g}", f"{v.replicas} x {v.cpus:g}"
        line = (
            f"At {self.total_cpus:g} CPU in total, {shape_h} CPU served "
            f"{_range(h) if h.trials else 'nothing'} and {shape_v} CPU served "
            f"{_range(v) if v.trials else 'nothing'}"
        )
        ratio = self.ratio
        if ratio is None:
            line += (
                ": **undecided**, each needs at least two trials that served something to "
                "give the ratio an interval"
            )
        else:
            figure = ratio.ratio_text()
            if ratio.contains(1.0):
                line += (
                    f": {shape_h} serves {figure} what {shape_v} serves, **undecided at this "
                    "budget** (the 95 % interval contains 1)"
                )
            else:
                line += f": **{shape_h} serves {figure} what {shape_v} serves**"
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
