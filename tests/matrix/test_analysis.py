"""Across cells: knees over trials with their interval, the recommendation on the interval's low
end, horizontal against vertical scaling by the interval of the ratio, the summary CSV."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from matrix.analyse.analysis import (
    meets_target,
    recommend,
    scaling_comparisons,
    summary_row,
    write_summary,
)
from matrix.analyse.capacity_model import Prediction
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
        # The failing step 5 % above the knee's, as a converged search leaves it.
        StepRecord(
            index=1,
            offered_rps=(knee or 100) * 1.02 * 1.05,
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


def test_meets_target_on_the_low_end_of_the_interval() -> None:
    # Three close trials: the interval's low end (about 293) is above 290, below 300.
    close = cell(1, 0.5, [310.0, 305.0, 300.0])
    assert close.knee_ci is not None and 290 < close.knee_ci.low < 300
    assert meets_target(close, 290) and not meets_target(close, 300)
    # Two trials far apart: every trial served 300, but the interval says it is not sure.
    assert not meets_target(cell(1, 0.5, [310.0, 500.0]), 300)
    # One trial: that trial.
    assert meets_target(cell(1, 0.5, [400.0]), 300)
    assert not meets_target(cell(1, 0.5, [400.0], restarts=1), 300)
    assert not meets_target(cell(1, 0.5, [400.0], oom_kills=1), 300)
    assert not meets_target(cell(1, 0.5, [400.0], status="failed"), 300)
    assert not meets_target(cell(1, 0.5, [400.0, None]), 300)


def test_recommendation_is_the_cheapest_whose_interval_holds() -> None:
    cells = [
        cell(1, 0.5, [520.0, 480.0]),  # cheapest, but its interval reaches far below 500
        cell(1, 1.0, [900.0, 880.0, 890.0]),
        cell(2, 0.5, [950.0, 930.0], memory="512M"),
    ]
    rec = recommend(cells, 500)
    assert rec.cell is cells[1]
    # The t interval (865-915) is narrower than the trials' 5 % brackets: those set it.
    assert "1 replica(s) x 1 CPU x 256M" in rec.text and "95 % interval 848-934" in rec.text


def test_no_recommendation_names_the_best_and_the_gap() -> None:
    rec = recommend([cell(1, 0.5, [200.0]), cell(1, 1.0, [400.0, 380.0])], 500)
    assert rec.cell is None
    assert "1 replica(s) x 1 CPU" in rec.text and "measure larger cells" in rec.text
    assert recommend([], 500).cell is None


def test_a_ratio_whose_interval_holds_one_is_undecided() -> None:
    # The run 1: 2 x 0.05 at 540 and 787, 1 x 0.1 at 487 and 554.
    (comparison,) = scaling_comparisons(
        [cell(1, 0.1, [487.0, 554.0]), cell(2, 0.05, [540.0, 787.0])]
    )
    assert comparison.horizontal.replicas == 2 and not comparison.decided
    text = comparison.describe()
    assert "2 x 0.05 serves 1.26x (" in text and "**undecided at this budget**" in text


def test_a_ratio_whose_interval_excludes_one_decides() -> None:
    (comparison,) = scaling_comparisons(
        [cell(1, 1.0, [600.0, 620.0, 610.0]), cell(2, 0.5, [480.0, 500.0, 490.0])]
    )
    ratio = comparison.ratio
    assert comparison.decided and ratio is not None and ratio.high < 1
    assert ratio.centre == pytest.approx(490 / 610, rel=0.001)
    assert f"**2 x 0.5 serves 0.80x ({ratio.low:.2f}-{ratio.high:.2f}) what 1 x 1 serves**" in (
        comparison.describe()
    )


def test_a_single_trial_gives_no_ratio() -> None:
    (comparison,) = scaling_comparisons([cell(1, 1.0, [600.0]), cell(2, 0.5, [480.0, 500.0])])
    assert comparison.ratio is None and "**undecided**" in comparison.describe()


def test_summary_csv_has_a_row_per_cell(tmp_path: Path) -> None:
    cells = [cell(1, 0.5, [300.0, 310.0]), cell(2, 0.5, [], status="failed", error="no fit")]
    prediction = Prediction(
        knee_rps=330.0, knee_offered_rps=340.0, saturation_rps=333.0, demand_us_per_request=1500
    )
    write_summary(tmp_path / "summary.csv", cells, 300, {cells[0].cell_id: prediction})
    with (tmp_path / "summary.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["cell"] for r in rows] == ["r1-c0.5-m256M", "r2-c0.5-m256M"]
    assert rows[0]["knee_rps_low"] == "300.0" and rows[0]["meets_target"] == "False"
    assert float(rows[0]["knee_rps_ci_low"]) < 300 < 310 < float(rows[0]["knee_rps_ci_high"])
    assert rows[0]["trials"] == "2" and rows[0]["knee_rps_median"] == "305.0"
    assert rows[0]["predicted_knee_rps"] == "330.0"
    assert float(rows[0]["prediction_error"]) == pytest.approx(330 / 305 - 1, abs=1e-4)
    assert rows[1]["error"] == "no fit" and rows[1]["knee_rps_low"] == ""
    assert rows[1]["predicted_knee_rps"] == ""
    assert summary_row(cells[0], 300)["knee_offered_rps"] == 306.0
