"""Writes summary.csv, the plots, report.md and report.html of a run from its cell records.

Both reports come from one Jinja2 template over the same records (report.html wraps the very
Markdown that report.md holds), so they always say the same thing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import markdown

from loadtest.closed_model import CONNECTION_ERROR, OK, REFUSED, TIMEOUT
from loadtest.open_model import CONFIRMED, CONVERGED, MAX_CONFIRM_STEPS, MAX_DRAIN_S
from matrix.analyse import workshop
from matrix.analyse.analysis import (
    HOST_SATURATION,
    meets_target,
    prediction_error,
    recommend,
    scaling_comparisons,
    write_summary,
)
from matrix.analyse.capacity_model import Prediction, predict_cell, step_shape
from matrix.analyse.confidence import (
    MOST_TRIALS_ESTIMATED,
    TRIALS_BUDGET,
    TRIALS_MAX,
    trials_needed,
)
from matrix.analyse.records import CellRecord
from matrix.config import (
    OPEN_PROFILE_TYPES,
    MatrixFile,
    SearchProfile,
    SoakProfile,
    SpikeProfile,
    StaircaseProfile,
    WorkshopProfile,
)
from matrix.measure.host_facts import (
    SPEED_DRIFT_LIMIT,
    SPEED_RATE,
    SPEED_ROUNDS,
    SPEED_SECONDS,
    speed_drift,
)
from matrix.report.plots import (
    plot_across_cells,
    plot_cell_steps,
    plot_cost_curve,
    plot_failures,
    plot_soak,
    plot_workshop_timeline,
)
from matrix.report.spike_plot import plot_spike

CELLS_DIR = "cells"
CELL_FILE = "cell.json"
PLOTS_DIR = "plots"
TEMPLATES = Path(__file__).resolve().parent / "templates"
# At or below this many cores the generator, Nginx and the API certainly compete for CPU.
SMALL_HOST_CORES = 4


def load_cell(path: Path) -> CellRecord:
    return CellRecord.model_validate_json(path.read_text(encoding="utf-8"))


def load_cells(run_dir: Path, matrix: MatrixFile) -> list[CellRecord]:
    """The finished cells of a run, in matrix order."""
    cells = []
    for cell in matrix.cell_list():
        path = run_dir / CELLS_DIR / cell.cell_id / CELL_FILE
        if path.is_file():
            cells.append(load_cell(path))
    return cells


def fmt(value: object, suffix: str = "", digits: int = 3) -> str:
    """Numbers for people: '-' for missing, 3 significant digits, whole numbers from 1000."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float | int) and not isinstance(value, bool):
        number = float(value)
        text = f"{number:.0f}" if abs(number) >= 1000 else f"{number:.{digits}g}"
        return text + suffix
    return f"{value}{suffix}"


def pct(share: float | None, digits: int = 1) -> str:
    return "-" if share is None else f"{100.0 * share:.{digits}f} %"


def predictions(cells: list[CellRecord], matrix: MatrixFile) -> dict[str, Prediction | None]:
    """Each cell's knee as the capacity model predicts it from the cell's measured demand
    (matrix/analyse/capacity_model.py); only for the search and staircase profiles."""
    profile = matrix.profile
    if not isinstance(profile, SearchProfile | StaircaseProfile):
        return {}
    shape = step_shape(profile, matrix.objective)
    return {c.cell_id: predict_cell(c.trials, c.replicas, c.cpus, shape) for c in cells}


def undecided_note(cell: CellRecord, ci_target: float) -> str | None:
    """For a cell whose trials stopped before its interval was narrow enough: how wide it is, and
    about how many trials, scattering as these did, would narrow it to +-ci_target."""
    interval, median = cell.knee_ci, cell.knee_median
    if cell.trials_ended not in (TRIALS_BUDGET, TRIALS_MAX) or interval is None or not median:
        return None
    reached = max(1 - interval.low / median, interval.high / median - 1)
    text = f"interval +-{pct(reached, 0)} of the median after {len(cell.trials)} trials"
    target = f"+-{pct(ci_target, 0)}"
    if cell.knee_resolution > ci_target:
        return f"{text}; its trials' brackets alone are wider than {target}: a finer `precision`"
    needed = trials_needed(cell.knees, ci_target, cell.knee_resolution)
    if needed is None:
        return (
            f"{text}; at this spread even {MOST_TRIALS_ESTIMATED} trials would not narrow it "
            f"to {target}"
        )
    return (
        f"{text}; at this spread about {needed} would narrow it to {target} "
        "(raise `cell_budget_seconds` or `max_trials`)"
    )


def cell_notes(cell: CellRecord, ci_target: float | None = None) -> list[str]:
    notes = []
    if ci_target is not None and (undecided := undecided_note(cell, ci_target)):
        notes.append(undecided)
    if cell.status != "measured":
        notes.append(f"not measured: {cell.error}")
    outcomes = sorted({t.outcome for t in cell.trials})
    if set(outcomes) - {CONVERGED, CONFIRMED}:
        notes.append("search ended: " + ", ".join(outcomes))
    if cell.generator_limited:
        notes.append("**load generator limited: a lower bound, not the service's limit**")
    for trial in cell.trials:
        breaking = trial.breaking
        if breaking is not None and (breaking.host_cpu_share or 0) > HOST_SATURATION:
            notes.append(
                f"trial {trial.trial}: host CPU {pct(breaking.host_cpu_share, 0)} where "
                "it broke: the machine may be the limit"
            )
    if not cell.reserved:
        notes.append("no reservation (did not fit the node)")
    return notes


def speed_context(run_info: dict[str, Any]) -> dict[str, Any]:
    """The host speed index at the run's start and end, its drift, and whether it is flagged."""
    start, end = run_info.get("speed_index_start_us"), run_info.get("speed_index_end_us")
    drift = speed_drift(start, end)
    return {
        "start": start,
        "end": end,
        "drift": drift,
        "flagged": drift is not None and abs(drift) > SPEED_DRIFT_LIMIT,
        "limit": SPEED_DRIFT_LIMIT,
        "rate": SPEED_RATE,
        "seconds": SPEED_SECONDS,
        "rounds": SPEED_ROUNDS,
    }


def template_environment() -> jinja2.Environment:
    """The report templates with the filters they format numbers with."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(fmt=fmt, pct=pct, ms=workshop.ms, span=workshop.span, spec=format)
    return env


def write_report(run_dir: Path, matrix: MatrixFile, run_info: dict[str, Any]) -> Path:
    cells = load_cells(run_dir, matrix)
    plots = run_dir / PLOTS_DIR
    plots.mkdir(exist_ok=True)
    predicted = predictions(cells, matrix)
    write_summary(run_dir / "summary.csv", cells, matrix.target_rps, predicted)
    objective = matrix.objective
    step_plots, soak_plots, spike_plots = {}, {}, {}
    for cell in cells:
        if cell.trials:
            name = f"steps-{cell.cell_id}.png"
            plot_cell_steps(cell, objective.p95_ms, plots / name)
            step_plots[cell.cell_id] = name
        if cell.soak:
            soak_plots[cell.cell_id] = plot_soak(
                cell, objective.p95_ms, plots / f"soak-{cell.cell_id}.png"
            ).name
        if cell.spike:
            spike_plots[cell.cell_id] = plot_spike(cell, plots / f"spike-{cell.cell_id}.png").name
    plot_across_cells(
        cells, matrix.target_rps, objective.p95_ms, plots / "capacity-vs-cpu.png", predicted
    )
    plot_failures(cells, objective.max_failure_ratio, plots / "failures.png")
    cost_curve = plot_cost_curve(cells, plots / "cost-curve.png")
    workshop_context: dict[str, Any] | None = None
    if isinstance(matrix.profile, WorkshopProfile):
        plot_workshop_timeline(cells, objective.p95_ms, plots / "workshop-timeline.png")
        table = workshop.rows(cells)
        checked = [r for r in table if r.on is not None and r.knee is not None]
        workshop_context = {
            "rows": table,
            "conclusions": workshop.conclusions(table),
            "checks": [(r, workshop.target_checks(r.on)) for r in checked if r.on is not None],
            "OK": OK,
            "REFUSED": REFUSED,
            "TIMEOUT": TIMEOUT,
            "CONNECTION_ERROR": CONNECTION_ERROR,
        }
    host_cores = run_info.get("host_cores")
    context = {
        "matrix": matrix,
        "run": run_info,
        "cells": cells,
        "objective": objective,
        "profile": matrix.profile,
        "open_model": isinstance(matrix.profile, OPEN_PROFILE_TYPES),
        "search": matrix.profile if isinstance(matrix.profile, SearchProfile) else None,
        "generator": matrix.load_generator,
        "step_plots": step_plots,
        "notes": {c.cell_id: cell_notes(c, matrix.ci_target) for c in cells},
        "meets": {c.cell_id: meets_target(c, matrix.target_rps) for c in cells},
        "recommendation": recommend(cells, matrix.target_rps),
        "comparisons": scaling_comparisons(cells),
        "small_host": host_cores is not None and host_cores <= SMALL_HOST_CORES,
        "host_cores": host_cores,
        "measured": sum(c.status == "measured" for c in cells),
        "planned": len(matrix.cell_list()),
        "any_generator_limited": any(c.generator_limited for c in cells),
        "workshop": workshop_context,
        "soak": matrix.profile if isinstance(matrix.profile, SoakProfile) else None,
        "soak_plots": soak_plots,
        "cost_curve": cost_curve.name if cost_curve is not None else None,
        "drain_timeout": MAX_DRAIN_S,
        "drain_probed": any(
            s.drain_proven is not None for c in cells for t in c.trials for s in t.steps
        ),
        "max_confirm_steps": MAX_CONFIRM_STEPS,
        "speed": speed_context(run_info),
        "predicted": predicted,
        "prediction_error": {
            c.cell_id: prediction_error(c, predicted.get(c.cell_id)) for c in cells
        },
        "closed_loop": [c for c in cells if c.closed_loop is not None and c.closed_loop.steps],
        "spike": matrix.profile if isinstance(matrix.profile, SpikeProfile) else None,
        "spike_plots": spike_plots,
        "host_saturation": HOST_SATURATION,
    }
    env = template_environment()
    text = env.get_template("report.md.j2").render(context)
    report_md = run_dir / "report.md"
    report_md.write_text(text, encoding="utf-8")
    body = markdown.markdown(text, extensions=["tables"])
    html = env.get_template("report.html.j2").render(
        title=f"Capacity matrix: {matrix.name}", body=body
    )
    (run_dir / "report.html").write_text(html, encoding="utf-8")
    return report_md
