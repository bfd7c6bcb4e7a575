"""Across cells: knees over trials, the recommendation on the lowest trial, horizontal against
vertical scaling with overlapping ranges, the summary CSV."""

from __future__ import annotations

import csv
from pathlib import Path

from matrix.analyse.analysis import (
    meets_target,
    recommend,
    scaling_comparisons,
    summary_row,
    write_summary,
)
from matrix.analyse.records import CellRecord, StepRecord, TrialRecord


def trial(number: int, knee: float | None, offered: float = 0.0) -> TrialRecord:
    """A trial whose knee step served `knee` req/s (None: no step passed)."""
    steps = [
        StepRecord(
            index=0,
            offered_rps=offered or (knee or 100) * 1.02,
            served_rps=knee or 90.0,
            passed=knee is not None,
            p95_ms=40.0,
        ),
        StepRecord(
            index=1,
            offered_rps=(knee or 100) * 2,
            served_rps=(knee or 90) * 1.1,
            passed=False,
            p95_ms=900.0,
        ),
    ]
    return TrialRecord(
        trial=number,
        outcome="converged",
        steps=steps,
        knee_index=0 if knee is not None else None,
        requests=1000,
        failures=3,
    )


def cell(
    replicas: int, cpus: float, knees: list[float | None], memory: str = "256M", **extra: object
) -> CellRecord:
    values: dict[str, object] = {
        "cell_id": f"r{replicas}-c{cpus:g}-m{memory}",
        "replicas": replicas,
        "cpus": cpus,
        "memory": memory,
        "memory_bytes": 256 * 1024**2,
        "total_cpus": replicas * cpus,
        "status": "measured",
        "trials": [trial(i + 1, k) for i, k in enumerate(knees)],
    }
    return CellRecord.model_validate({**values, **extra})


def test_knee_figures_over_trials() -> None:
    measured = cell(1, 0.5, [300.0, 320.0, 310.0])
    assert (measured.knee_low, measured.knee_median, measured.knee_high) == (300, 310, 320)
    assert measured.lowest_trial.trial == 1
    # The knee is what was served, never more than the most any step served.
    assert measured.knee_high <= measured.max_served_rps
    failed_trial = cell(1, 0.5, [300.0, None])
    assert failed_trial.knee_low == 0.0


def test_meets_target_needs_every_trial_and_no_restart() -> None:
    assert meets_target(cell(1, 0.5, [310.0, 305.0]), 300)
    assert not meets_target(cell(1, 0.5, [310.0, 290.0]), 300)
    assert not meets_target(cell(1, 0.5, [400.0], restarts=1), 300)
    assert not meets_target(cell(1, 0.5, [400.0], oom_kills=1), 300)
    assert not meets_target(cell(1, 0.5, [400.0], status="failed"), 300)


def test_recommendation_is_the_cheapest_whose_lowest_trial_holds() -> None:
    cells = [
        cell(1, 0.5, [520.0, 480.0]),  # cheapest, but one trial missed the target
        cell(1, 1.0, [900.0, 880.0]),
        cell(2, 0.5, [950.0, 930.0], memory="512M"),
    ]
    rec = recommend(cells, 500)
    assert rec.cell is cells[1]
    assert "1 replica(s) x 1 CPU x 256M" in rec.text and "880-900" in rec.text


def test_no_recommendation_names_the_best_and_the_gap() -> None:
    rec = recommend([cell(1, 0.5, [200.0]), cell(1, 1.0, [400.0, 380.0])], 500)
    assert rec.cell is None
    assert "1 replica(s) x 1 CPU" in rec.text and "measure larger cells" in rec.text
    assert recommend([], 500).cell is None


def test_overlapping_ranges_are_no_measurable_difference() -> None:
    (comparison,) = scaling_comparisons(
        [cell(1, 1.0, [600.0, 660.0]), cell(2, 0.5, [640.0, 700.0])]
    )
    assert comparison.horizontal.replicas == 2
    text = comparison.describe()
    assert "no measurable difference" in text and "%" not in text


def test_separate_ranges_give_the_gain() -> None:
    (comparison,) = scaling_comparisons(
        [cell(1, 1.0, [600.0, 620.0]), cell(2, 0.5, [480.0, 500.0])]
    )
    assert comparison.gain is not None and comparison.gain < 1
    assert comparison.describe().endswith(": the 2 smaller replicas served 20% less.")
    (comparison,) = scaling_comparisons(
        [cell(1, 1.0, [400.0, 410.0]), cell(2, 0.5, [500.0, 512.5])]
    )
    assert comparison.describe().endswith(": the 2 smaller replicas served 25% more.")


def test_summary_csv_has_a_row_per_cell(tmp_path: Path) -> None:
    cells = [cell(1, 0.5, [300.0, 310.0]), cell(2, 0.5, [], status="failed", error="no fit")]
    write_summary(tmp_path / "summary.csv", cells, 300)
    with (tmp_path / "summary.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["cell"] for r in rows] == ["r1-c0.5-m256M", "r2-c0.5-m256M"]
    assert rows[0]["knee_rps_low"] == "300.0" and rows[0]["meets_target"] == "True"
    assert rows[1]["error"] == "no fit" and rows[1]["knee_rps_low"] == ""
    assert summary_row(cells[0], 300)["knee_offered_rps"] == 306.0
