"""The workshop comparison in the report, from a recorded run (tests/matrix/fixtures/README.md):
the side-by-side table, the targets and the paragraph on the workshop's conclusions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from matrix.analyse import workshop
from matrix.config import load_matrix_file
from matrix.report.report import load_cells, template_environment, write_report

FIXTURE = Path(__file__).parent / "fixtures" / "workshop-swarm"


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(FIXTURE, target)
    return target


def test_rows_pair_each_configuration_with_admission_on_and_off(run_dir: Path) -> None:
    matrix = load_matrix_file(run_dir / "matrix.yaml")
    (row,) = workshop.rows(load_cells(run_dir, matrix))
    assert (row.config_id, row.observation) == ("r1-c0.1-m128M", "a test observation")
    assert row.on is not None and row.off is not None
    assert row.on.cell.admission_limit == 160 and row.off.cell.admission_limit == 0
    # The recorded hold: overloaded with admission on, so refusals, fast, and only those.
    assert row.on.share(workshop.REFUSED) > 0 and row.off.share(workshop.REFUSED) == 0
    assert row.on.step.refused_p95_ms is not None and row.on.step.refused_p95_ms < 50
    assert row.on.other_failure_share == 0 and row.on.share(workshop.TIMEOUT) == 0
    assert row.knee == pytest.approx(row.on.cell.reference_knee)
    shares = sum(row.on.share(k) for k in (workshop.OK, workshop.REFUSED))
    assert shares == pytest.approx(1.0)


def test_targets_are_checked_with_the_recorded_figures(run_dir: Path) -> None:
    matrix = load_matrix_file(run_dir / "matrix.yaml")
    (row,) = workshop.rows(load_cells(run_dir, matrix))
    assert row.on is not None
    checks = {c.what: c for c in workshop.target_checks(row.on)}
    served = checks["served during the hold / the cell's knee"]
    assert served.met and f"{row.on.step.served_rps:.0f} / " in served.measured
    assert checks["p95 of 503 refusals"].met and checks["OOM kills and restarts"].met
    assert all(c.met for c in checks.values())
    # A cell that served less than 80 % of its knee fails that target.
    slow = row.on.step.model_copy(update={"served_rps": 0.5 * (row.knee or 0)})
    failed = {c.what: c.met for c in workshop.target_checks(workshop.Side(row.on.cell, slow))}
    assert failed["served during the hold / the cell's knee"] is False


def test_report_holds_the_side_by_side_table_and_the_paragraph(run_dir: Path) -> None:
    matrix = load_matrix_file(run_dir / "matrix.yaml")
    info = json.loads((run_dir / "run.json").read_text())
    report = write_report(run_dir, matrix, info).read_text()
    table = report[report.index("## The workshop, side by side") : report.index("## Cells")]
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| configuration | the workshop saw | admission | served req/s")
    on_line, off_line = lines[1], lines[2]
    assert on_line.startswith("| 1 x 0.1 CPU, 128M | a test observation | on (160 in flight")
    assert off_line.startswith("|  |  | off |")
    cells = load_cells(run_dir, matrix)
    for line, cell in zip((on_line, off_line), cells, strict=True):
        assert f"**{cell.trials[0].steps[0].served_rps:.0f}**" in line
    assert "### What holds of the workshop's conclusions" in table
    assert "**Throughput.**" in table and "**With admission control**" in table
    assert "### Targets for r1-c0.1-m128M with admission control on" in table
    assert "| **no** |" not in table
    assert (run_dir / "plots" / "workshop-timeline.png").stat().st_size > 10_000
    assert "The workshop, side by side" in (run_dir / "report.html").read_text()


def test_conclusions_are_figures_and_the_template_says_them(run_dir: Path) -> None:
    matrix = load_matrix_file(run_dir / "matrix.yaml")
    on, off = load_cells(run_dir, matrix)
    # Admission control off loses half its successful answers to timeouts.
    step = off.trials[0].steps[0]
    lost = step.model_copy(
        update={"ok": step.ok // 2, "failed": step.failed + step.ok - step.ok // 2}
    )
    trial = off.trials[0].model_copy(update={"steps": [lost]})
    failing = off.model_copy(update={"trials": [trial]})
    said = workshop.conclusions(workshop.rows([on, failing]))
    assert said.peak is not None and said.peak.failing == 1
    assert said.peak.worst.cell.cell_id == off.cell_id
    text = template_environment().get_template("workshop_conclusions.md.j2").render(c=said)
    assert "Without admission control, 1 of 1 configurations failed more than 1 %" in text
    assert f"the worst, {off.config_id}, failed {said.peak.worst_failed:.1%}" in text
    nothing = workshop.conclusions([])
    assert not nothing.measured
    empty = template_environment().get_template("workshop_conclusions.md.j2").render(c=nothing)
    assert empty == "- No configuration was measured, so nothing can be said.\n"
