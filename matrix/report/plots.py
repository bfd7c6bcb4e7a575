"""PNG plots of a matrix run (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.figure import Figure  # noqa: E402

from matrix.analyse.capacity_model import Prediction  # noqa: E402
from matrix.analyse.records import CellRecord  # noqa: E402

FIGURE_SIZE = (9.0, 4.5)
DPI = 100
PASS_COLOUR, FAIL_COLOUR, LIMITED_COLOUR = "tab:green", "tab:red", "tab:grey"


@contextmanager
def _saved(fig: Figure, path: Path) -> Iterator[None]:
    """Lays out and saves the figure drawn inside the block, and always closes it (pyplot keeps
    every open figure alive)."""
    try:
        yield
        fig.tight_layout()
        fig.savefig(path, dpi=DPI)
    finally:
        plt.close(fig)


def plot_cell_steps(cell: CellRecord, p95_objective_ms: float, path: Path) -> Path:
    """Every step of every trial of one cell, in the order the search ran them: offered rate
    (hollow) and served rate (filled, green when the step passed), p95 against the objective,
    and the share of CFS periods in which the replicas were throttled."""
    fig, (ax_rate, ax_p95, ax_throttle) = plt.subplots(
        3,
        1,
        figsize=(FIGURE_SIZE[0], FIGURE_SIZE[1] * 1.6),
        sharex=True,
        gridspec_kw={"height_ratios": [2, 1.3, 1]},
    )
    with _saved(fig, path):
        position = 0
        ticks: list[tuple[float, str]] = []
        for trial in cell.trials:
            xs = list(range(position, position + len(trial.steps)))
            colours = [
                PASS_COLOUR if s.passed else LIMITED_COLOUR if s.generator_limited else FAIL_COLOUR
                for s in trial.steps
            ]
            ax_rate.scatter(
                xs,
                [s.offered_rps or 0.0 for s in trial.steps],
                facecolors="none",
                edgecolors="black",
                s=40,
                label="offered" if position == 0 else None,
            )
            ax_rate.scatter(
                xs,
                [s.served_rps for s in trial.steps],
                c=colours,
                s=25,
                label="served" if position == 0 else None,
            )
            ax_p95.scatter(
                xs,
                [s.p95_ms if s.p95_ms is not None else float("nan") for s in trial.steps],
                c=colours,
                s=25,
            )
            ax_throttle.bar(
                xs,
                [100.0 * (s.throttled_share or 0.0) for s in trial.steps],
                color="tab:purple",
                alpha=0.7,
            )
            if trial.knee_rps is not None:
                ax_rate.hlines(
                    trial.knee_rps,
                    xs[0] - 0.4,
                    xs[-1] + 0.4,
                    colors=PASS_COLOUR,
                    linestyles="dashed",
                    linewidth=0.8,
                )
            ticks.append(((xs[0] + xs[-1]) / 2.0 if xs else position, f"trial {trial.trial}"))
            position += len(trial.steps) + 1
            ax_rate.axvline(position - 1, color="grey", linewidth=0.5, alpha=0.5)
        ax_rate.set_ylabel("requests/s")
        ax_rate.set_title(
            f"{cell.cell_id}: steps in search order (green pass, red fail, grey "
            "generator-limited; dashed: knee)",
            fontsize=10,
        )
        ax_rate.legend(fontsize=8, loc="upper left")
        ax_p95.axhline(p95_objective_ms, color="tab:red", linestyle="--", linewidth=0.8)
        ax_p95.set_yscale("log")
        ax_p95.set_ylabel("p95 ms (log)")
        ax_throttle.set_ylabel("throttled %")
        ax_throttle.set_ylim(0, 100)
        ax_throttle.set_xticks([t for t, _ in ticks], [label for _, label in ticks])
        for axis in (ax_rate, ax_p95, ax_throttle):
            axis.grid(alpha=0.3)
    return path


def _knee_bar(cell: CellRecord) -> tuple[float, float]:
    """The knee's 95 % interval, or the trials' range without one."""
    interval = cell.knee_ci
    if interval is not None:
        return interval.low, interval.high
    return cell.knee_low or 0.0, cell.knee_high or 0.0


def plot_across_cells(
    cells: Sequence[CellRecord],
    target_rps: float,
    p95_objective_ms: float,
    path: Path,
    predicted: Mapping[str, Prediction | None] | None = None,
) -> Path:
    """Knee (median, with its 95 % interval as error bars, cut at twice the largest median so a
    wide interval does not flatten the rest) and its p95 against total CPU, one colour per
    replica count; the capacity model's knee as a black cross where there is one."""
    fig, (ax_rate, ax_p95) = plt.subplots(1, 2, figsize=(FIGURE_SIZE[0] * 1.3, FIGURE_SIZE[1]))
    with _saved(fig, path):
        measured = [c for c in cells if c.status == "measured" and c.trials]
        for replicas in sorted({c.replicas for c in measured}):
            group = [c for c in measured if c.replicas == replicas]
            label = f"{replicas} replica(s)"
            medians = [c.knee_median or 0.0 for c in group]
            bars = [_knee_bar(c) for c in group]
            errors = [
                [max(0.0, m - low) for (low, _), m in zip(bars, medians, strict=True)],
                [max(0.0, high - m) for (_, high), m in zip(bars, medians, strict=True)],
            ]
            ax_rate.errorbar(
                [c.total_cpus for c in group],
                medians,
                yerr=errors,
                fmt="o",
                capsize=5,
                markersize=7,
                label=label,
            )
            knees = [c.lowest_trial.knee if c.lowest_trial else None for c in group]
            ax_p95.scatter(
                [c.total_cpus for c in group],
                [k.p95_ms if k and k.p95_ms is not None else float("nan") for k in knees],
                label=label,
                s=50,
            )
            for c, median in zip(group, medians, strict=True):
                ax_rate.annotate(
                    c.cell_id,
                    (c.total_cpus, median),
                    fontsize=7,
                    xytext=(6, 4),
                    textcoords="offset points",
                )
        forecasts = [(c.total_cpus, (predicted or {}).get(c.cell_id)) for c in measured]
        shown = [(x, p.knee_rps) for x, p in forecasts if p is not None]
        if shown:
            ax_rate.scatter(
                [x for x, _ in shown],
                [y for _, y in shown],
                marker="x",
                color="black",
                s=60,
                label="predicted",
                zorder=3,
            )
        ax_rate.axhline(target_rps, color="black", linestyle="--", linewidth=0.8)
        ax_rate.set_xlabel("total CPU (replicas x cpus)")
        ax_rate.set_ylabel("served req/s at the knee")
        ax_rate.set_title("Capacity against CPU (bars: 95 % interval; dashed: target)")
        top = max([c.knee_median or 0.0 for c in measured] + [target_rps / 2]) * 2
        ax_rate.set_ylim(0, top)
        ax_p95.axhline(p95_objective_ms, color="tab:red", linestyle="--", linewidth=0.8)
        ax_p95.set_xlabel("total CPU (replicas x cpus)")
        ax_p95.set_ylabel("p95 at the knee (ms)")
        ax_p95.set_title("Latency at the knee (dashed: objective)")
        ax_p95.set_ylim(bottom=0)
        for axis in (ax_rate, ax_p95):
            axis.grid(alpha=0.3)
            if measured:
                axis.legend(fontsize=8)
    return path


def plot_failures(cells: Sequence[CellRecord], max_failure_ratio: float, path: Path) -> Path:
    """Failure rate of all requests per cell, against the objective's failure bound."""
    fig, ax = plt.subplots(figsize=FIGURE_SIZE)
    with _saved(fig, path):
        names = [c.cell_id for c in cells]
        ratios = [100.0 * (c.failure_ratio or 0.0) for c in cells]
        bars = ax.bar(range(len(names)), ratios, color="tab:orange")
        # Printed values make a run with no failures read as "0 %" rather than as a blank plot.
        ax.bar_label(bars, labels=[f"{r:.2f} %" for r in ratios], fontsize=8)
        objective_pct = 100.0 * max_failure_ratio
        ax.axhline(objective_pct, color="tab:red", linestyle="--", linewidth=0.8)
        # Failure rates cannot be negative; keep the objective line in view.
        ax.set_ylim(0, max([objective_pct * 1.5, *(r * 1.15 for r in ratios)]) or 1.0)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("failed requests (%)")
        ax.set_title(
            "Failure rate per cell, every step incl. those past the knee (dashed: objective)"
        )
        ax.grid(axis="y", alpha=0.3)
    return path


def plot_workshop_timeline(
    cells: Sequence[CellRecord], p95_objective_ms: float, path: Path
) -> Path:
    """The workshop load over time, one row per configuration: successful answers per second
    (solid) and 503 refusals (dotted) with admission control on and off, users ramp on a second
    axis; and the p95 of each second's successful answers against the objective."""
    configs: dict[str, list[CellRecord]] = {}
    for cell in cells:
        if cell.trials and cell.trials[0].timeline:
            configs.setdefault(cell.config_id or cell.cell_id, []).append(cell)
    rows = max(1, len(configs))
    fig, axes = plt.subplots(rows, 2, figsize=(FIGURE_SIZE[0] * 1.3, 2.6 * rows), squeeze=False)
    with _saved(fig, path):
        for (config, group), (ax_rate, ax_p95) in zip(configs.items(), axes, strict=False):
            users_axis = ax_rate.twinx()
            for cell in group:
                timeline = cell.trials[0].timeline
                start = timeline[0].second
                xs = [p.second - start for p in timeline]
                off = cell.admission_limit == 0
                colour = "tab:orange" if off else "tab:blue"
                label = "admission off" if off else "admission on"
                ax_rate.plot(xs, [p.ok for p in timeline], color=colour, label=f"served, {label}")
                for field, style, what in (
                    ("refused", ":", "503 refused"),
                    ("other_failures", "--", "other failures"),
                ):
                    counts = [getattr(p, field) for p in timeline]
                    if any(counts):
                        ax_rate.plot(
                            xs, counts, color=colour, linestyle=style, label=f"{what}, {label}"
                        )
                ax_p95.plot(
                    xs,
                    [p.ok_p95_ms if p.ok_p95_ms is not None else float("nan") for p in timeline],
                    color=colour,
                    label=label,
                )
                users_axis.plot(
                    xs, [p.users for p in timeline], color="tab:grey", linewidth=0.8, alpha=0.6
                )
            ax_rate.set_title(f"{config}: answers per second", fontsize=9)
            ax_rate.set_ylabel("req/s")
            users_axis.set_ylabel("users (grey)")
            ax_rate.legend(fontsize=7, loc="upper left")
            ax_p95.axhline(p95_objective_ms, color="black", linestyle="dashed", linewidth=0.8)
            ax_p95.set_yscale("log")
            ax_p95.set_title(f"{config}: p95 of successful answers, ms", fontsize=9)
            ax_p95.legend(fontsize=7, loc="upper left")
        for ax in axes[-1]:
            ax.set_xlabel("seconds since the first answer")
    return path


def plot_soak(cell: CellRecord, p95_objective_ms: float, path: Path) -> Path:
    """A soak per minute: the api containers' memory with its least-squares trend, p95 against
    the objective, and errors; one line per trial."""
    fig, (ax_mem, ax_p95, ax_err) = plt.subplots(
        3, 1, figsize=(FIGURE_SIZE[0], FIGURE_SIZE[1] * 1.6), sharex=True
    )
    with _saved(fig, path):
        for soak in cell.soak:
            label = f"trial {soak.trial}"
            minutes = [m.start_s / 60.0 for m in soak.minutes]
            memory = [(x, m.memory_mb) for x, m in zip(minutes, soak.minutes, strict=True)]
            known = [(x, y) for x, y in memory if y is not None]
            ax_mem.plot([x for x, _ in known], [y for _, y in known], marker="o", label=label)
            if soak.memory_slope_mb_per_10min is not None and known:
                # The fitted line through the means, drawn from its slope and the points' centre.
                mean_x = sum(x for x, _ in known) / len(known)
                mean_y = sum(y for _, y in known) / len(known)
                per_minute = soak.memory_slope_mb_per_10min / 10.0
                ends = [known[0][0], known[-1][0]]
                ax_mem.plot(
                    ends, [mean_y + per_minute * (x - mean_x) for x in ends], linestyle="--"
                )
            ax_p95.plot(minutes, [m.p95_ms for m in soak.minutes], marker="o", label=label)
            ax_err.bar(minutes, [m.errors for m in soak.minutes], width=0.6, label=label)
        ax_mem.set_ylabel("api memory MB")
        ax_mem.legend(loc="best")
        ax_p95.axhline(p95_objective_ms, color=FAIL_COLOUR, linestyle="--", label="objective")
        ax_p95.set_ylabel("p95 ms")
        ax_err.set_ylabel("errors")
        ax_err.set_xlabel("minutes since the soak began")
    return path


def plot_cost_curve(cells: Sequence[CellRecord], path: Path) -> Path | None:
    """The cost curve: each cell's service demand (api CPU-us per successful answer, all its
    replicas, idle included) against the offered rate, one line per cell over the steps of all
    its trials; dashed in the same colour, the part of it the cell's idle CPU alone accounts
    for (idle cores / rate), which falls as the rate grows. None when no step has a demand."""
    series = []
    for cell in cells:
        points = sorted(
            (s.offered_rps, s.demand_us_per_request)
            for t in cell.trials
            for s in t.steps
            if s.offered_rps is not None and s.demand_us_per_request is not None
        )
        if points:
            series.append((cell, points))
    if not series:
        return None
    fig, ax = plt.subplots(figsize=FIGURE_SIZE)
    with _saved(fig, path):
        for cell, points in series:
            rates = [rate for rate, _ in points]
            (line,) = ax.plot(
                rates, [demand for _, demand in points], marker="o", label=cell.cell_id
            )
            if cell.idle_cpu_cores:
                idle_rates = [min(rates) + (max(rates) - min(rates)) * i / 50 for i in range(51)]
                ax.plot(
                    idle_rates,
                    [cell.idle_cpu_cores * 1e6 / rate for rate in idle_rates],
                    linestyle="--",
                    color=line.get_color(),
                    label=f"{cell.cell_id}: idle share ({cell.idle_cpu_cores:.3g} cores)",
                )
        ax.set_xlabel("offered rate (req/s)")
        ax.set_ylabel("api CPU per answer (us)")
        ax.set_ylim(bottom=0)
        ax.set_title("Service demand against rate (dashed: the idle CPU's share)")
        ax.legend(fontsize="small")
    return path
