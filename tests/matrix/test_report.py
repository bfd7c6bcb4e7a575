"""Plots are real PNGs; the report states knees, costs, flags and the recommendation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from matrix.config import load_matrix_file
from matrix.measurements import read_history, read_step_log
from matrix.plots import plot_across_cells, plot_cell_timeline, plot_failures
from matrix.report import write_report
from tests.matrix.test_analysis import cell

FIXTURE = Path(__file__).parent / "fixtures" / "staircase-loopback"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 2000
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.size[0] > 300 and image.size[1] > 200


def test_timeline_plot_from_the_recorded_run(tmp_path: Path) -> None:
    history = read_history(FIXTURE / "locust_stats_history.csv")
    windows = read_step_log(FIXTURE / "steps.jsonl", history)
    assert_png(plot_cell_timeline(history, windows, 55, "recorded", tmp_path / "t.png"))


def test_cross_cell_plots(tmp_path: Path) -> None:
    cells = [cell(1, 0.5, 40), cell(1, 1.0, 100), cell(2, 0.5, None, failures=50),
             cell(2, 1.0, 220, status="failed")]
    assert_png(plot_across_cells(cells, 100, 500, tmp_path / "a.png"))
    assert_png(plot_failures(cells, 0.01, tmp_path / "f.png"))
    assert_png(plot_failures([], 0.01, tmp_path / "no-cells.png"))
    # An empty run still draws (axes only) instead of crashing the report.
    assert_png(plot_across_cells([], 100, 500, tmp_path / "empty.png"))


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    matrix_text = (
        "name: report-test\n"
        "cells: {replicas: [1, 2], cpus: [0.5], memory: [512M]}\n"
        "profile: {kind: staircase, start_rate: 100, step_rate: 150, step_seconds: 8,"
        " max_rate: 700}\n"
        "target_rps: 300\n")
    (tmp_path / "matrix.yaml").write_text(matrix_text)
    for replicas, knee, bottleneck in ((1, 250, False), (2, 400, True)):
        cell_dir = tmp_path / "cells" / f"r{replicas}-c0.5-m512M"
        cell_dir.mkdir(parents=True)
        for source in FIXTURE.iterdir():
            shutil.copy(source, cell_dir / source.name)
        data = cell(replicas, 0.5, knee, loadgen_bottleneck=bottleneck,
                    breaking_reasons=["p95 65.0 ms > 55 ms"],
                    steps=[{"index": 0, "rate_rps": 100.0, "users": 20, "throughput_rps": 100.0,
                            "p95_ms": 33.0, "failure_ratio": 0.0, "loadgen_cpu_share": 0.95,
                            "host_cpu_share": 0.5, "loadgen_saturated": bottleneck,
                            "meets_objective": True, "reasons": []}])
        (cell_dir / "cell.json").write_text(json.dumps(data))
    return tmp_path


def test_report_markdown_html_and_plots(run_dir: Path) -> None:
    matrix = load_matrix_file(run_dir / "matrix.yaml")
    report = write_report(run_dir, matrix, {"started": "now", "stack": "s"}).read_text()
    assert "| r1-c0.5-m512M | 1 | 0.5 | 512M | 0.5 | 250 |" in report
    assert "load generator saturated" in report
    assert "**2 replica(s) x 0.5 CPU x 512M**" in report  # the only cell reaching 300 req/s
    assert "Horizontal against vertical" in report
    html = (run_dir / "report.html").read_text()
    assert "<table>" in html and "plots/capacity-vs-cpu.png" in html
    for name in ("capacity-vs-cpu.png", "failures.png", "timeline-r1-c0.5-m512M.png"):
        assert_png(run_dir / "plots" / name)
    assert (run_dir / "summary.csv").read_text().count("\n") == 3
