"""The timeline of a spike cell (matrix/analyse/spike.py) as one PNG: rates, p95 and replicas
over the seconds from the jump, the jump and the fall marked."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from matrix.analyse.records import CellRecord  # noqa: E402
from matrix.report.plots import FIGURE_SIZE, _saved  # noqa: E402


def _steps(xs: list[float], ys: list[float]) -> tuple[list[float], list[float]]:
    """A value held over [start, end) for each point, as a line: x twice per point."""
    out_x, out_y = [], []
    for (start, end), value in zip(zip(xs[::2], xs[1::2], strict=True), ys, strict=True):
        out_x += [start, end]
        out_y += [value, value]
    return out_x, out_y


def plot_spike(cell: CellRecord, path: Path) -> Path:
    """Offered, served and refused (503) req/s, p95 against the objective (log scale) and the
    replicas (desired: the service's spec, what the autoscaler set; running: its tasks), every
    trial of the cell, against the seconds from the jump."""
    fig, (ax_rate, ax_p95, ax_replicas) = plt.subplots(
        3,
        1,
        figsize=(FIGURE_SIZE[0], FIGURE_SIZE[1] * 1.7),
        sharex=True,
        gridspec_kw={"height_ratios": [2, 1.3, 1]},
    )
    with _saved(fig, path):
        for timeline in cell.spike:
            label = f" (trial {timeline.trial})" if len(cell.spike) > 1 else ""
            spans = [x for p in timeline.points for x in (p.start_s, p.end_s)]
            for values, style, name in (
                ([p.offered_rps or 0.0 for p in timeline.points], "k--", "offered"),
                ([p.served_rps for p in timeline.points], "tab:green", "served (200)"),
                ([p.refused_rps for p in timeline.points], "tab:red", "refused (503)"),
            ):
                ax_rate.plot(*_steps(spans, values), style, label=name + label)
            p95 = [(p.start_s + p.end_s) / 2 for p in timeline.points if p.p95_ms is not None]
            ax_p95.plot(
                p95,
                [p.p95_ms for p in timeline.points if p.p95_ms is not None],
                marker="o",
                label="p95" + label,
            )
            ax_p95.axhline(timeline.objective_p95_ms, color="tab:red", linestyle="--")
            at = [r[0] for r in timeline.replicas]
            ax_replicas.step(at, [r[1] for r in timeline.replicas], where="post", label="desired")
            ax_replicas.step(
                at, [r[2] for r in timeline.replicas], where="post", label="running", alpha=0.7
            )
            for ax in (ax_rate, ax_p95, ax_replicas):
                ax.axvline(0.0, color="grey", linestyle=":")
                ax.axvline(timeline.peak_s, color="grey", linestyle=":")
        ax_rate.set_ylabel("req/s")
        ax_rate.legend(loc="upper right", fontsize="small")
        ax_rate.set_title(f"{cell.cell_id}: the spike from its jump (0 s) to its fall (dotted)")
        ax_p95.set_yscale("log")
        ax_p95.set_ylabel("p95 ms")
        ax_replicas.set_ylabel("api replicas")
        ax_replicas.yaxis.get_major_locator().set_params(integer=True)
        ax_replicas.legend(loc="upper right", fontsize="small")
        ax_replicas.set_xlabel("seconds from the jump")
    return path
