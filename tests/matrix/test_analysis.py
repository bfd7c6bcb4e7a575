"""Summary, recommendation and horizontal-vs-vertical comparison."""

from __future__ import annotations

import csv
from pathlib import Path

from matrix.analysis import (
    docker_stats_summary,
    meets_target,
    recommend,
    scaling_comparisons,
    summarise_steps,
    write_summary,
)
from matrix.config import Objective
from matrix.measurements import read_cpu_samples, read_history, read_step_log, step_metrics

FIXTURE = Path(__file__).parent / "fixtures" / "staircase-loopback"


def cell(replicas: int, cpus: float, knee: float | None, memory: str = "512M",
         **extra: object) -> dict:
    return {"cell_id": f"r{replicas}-c{cpus:g}-m{memory}", "replicas": replicas, "cpus": cpus,
            "memory": memory, "memory_bytes": 512 * 1024**2, "total_cpus": replicas * cpus,
            "status": "measured", "knee_rps": knee, "knee_p95_ms": 40.0 if knee else None,
            "requests": 1000, "failures": 0, "restarts": 0, "oom_kills": 0, **extra}


def test_summary_of_the_recorded_run() -> None:
    history = read_history(FIXTURE / "locust_stats_history.csv")
    steps = step_metrics(history, read_step_log(FIXTURE / "steps.jsonl", history),
                         Objective(p95_ms=30), read_cpu_samples(FIXTURE / "loadgen_cpu.csv"), 2.0)
    summary = summarise_steps(steps)
    assert summary["knee_rps"] == 400
    assert summary["knee_step"] == 2 and summary["breaking_step"] == 3
    assert summary["max_throughput_rps"] > 650
    assert summary["loadgen_bottleneck"] is False
    assert summary["host_saturated_at_break"] == (steps[3].host_cpu_share > 0.9)
    assert 0 < summary["loadgen_cpu_peak_share"] < 0.9


def test_cheapest_configuration_meeting_the_target_is_recommended() -> None:
    cells = [cell(1, 0.5, 40), cell(1, 1.0, 120), cell(2, 0.5, 130), cell(2, 1.0, 260)]
    rec = recommend(cells, target_rps=100)
    assert rec.cell is cells[1]  # 1 CPU total; 2 x 0.5 ties on CPU but needs more memory
    assert "1 replica(s) x 1 CPU" in rec.text


def test_restarts_and_oom_kills_disqualify() -> None:
    cells = [cell(1, 1.0, 120, oom_kills=1), cell(2, 1.0, 200)]
    assert not meets_target(cells[0], 100)
    assert recommend(cells, 100).cell is cells[1]


def test_no_cell_meeting_the_target_says_so() -> None:
    rec = recommend([cell(1, 0.5, 40), cell(1, 1.0, 80, loadgen_bottleneck=True)], 100)
    assert rec.cell is None
    assert "No measured configuration" in rec.text and "load generator" in rec.text
    assert recommend([cell(1, 0.5, None)], 100).cell is None


def test_horizontal_against_vertical_at_equal_total_cpu() -> None:
    cells = [cell(1, 0.5, 40), cell(1, 1.0, 100), cell(2, 0.5, 125), cell(2, 1.0, 220),
             cell(4, 0.5, 230)]
    comparisons = scaling_comparisons(cells)
    assert [c.total_cpus for c in comparisons] == [1.0, 2.0]
    first = comparisons[0]
    assert (first.horizontal["replicas"], first.vertical["replicas"]) == (2, 1)
    assert round(first.gain, 2) == 1.25
    assert "+25%" in first.describe()
    assert comparisons[1].horizontal["replicas"] == 4


def test_summary_csv_has_one_row_per_cell(tmp_path: Path) -> None:
    cells = [cell(1, 0.5, 40), cell(2, 0.5, None, status="failed", error="pending")]
    write_summary(tmp_path / "summary.csv", cells, 30)
    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert [r["cell"] for r in rows] == ["r1-c0.5-m512M", "r2-c0.5-m512M"]
    assert rows[0]["meets_target"] == "True" and rows[1]["meets_target"] == "False"
    assert rows[1]["error"] == "pending"


def test_docker_stats_sum_tasks_per_poll(tmp_path: Path) -> None:
    path = tmp_path / "docker_stats.csv"
    path.write_text("timestamp,container,name,cpu_percent,mem_bytes,mem_limit_bytes\n"
                    "10.0,a,api.1,50.0,100000000,536870912\n"
                    "10.0,b,api.2,30.0,120000000,536870912\n"
                    "12.0,a,api.1,100.0,110000000,536870912\n"
                    "99.0,a,api.1,400.0,999000000,536870912\n")
    summary = docker_stats_summary(path, 0.0, 20.0)
    assert summary["api_cpu_peak_cores"] == 1.0
    assert summary["api_cpu_mean_cores"] == 0.9
    assert summary["api_mem_peak_mb"] == round(120000000 / 1024**2, 1)
