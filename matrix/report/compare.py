"""python -m matrix.report.compare RUN_A RUN_B: the logic behind scripts/compare_runs.sh.

Prints, as Markdown, whether two finished runs' knees agree cell by cell, and when they do
not, whether the cost of one answer moved with them (matrix/analyse/compare.py;
matrix/README.md, "Two runs that disagree").
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matrix.analyse.compare import CellComparison, compare_cells, speed_index
from matrix.analyse.confidence import Interval
from matrix.analyse.records import CellRecord
from matrix.config import MatrixFileError, load_matrix_file
from matrix.report.report import fmt, load_cells
from matrix.runner import RUN_FILE

EXIT_USAGE = 2


class RunReadError(Exception):
    """A directory that is not a finished run this code can read."""


@dataclass(frozen=True)
class Run:
    path: Path
    info: dict[str, Any]
    cells: list[CellRecord]
    fingerprint: str

    @property
    def images(self) -> dict[str, str]:
        return dict(self.info.get("host_facts", {}).get("images", {}))

    @property
    def speed(self) -> float | None:
        return speed_index(
            self.info.get("speed_index_start_us"), self.info.get("speed_index_end_us")
        )


def load_run(path: Path) -> Run:
    """A run directory's run.json, matrix file and finished cells."""
    try:
        info = json.loads((path / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise RunReadError(f"{path}: no readable {RUN_FILE} ({error})") from None
    base_dir = Path(info["matrix_file"]).parent if info.get("matrix_file") else None
    try:
        matrix = load_matrix_file(path / "matrix.yaml", None, base_dir, check_files=False)
    except MatrixFileError as error:
        raise RunReadError(str(error)) from None
    cells = load_cells(path, matrix)
    if not cells:
        raise RunReadError(f"{path}: no finished cells (cells/*/cell.json)")
    return Run(path, info, cells, matrix.fingerprint())


def _interval(centre: float | None, interval: Interval | None) -> str:
    if centre is None:
        return "-"
    if interval is None:
        return fmt(centre)
    return f"{fmt(centre)} ({fmt(interval.low)}-{fmt(interval.high)})"


def _ratio(interval: Interval | None) -> str:
    return "-" if interval is None else interval.ratio_text()


def _speed(info: dict[str, Any]) -> str:
    start, end = info.get("speed_index_start_us"), info.get("speed_index_end_us")
    return f"{fmt(start)} -> {fmt(end)}"


def verdict(row: CellComparison) -> str:
    """One sentence per cell: agree, or by how much B differs and whether both knees were
    bound by the CPU quota (then by what one answer cost)."""
    agree = row.agree
    if agree is None:
        return "no interval in one of the runs (fewer than two trials): not compared"
    if agree:
        return "the runs agree: each median lies inside the other's interval"
    text = f"the runs disagree: B's knee is {_ratio(row.knee_ratio)} A's"
    bound, demand = row.quota_bound, row.demand_ratio
    if bound is None or demand is None:
        return text + " (no CPU figures at the knee to say why)"
    if not bound:
        shares = ", ".join(
            f"{name} {fmt(100 * share if share is not None else None)} %"
            for name, share in zip(("A", "B"), row.quota_shares, strict=True)
        )
        return text + (
            f". The replicas did not use their whole CPU quota at both knees ({shares} of it):"
            " below its quota a knee is set by the objective or the host, not by what one answer"
            " costs"
        )
    less = (row.median_ratio or 1.0) < 1.0
    return text + (
        ". At both knees the replicas used their whole CPU quota, so each knee is the quota"
        f" over what one answer cost there, and one answer cost {demand:.2f}x as much in B:"
        f" the cell served {'less' if less else 'more'} because each answer cost"
        f" {'more' if less else 'less'} CPU, not because the search stopped elsewhere"
    )


def render(a: Run, b: Run) -> str:
    rows = compare_cells(a.cells, b.cells)
    lines = [
        "# Run B against run A",
        "",
        "| | run A | run B |",
        "|---|---|---|",
        f"| directory | {a.path} | {b.path} |",
        f"| started | {a.info.get('started', '-')} | {b.info.get('started', '-')} |",
        f"| matrix fingerprint | {a.fingerprint} | {b.fingerprint} |",
    ]
    for name in sorted(set(a.images) | set(b.images)):
        lines.append(f"| {name} image | {a.images.get(name, '-')} | {b.images.get(name, '-')} |")
    lines += [
        f"| host speed index, start -> end (µs per request) | {_speed(a.info)} |"
        f" {_speed(b.info)} |",
        "",
    ]
    notes = []
    if a.fingerprint != b.fingerprint:
        notes.append("The matrix files differ: the runs did not ask the same question.")
    if a.images != b.images:
        notes.append("The images differ: the service or Nginx changed between the runs.")
    if a.speed and b.speed:
        notes.append(
            f"B's host speed index is {b.speed / a.speed:.2f}x A's (the bare ASGI app's CPU per"
            " request, the mean of each run's start and end; above 1: B's host was slower)."
        )
    lines += notes + [""] if notes else []
    if not rows:
        lines.append("No cell was measured in both runs.")
        return "\n".join(lines) + "\n"
    lines += [
        "| cell | knee A (95 %) | knee B (95 %) | B / A (95 %) | each median inside the other's"
        " interval | CPU at the knee, share of the quota, A / B | µs per answer at the knee,"
        " A / B (B / A) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        agree = "-" if row.agree is None else ("yes" if row.agree else "no")
        shares = " / ".join(
            "-" if share is None else f"{100 * share:.0f} %" for share in row.quota_shares
        )
        demand = row.demand_ratio
        lines.append(
            f"| {row.cell_id} | {_interval(row.a.knee_median, row.a.knee_ci)} |"
            f" {_interval(row.b.knee_median, row.b.knee_ci)} | {_ratio(row.knee_ratio)} |"
            f" {agree} | {shares} | {fmt(row.a.knee_demand_us)} / {fmt(row.b.knee_demand_us)}"
            f" ({'-' if demand is None else f'{demand:.2f}x'}) |"
        )
    lines.append("")
    lines += [f"- **{row.cell_id}**: {verdict(row)}." for row in rows]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/compare_runs.sh",
        description="Compare two finished runs of the matrix cell by cell.",
    )
    parser.add_argument("run_a", type=Path, help="a results/<timestamp> directory")
    parser.add_argument("run_b", type=Path, help="another, compared against the first")
    args = parser.parse_args(argv)
    try:
        a, b = load_run(args.run_a), load_run(args.run_b)
    except RunReadError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(render(a, b), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
