"""The report from typed records: real PNG plots, Markdown and HTML that say the same things,
knees with their interval, predicted against measured, the closed loop beside the open model,
flags, the recommendation and the notes a reader needs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from loadtest import open_model
from matrix.analyse.records import CellRecord, StepRecord, TrialRecord
from matrix.config import load_matrix_file
from matrix.measure.trial import analyse_trial
from matrix.report.plots import plot_across_cells, plot_cell_steps, plot_failures
from matrix.report.report import CELL_FILE, cell_notes, write_report
from tests.matrix.test_analysis import cell

FIXTURE = Path(__file__).parent / "fixtures" / "search-swarm"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MATRIX = """
name: report-test
cells: {replicas: [1, 2], cpus: [0.1, 0.2], memory: [256M], max_total_cpus: 0.2}
profile: {kind: search, start_rate: 150, step_seconds: 4}
trials: 2
target_rps: 500
"""


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 2000
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.size[0] > 300 and image.size[1] > 200


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    (tmp_path / "matrix.yaml").write_text(MATRIX)
    matrix = load_matrix_file(tmp_path / "matrix.yaml")
    recorded = analyse_trial(matrix, FIXTURE, 1, 0)
    # 200 CPU-µs per request at every rate: the utilisation law's limit at 0.2 CPU is 1000/s.
    for step in recorded.steps:
        step.demand_us_per_request = 200.0
    closed = TrialRecord(
        trial=0,
        model="closed",
        outcome="held",
        steps=[
            StepRecord(
                index=0, offered_rps=None, served_rps=1500.0, p95_ms=80.0, demand_us_per_request=90
            )
        ],
    )
    cells = [
        cell(1, 0.1, [300.0, 330.0]),
        CellRecord(
            cell_id="r1-c0.2-m256M",
            replicas=1,
            cpus=0.2,
            memory="256M",
            memory_bytes=256 * 1024**2,
            total_cpus=0.2,
            status="measured",
            trials=[recorded, recorded.model_copy(update={"trial": 2})],
            idle_cpu_cores=0.012,
            closed_loop=closed,
        ),
        cell(2, 0.1, [], status="failed", error="did not converge"),
    ]
    for record in cells:
        (tmp_path / "cells" / record.cell_id).mkdir(parents=True)
        (tmp_path / "cells" / record.cell_id / CELL_FILE).write_text(record.model_dump_json())
    return tmp_path


def recorded_knee(run_dir: Path) -> StepRecord:
    trial = analyse_trial(load_matrix_file(run_dir / "matrix.yaml"), FIXTURE, 1, 0)
    assert trial.knee is not None and trial.knee.demand_us_per_request is not None
    return trial.knee


def test_report_holds_knees_ranges_flags_and_the_recommendation(run_dir: Path) -> None:
    matrix = load_matrix_file(run_dir / "matrix.yaml")
    report = write_report(
        run_dir, matrix, {"started": "now", "stack": "s", "host_cores": 2}
    ).read_text()
    # Knees 300 and 330: a t interval on their logs with one degree of freedom, by hand
    # 314.6 x exp(+-12.706 x ln(1.1) / 2).
    assert "| r1-c0.1-m256M | 1 x 0.1 | 256M | 0.1 | **315** (172-576) | 2 |" in report
    # The recorded cell served 848 req/s at its knee (900 offered) in both trials, with
    # 937.5 failing: the interval is its 4.2 % bracket either side, 814-884.
    assert re.search(
        r"\| r1-c0.2-m256M \| 1 x 0.2 \| 256M \| 0.2 \| \*\*848\*\* \(814-884\) "
        r"\| 2 \| 900 \|",
        report,
    )
    # Predicted from the demand: saturation 0.2 CPU / 200 µs = 1000 req/s; without demand
    # figures, no prediction.
    assert "| r1-c0.1-m256M | - | - | - (no demand figures) | 315 (172-576) | - |" in report
    (row,) = [line for line in report.splitlines() if line.startswith("| r1-c0.2-m256M | 200 |")]
    assert "| 1000 |" in row and "| 848 (814-884) |" in row
    # The closed loop next to the knee, with the reason.
    assert "| r1-c0.2-m256M | 848 | **1500** | 80 | 1.77x | 200 / 90 |" in report
    assert "Why the two differ: a closed loop keeps every worker busy" in report
    assert "not measured: did not converge" in report
    assert "**1 replica(s) x 0.2 CPU x 256M**" in report
    assert "Shared machine" in report and "2 CPU cores" in report
    assert "What these figures do not prove" in report
    # Every step of every trial, with throttling, and the knee marked.
    assert report.count("| 4 (knee) | 0 | 900 |") == 2
    assert "throttled ms/s" in report
    # The demand per step and its cost curve, with the idle baseline apart.
    knee = recorded_knee(run_dir)
    assert f"| {knee.demand_us_per_request:.0f} |" in report
    assert "| r1-c0.2-m256M | 1 x 0.2 | 0.012 (6 %) |" in report
    assert "plots/cost-curve.png" in report
    html = (run_dir / "report.html").read_text()
    assert "<table>" in html and "plots/capacity-vs-cpu.png" in html
    assert "What these figures do not prove" in html
    for name in (
        "capacity-vs-cpu.png",
        "failures.png",
        "steps-r1-c0.2-m256M.png",
        "cost-curve.png",
    ):
        assert_png(run_dir / "plots" / name)
    assert (run_dir / "summary.csv").read_text().count("\n") == 4


def test_a_rebuilt_report_is_the_same(run_dir: Path) -> None:
    matrix = load_matrix_file(run_dir / "matrix.yaml")
    first = write_report(run_dir, matrix, {"started": "now"}).read_text()
    assert write_report(run_dir, matrix, {"started": "now"}).read_text() == first
    assert "Shared machine" not in first  # no core count recorded: no claim about it


def test_plots_draw_without_measured_cells(tmp_path: Path) -> None:
    cells = [cell(1, 0.5, [40.0]), cell(2, 1.0, [220.0, 260.0]), cell(2, 0.5, [], status="failed")]
    assert_png(plot_across_cells(cells, 100, 500, tmp_path / "a.png"))
    assert_png(plot_failures(cells, 0.01, tmp_path / "f.png"))
    assert_png(plot_failures([], 0.01, tmp_path / "no-cells.png"))
    assert_png(plot_across_cells([], 100, 500, tmp_path / "empty.png"))
    assert_png(plot_cell_steps(cells[1], 500, tmp_path / "s.png"))


def test_the_header_says_which_evaluator_served(run_dir: Path) -> None:
    matrix = load_matrix_file(run_dir / "matrix.yaml")
    recorded = write_report(run_dir, matrix, {"evaluator": "numpy"}).read_text()
    assert "Single rows evaluated by: `numpy`" in recorded
    unknown = write_report(run_dir, matrix, {"evaluator": None}).read_text()
    assert "Single rows evaluated by: `not recorded`" in unknown


def test_a_knee_that_held_needs_no_note_one_that_stepped_down_does() -> None:
    held = cell(1, 0.1, [300.0])
    held.trials[0].outcome = open_model.CONFIRMED
    assert cell_notes(held) == []
    stepped = cell(1, 0.1, [300.0])
    stepped.trials[0].outcome = open_model.STEPPED_DOWN
    assert cell_notes(stepped) == [f"search ended: {open_model.STEPPED_DOWN}"]


def test_an_undecided_cell_says_how_many_trials_would_decide_it() -> None:
    # The 1 x 0.05 CPU cell of docs/quick-run (2026-12-06 08:23 UTC), stopped on its budget.
    undecided = cell(1, 0.05, [399.0, 424.0, 436.0])
    undecided.trials_ended = "budget"
    assert cell_notes(undecided, 0.10) == [
        "interval +-12 % of the median after 3 trials; at this spread about 4 would narrow it "
        "to +-10 % (raise `cell_budget_seconds` or `max_trials`)"
    ]
    assert cell_notes(undecided) == []
    scattered = cell(1, 0.05, [200.0, 400.0, 800.0])
    scattered.trials_ended = "max trials"
    assert "even 20 trials would not narrow it to +-10 %" in cell_notes(scattered, 0.10)[0]
    decided = cell(1, 0.1, [968.0, 975.0, 1023.0])
    decided.trials_ended = "converged"
    assert cell_notes(decided, 0.10) == []
