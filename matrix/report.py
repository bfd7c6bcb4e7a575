"""Writes summary.csv, the plots, report.md and report.html of a run from its measured cells."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import markdown

from matrix.analysis import recommend, scaling_comparisons, summary_row, write_summary
from matrix.config import MatrixFile
from matrix.measurements import read_history, read_step_log
from matrix.plots import plot_across_cells, plot_cell_timeline, plot_failures

CELLS_DIR = "cells"
PLOTS_DIR = "plots"


def load_cells(run_dir: Path, matrix: MatrixFile) -> list[dict[str, Any]]:
    """The finished cells of a run, in matrix order."""
    cells = []
    for cell in matrix.cell_list():
        path = run_dir / CELLS_DIR / cell.cell_id / "cell.json"
        if path.is_file():
            cells.append(json.loads(path.read_text(encoding="utf-8")))
    return cells


def _fmt(value: object, suffix: str = "") -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}{suffix}" if abs(value) < 1000 else f"{value:.0f}{suffix}"
    return f"{value}{suffix}"


def _percent(share: float | None) -> float | None:
    return None if share is None else 100.0 * share


def write_report(run_dir: Path, matrix: MatrixFile, run_info: dict[str, Any]) -> Path:
    cells = load_cells(run_dir, matrix)
    plots = run_dir / PLOTS_DIR
    plots.mkdir(exist_ok=True)
    write_summary(run_dir / "summary.csv", cells, matrix.target_rps)
    objective = matrix.objective

    timelines: list[tuple[str, str]] = []
    for cell in cells:
        cell_dir = run_dir / CELLS_DIR / cell["cell_id"]
        history_path = cell_dir / "locust_stats_history.csv"
        if cell["status"] != "measured" or not history_path.is_file():
            continue
        history = read_history(history_path)
        windows = read_step_log(cell_dir / "steps.jsonl", history)
        name = f"timeline-{cell['cell_id']}.png"
        plot_cell_timeline(history, windows, objective.p95_ms, cell["cell_id"], plots / name)
        timelines.append((cell["cell_id"], name))
    plot_across_cells(cells, matrix.target_rps, objective.p95_ms, plots / "capacity-vs-cpu.png")
    plot_failures(cells, objective.max_failure_ratio, plots / "failures.png")

    lines = [f"# Capacity matrix: {matrix.name}", ""]
    if matrix.description:
        lines += [matrix.description, ""]
    profile = matrix.profile
    lines += [
        f"- Run started {run_info.get('started', '?')}, stack `{run_info.get('stack', '?')}`, "
        f"matrix file `{run_info.get('matrix_file', '?')}`.",
        f"- Objective: p95 <= {objective.p95_ms:g} ms, failures <= "
        f"{objective.max_failure_ratio:.2%}, served >= {objective.min_throughput_ratio:.0%} of "
        f"the offered rate. Target load: **{matrix.target_rps:g} req/s**.",
        f"- Load profile: `{profile.kind}` ({profile.duration_seconds():g} s at most per cell), "
        f"{matrix.load_generator.processes} Locust worker process(es), model mix "
        f"`{matrix.load_generator.model_mix}`.",
        f"- Cells measured: {sum(c['status'] == 'measured' for c in cells)} of "
        f"{len(matrix.cell_list())}.",
        "",
        "## Cells",
        "",
        "The knee is the highest offered rate whose step, and every step before it, met the "
        "objective. Cost is total CPU = replicas x cpus.",
        "",
        "| cell | replicas | cpus | memory | cost (CPU) | knee req/s | p95 at knee ms | "
        "max req/s | failures | restarts | OOM | api CPU peak | api mem peak MB | "
        "load gen CPU peak | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for cell in cells:
        row = summary_row(cell, matrix.target_rps)
        notes = []
        if cell["status"] != "measured":
            notes.append(f"not measured: {cell.get('error')}")
        if cell.get("loadgen_bottleneck"):
            notes.append("**load generator saturated: not the service's limit**")
        if cell.get("host_saturated_at_break"):
            notes.append("host CPU above 90 % where it broke: the machine may be the limit")
        if cell.get("breaking_reasons"):
            notes.append("broke on " + "; ".join(cell["breaking_reasons"]))
        if not cell.get("reserved", True):
            notes.append("no reservation (did not fit the node)")
        lines.append(
            f"| {row['cell']} | {row['replicas']} | {row['cpus']:g} | {row['memory']} | "
            f"{row['total_cpus']:g} | {_fmt(row['knee_rps'])} | {_fmt(row['knee_p95_ms'])} | "
            f"{_fmt(row['max_throughput_rps'])} | {_fmt(_percent(row['failure_ratio']), ' %')} | "
            f"{_fmt(row['restarts'])} | {_fmt(row['oom_kills'])} | "
            f"{_fmt(row['api_cpu_peak_cores'])} | {_fmt(row['api_mem_peak_mb'])} | "
            f"{_fmt(_percent(row['loadgen_cpu_peak_share']), ' %')} | "
            f"{'; '.join(notes)} |"
        )
    lines += ["", "![capacity against CPU](plots/capacity-vs-cpu.png)", "",
              "![failure rate per cell](plots/failures.png)", ""]

    lines += ["## Steps", ""]
    for cell in cells:
        steps = cell.get("steps") or []
        if not steps:
            continue
        lines += [f"### {cell['cell_id']}", "",
                  "| step | offered req/s | users | served req/s | p95 ms | failures | "
                  "load gen CPU | host CPU | verdict |", "|---|---|---|---|---|---|---|---|---|"]
        for step in steps:
            verdict = "ok" if step["meets_objective"] else "; ".join(step["reasons"])
            if step.get("loadgen_saturated"):
                verdict += " (load generator saturated)"
            share = step.get("loadgen_cpu_share")
            host = step.get("host_cpu_share")
            lines.append(
                f"| {step['index']} | {_fmt(step['rate_rps'])} | {step['users']} | "
                f"{_fmt(step['throughput_rps'])} | {_fmt(step['p95_ms'])} | "
                f"{100 * step['failure_ratio']:.2f} % | {_fmt(share and 100 * share, ' %')} | "
                f"{_fmt(host and 100 * host, ' %')} | {verdict} |")
        lines.append("")
    for cell_id, name in timelines:
        lines += [f"![{cell_id} over time](plots/{name})", ""]

    recommendation = recommend(cells, matrix.target_rps)
    lines += ["## Recommendation", "", recommendation.text, ""]
    comparisons = scaling_comparisons(cells)
    lines += ["### Horizontal against vertical scaling", ""]
    if comparisons:
        lines += [f"- {c.describe()}" for c in comparisons]
    else:
        lines.append("- The matrix has no two cells with the same total CPU and different replica "
                     "counts, so it cannot compare them.")
    if any(c.get("loadgen_bottleneck") for c in cells):
        lines += ["", "Cells marked *load generator saturated* hit the limit of the machine "
                      "running Locust, not necessarily the service's: rerun them with more Locust "
                      "processes or on a bigger machine."]
    if any(c.get("host_saturated_at_break") for c in cells):
        lines += ["", "Where a cell broke with the host's CPU above 90 %, the load generator, "
                      "Nginx and the API competed for the same cores: measure on a bigger machine "
                      "or run Locust elsewhere before trusting that knee."]
    lines.append("")

    report_md = run_dir / "report.md"
    report_md.write_text("\n".join(lines), encoding="utf-8")
    body = markdown.markdown("\n".join(lines), extensions=["tables"])
    html = ("<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>Capacity matrix: {matrix.name}</title><style>body{{font-family:sans-serif;"
            "max-width:1200px;margin:auto}}table{{border-collapse:collapse}}td,th{{border:1px "
            "solid #ccc;padding:2px 6px}}img{{max-width:100%}}</style></head><body>"
            f"{body}</body></html>")
    (run_dir / "report.html").write_text(html, encoding="utf-8")
    return report_md
