"""Cell summaries, the summary table, the recommendation and horizontal-vs-vertical scaling."""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matrix.measurements import StepMetrics, knee, served_rate

HOST_SATURATION = 0.9
SUMMARY_FIELDS = (
    "cell", "status", "replicas", "cpus", "memory", "total_cpus", "knee_rps", "knee_p95_ms",
    "max_throughput_rps", "requests", "failures", "failure_ratio", "restarts", "oom_kills",
    "api_cpu_mean_cores", "api_cpu_peak_cores", "api_mem_peak_mb", "loadgen_cpu_peak_share",
    "loadgen_bottleneck", "meets_target", "nginx_requests", "error",
)


def summarise_steps(steps: Sequence[StepMetrics]) -> dict[str, Any]:
    """Knee, top throughput and load generator verdict of one cell's steps."""
    best = knee(steps)
    saturated = [s.index for s in steps if s.loadgen_saturated]
    shares = [s.loadgen_cpu_share for s in steps if s.loadgen_cpu_share is not None]
    process_shares = [s.loadgen_max_process_share for s in steps
                      if s.loadgen_max_process_share is not None]
    first_failure = next((s for s in sorted(steps, key=lambda s: s.index)
                          if not s.meets_objective), None)
    host = first_failure.host_cpu_share if first_failure else None
    return {
        # The whole machine was busy where the cell broke: on a shared or small host the limit
        # may be the host (Locust, Nginx and the API on the same cores), not the cell's.
        "host_saturated_at_break": host is not None and host > HOST_SATURATION,
        "knee_rps": served_rate(best) if best else None,
        "knee_p95_ms": best.p95_ms if best else None,
        "knee_step": best.index if best else None,
        "breaking_step": first_failure.index if first_failure else None,
        "breaking_reasons": first_failure.reasons if first_failure else [],
        "max_throughput_rps": max((s.throughput_rps for s in steps), default=0.0),
        "loadgen_cpu_peak_share": max(shares + process_shares, default=None),
        "loadgen_saturated_steps": saturated,
        # The generator, not the service, may explain a break when it was saturated there.
        "loadgen_bottleneck": bool(saturated) and (
            first_failure is None or first_failure.loadgen_saturated
            or any(i <= first_failure.index for i in saturated)),
    }


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


def summary_row(cell: dict[str, Any], target_rps: float) -> dict[str, Any]:
    requests = cell.get("requests") or 0
    failures = cell.get("failures") or 0
    knee_rps = cell.get("knee_rps")
    nginx = cell.get("nginx_delta") or {}
    return {
        "cell": cell["cell_id"], "status": cell["status"], "replicas": cell["replicas"],
        "cpus": cell["cpus"], "memory": cell["memory"], "total_cpus": cell["total_cpus"],
        "knee_rps": knee_rps, "knee_p95_ms": cell.get("knee_p95_ms"),
        "max_throughput_rps": cell.get("max_throughput_rps"),
        "requests": requests, "failures": failures,
        "failure_ratio": round(failures / requests, 6) if requests else None,
        "restarts": cell.get("restarts"), "oom_kills": cell.get("oom_kills"),
        "api_cpu_mean_cores": cell.get("api_cpu_mean_cores"),
        "api_cpu_peak_cores": cell.get("api_cpu_peak_cores"),
        "api_mem_peak_mb": cell.get("api_mem_peak_mb"),
        "loadgen_cpu_peak_share": cell.get("loadgen_cpu_peak_share"),
        "loadgen_bottleneck": cell.get("loadgen_bottleneck", False),
        "meets_target": meets_target(cell, target_rps),
        "nginx_requests": nginx.get("requests"), "error": cell.get("error") or "",
    }


def meets_target(cell: dict[str, Any], target_rps: float) -> bool:
    """Served the target rate within the objective, without a restart or an OOM kill."""
    return (cell.get("status") == "measured" and cell.get("knee_rps") is not None
            and cell["knee_rps"] >= target_rps - 1e-9
            and not cell.get("restarts") and not cell.get("oom_kills"))


def write_summary(path: Path, cells: Sequence[dict[str, Any]], target_rps: float) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=SUMMARY_FIELDS)
        writer.writeheader()
        for cell in cells:
            writer.writerow(summary_row(cell, target_rps))


def _cost_key(cell: dict[str, Any]) -> tuple[float, int, int]:
    return (cell["total_cpus"], cell["replicas"] * cell["memory_bytes"], cell["replicas"])


@dataclass(frozen=True)
class Recommendation:
    cell: dict[str, Any] | None
    text: str


def recommend(cells: Sequence[dict[str, Any]], target_rps: float) -> Recommendation:
    """The cheapest configuration (total CPU, then total memory, then fewer replicas) that
    served the target rate within the objective."""
    eligible = sorted((c for c in cells if meets_target(c, target_rps)), key=_cost_key)
    if eligible:
        best = eligible[0]
        text = (f"The cheapest configuration that meets the objective at {target_rps:g} req/s is "
                f"**{best['replicas']} replica(s) x {best['cpus']:g} CPU x {best['memory']}** "
                f"({best['total_cpus']:g} CPU in total; it held up to {best['knee_rps']:g} req/s).")
        if best.get("loadgen_bottleneck"):
            text += (" The load generator was near saturation in this cell, so its true "
                     "capacity may be higher.")
        return Recommendation(best, text)
    measured = [c for c in cells if c.get("status") == "measured" and c.get("knee_rps")]
    if not measured:
        return Recommendation(None, f"No configuration met the objective at any measured rate; "
                                    f"none can be recommended for {target_rps:g} req/s.")
    top = max(measured, key=lambda c: c["knee_rps"])
    text = (f"No measured configuration met the objective at {target_rps:g} req/s. The best, "
            f"{top['replicas']} x {top['cpus']:g} CPU x {top['memory']}, held "
            f"{top['knee_rps']:g} req/s: measure larger cells.")
    if any(c.get("loadgen_bottleneck") for c in measured):
        text += (" Some cells were limited by the load generator: give Locust more processes or "
                 "machines before concluding.")
    return Recommendation(None, text)


@dataclass(frozen=True)
class ScalingComparison:
    total_cpus: float
    horizontal: dict[str, Any]  # more, smaller replicas
    vertical: dict[str, Any]  # fewer, bigger replicas

    @property
    def gain(self) -> float | None:
        """Horizontal knee over vertical knee (1.25 = 25 % more rate from spreading out)."""
        h, v = self.horizontal.get("knee_rps"), self.vertical.get("knee_rps")
        if h is None or v is None or v == 0:
            return None
        return float(h) / float(v)

    def describe(self) -> str:
        h, v = self.horizontal, self.vertical
        h_knee = f"{h['knee_rps']:g} req/s" if h.get("knee_rps") is not None else "nothing"
        v_knee = f"{v['knee_rps']:g} req/s" if v.get("knee_rps") is not None else "nothing"
        line = (f"At {self.total_cpus:g} CPU in total, {h['replicas']} x {h['cpus']:g} CPU held "
                f"{h_knee} and {v['replicas']} x {v['cpus']:g} CPU held {v_knee}")
        gain = self.gain
        if gain is not None:
            line += f": horizontal scaling bought {gain - 1:+.0%}"
        if h.get("loadgen_bottleneck") or v.get("loadgen_bottleneck"):
            line += " (load generator near saturation: treat as a lower bound)"
        return line + "."


def scaling_comparisons(cells: Sequence[dict[str, Any]]) -> list[ScalingComparison]:
    """Pairs of cells with the same total CPU: most replicas against fewest replicas."""
    groups: dict[float, list[dict[str, Any]]] = defaultdict(list)
    for cell in cells:
        if cell.get("status") == "measured":
            groups[round(cell["total_cpus"], 6)].append(cell)
    comparisons = []
    for total, members in sorted(groups.items()):
        replica_counts = {c["replicas"] for c in members}
        if len(replica_counts) < 2:
            continue

        def best_of(count: int, members: list[dict[str, Any]] = members) -> dict[str, Any]:
            candidates = [c for c in members if c["replicas"] == count]
            return max(candidates, key=lambda c: c.get("knee_rps") or 0.0)

        comparisons.append(ScalingComparison(total, best_of(max(replica_counts)),
                                             best_of(min(replica_counts))))
    return comparisons
