"""PNG plots of a matrix run (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from matrix.measurements import HistoryRow, StepWindow, throughput_series  # noqa: E402

FIGURE_SIZE = (9.0, 4.5)
DPI = 100


def plot_cell_timeline(history: Sequence[HistoryRow], windows: Sequence[StepWindow],
                       p95_objective_ms: float, title: str, path: Path) -> Path:
    """Throughput and p95 over time for one cell, with step boundaries and the objective."""
    fig, ax_rate = plt.subplots(figsize=FIGURE_SIZE)
    try:
        origin = history[0].timestamp if history else 0.0
        times = [row.timestamp - origin for row in history]
        served = throughput_series(history)
        ax_rate.step([t - origin for t, _ in served], [rate for _, rate in served], where="pre",
                     color="tab:blue", label="throughput")
        offered = [(w.start - origin, w.end - origin, w.rate_rps) for w in windows if w.rate_rps]
        for start, end, rate in offered:
            ax_rate.hlines(rate, start, end, colors="tab:blue", linestyles="dotted")
        ax_rate.set_xlabel("seconds since start")
        ax_rate.set_ylabel("requests/s (dotted: offered)", color="tab:blue")
        ax_p95 = ax_rate.twinx()
        ax_p95.plot(times, [row.p95_ms if row.p95_ms is not None else float("nan")
                            for row in history], color="tab:red", label="p95")
        ax_p95.axhline(p95_objective_ms, color="tab:red", linestyle="--", linewidth=0.8)
        ax_p95.set_ylabel("p95 ms (dashed: objective)", color="tab:red")
        for window in windows:
            ax_rate.axvline(window.start - origin, color="grey", linewidth=0.5, alpha=0.5)
        ax_rate.set_title(title)
        fig.tight_layout()
        fig.savefig(path, dpi=DPI)
    finally:
        plt.close(fig)
    return path


def plot_across_cells(cells: Sequence[dict[str, Any]], target_rps: float,
                      p95_objective_ms: float, path: Path) -> Path:
    """Knee throughput and its p95 against total CPU, one marker per replica count."""
    fig, (ax_rate, ax_p95) = plt.subplots(1, 2, figsize=(FIGURE_SIZE[0] * 1.3, FIGURE_SIZE[1]))
    try:
        measured = [c for c in cells if c.get("status") == "measured"]
        for replicas in sorted({c["replicas"] for c in measured}):
            group = [c for c in measured if c["replicas"] == replicas]
            label = f"{replicas} replica(s)"
            ax_rate.scatter([c["total_cpus"] for c in group],
                            [c.get("knee_rps") or 0.0 for c in group], label=label, s=50)
            ax_p95.scatter([c["total_cpus"] for c in group],
                           [c.get("knee_p95_ms") or float("nan") for c in group], label=label, s=50)
            for c in group:
                ax_rate.annotate(c["cell_id"], (c["total_cpus"], c.get("knee_rps") or 0.0),
                                 fontsize=7, xytext=(4, 4), textcoords="offset points")
        ax_rate.axhline(target_rps, color="black", linestyle="--", linewidth=0.8)
        ax_rate.set_xlabel("total CPU (replicas x cpus)")
        ax_rate.set_ylabel("highest rate within objective (req/s)")
        ax_rate.set_title("Capacity against CPU (dashed: target)")
        ax_p95.axhline(p95_objective_ms, color="tab:red", linestyle="--", linewidth=0.8)
        ax_p95.set_xlabel("total CPU (replicas x cpus)")
        ax_p95.set_ylabel("p95 at that rate (ms)")
        ax_p95.set_title("Latency at the knee (dashed: objective)")
        for axis in (ax_rate, ax_p95):
            axis.grid(alpha=0.3)
            if measured:
                axis.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=DPI)
    finally:
        plt.close(fig)
    return path


def plot_failures(cells: Sequence[dict[str, Any]], max_failure_ratio: float, path: Path) -> Path:
    """Failure rate of all requests per cell, against the objective's failure bound."""
    fig, ax = plt.subplots(figsize=FIGURE_SIZE)
    try:
        names = [c["cell_id"] for c in cells]
        ratios = [100.0 * (c.get("failures") or 0) / c["requests"] if c.get("requests") else 0.0
                  for c in cells]
        bars = ax.bar(range(len(names)), ratios, color="tab:orange")
        # Printed values make a run with no failures read as "0 %" rather than as a blank plot.
        ax.bar_label(bars, labels=[f"{r:.2f} %" for r in ratios], fontsize=8)
        objective_pct = 100.0 * max_failure_ratio
        ax.axhline(objective_pct, color="tab:red", linestyle="--", linewidth=0.8)
        # Failure rates cannot be negative; keep the objective line in view.
        ax.set_ylim(0, max([objective_pct * 1.5, *(r * 1.15 for r in ratios)]) or 1.0)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("failed requests (%)")
        ax.set_title("Failure rate per cell, whole run incl. steps past the knee "
                     "(dashed: objective)")
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, dpi=DPI)
    finally:
        plt.close(fig)
    return path
