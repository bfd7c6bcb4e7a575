"""Two runs compared cell by cell (matrix/analyse/compare.py, matrix/report/compare.py): the
agreement test of issue 18, B's knee over A's with its interval, and whether both knees were
bound by the CPU quota, so that what one answer cost says how far they lie apart."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
from pathlib import Path

import pytest
from scipy import stats

from matrix.analyse.compare import compare_cells, quota_share, speed_index
from matrix.analyse.records import CellRecord
from matrix.config import QUICK_MATRIX_FILE
from matrix.report.compare import load_run, main, render, verdict
from matrix.report.report import CELL_FILE, CELLS_DIR
from matrix.runner import RUN_FILE
from tests.matrix.test_analysis import cell
from tests.support import PROJECT_ROOT

# The 1 x 0.1 CPU cell of two quick runs from fresh clones of one commit, 17 minutes apart
# (2026-12-06 14:26 and 14:43 UTC): trial knees and the median CPU per answer at the knee.
RUN_A_KNEES, RUN_A_DEMAND = [1241.0, 1246.0, 1172.0], 79.7
RUN_B_KNEES, RUN_B_DEMAND = [1064.0, 1014.0, 1036.0], 95.9


def at_quota(record: CellRecord, demand_us: float, share: float = 1.0) -> CellRecord:
    """Each knee step using `share` of the cell's quota at `demand_us` per answer."""
    for trial in record.trials:
        assert trial.knee is not None
        trial.knee.api_cpu_cores = share * record.total_cpus
        trial.knee.demand_us_per_request = demand_us
    return record


def test_two_runs_that_disagree_by_what_an_answer_cost() -> None:
    a = at_quota(cell(1, 0.1, list(RUN_A_KNEES)), RUN_A_DEMAND)
    b = at_quota(cell(1, 0.1, list(RUN_B_KNEES)), RUN_B_DEMAND)
    [row] = compare_cells([a], [b])
    assert row.agree is False  # 1036 lies below A's interval, 1241 above B's
    # B over A: the Welch interval on the log knees, as wide as scipy's or wider (its degrees
    # of freedom rounded down).
    la, lb = [math.log(k) for k in RUN_A_KNEES], [math.log(k) for k in RUN_B_KNEES]
    assert row.knee_ratio is not None
    assert row.knee_ratio.centre == pytest.approx(
        math.exp(statistics.fmean(lb) - statistics.fmean(la))
    )
    welch = stats.ttest_ind(lb, la, equal_var=False).confidence_interval(0.95)
    assert row.knee_ratio.low <= math.exp(welch.low) and row.knee_ratio.high >= math.exp(welch.high)
    assert row.knee_ratio.high < 1.0  # decided: B served less
    assert row.quota_bound is True
    assert row.demand_ratio == pytest.approx(RUN_B_DEMAND / RUN_A_DEMAND)
    text = verdict(row)
    assert "disagree" in text and "1.20x as much in B" in text
    assert "served less because each answer cost more CPU" in text
    # The other way round, the same figures read as more.
    [back] = compare_cells([b], [a])
    assert "served more because each answer cost less CPU" in verdict(back)


def test_two_runs_that_agree() -> None:
    # The 1 x 0.05 CPU cell of the same two runs.
    a = at_quota(cell(1, 0.05, [523.0, 571.0, 517.0]), 94.3)
    b = at_quota(cell(1, 0.05, [447.0, 505.0, 511.0]), 98.2)
    [row] = compare_cells([a], [b])
    assert row.agree is True
    assert verdict(row).startswith("the runs agree")


def test_a_knee_below_the_quota_is_not_put_down_to_cost() -> None:
    a = at_quota(cell(1, 0.1, list(RUN_A_KNEES)), RUN_A_DEMAND)
    b = at_quota(cell(1, 0.1, list(RUN_B_KNEES)), RUN_B_DEMAND, share=0.6)
    [row] = compare_cells([a], [b])
    assert row.quota_bound is False
    assert quota_share(b) == pytest.approx(0.6)
    text = verdict(row)
    assert "did not use their whole CPU quota at both knees (A 100 %, B 60 % of it)" in text
    assert "as much in B" not in text


def test_one_trial_is_not_compared() -> None:
    [row] = compare_cells([cell(1, 0.1, [1000.0])], [cell(1, 0.1, [900.0, 950.0])])
    assert row.agree is None and row.knee_ratio is None
    assert "not compared" in verdict(row)


def test_only_cells_measured_in_both_runs_are_paired() -> None:
    a = [cell(1, 0.05, [500.0, 510.0]), cell(1, 0.1, [1000.0, 990.0]), cell(2, 0.05, [9.0, 9.0])]
    b = [
        cell(2, 0.05, [900.0, 910.0], status="failed"),
        cell(1, 0.1, [1000.0, 1010.0]),
        cell(1, 0.2, [2000.0, 2010.0]),
    ]
    assert [row.cell_id for row in compare_cells(a, b)] == ["r1-c0.1-m256M"]


def test_speed_index_of_a_run() -> None:
    assert speed_index(45.8, 46.5) == pytest.approx(46.15)
    assert speed_index(None, 48.0) == 48.0
    assert speed_index(None, None) is None


def write_run(path: Path, cells: list[CellRecord], speed: tuple[float, float]) -> Path:
    """A finished run directory as the runner leaves it: run.json, matrix.yaml, cells."""
    path.mkdir()
    (path / "matrix.yaml").write_text(QUICK_MATRIX_FILE.read_text())
    info = {"speed_index_start_us": speed[0], "speed_index_end_us": speed[1], "started": "t0"}
    (path / RUN_FILE).write_text(json.dumps(info))
    for record in cells:
        cell_dir = path / CELLS_DIR / record.cell_id
        cell_dir.mkdir(parents=True)
        (cell_dir / CELL_FILE).write_text(record.model_dump_json())
    return path


def test_the_command_prints_the_table_and_refuses_a_directory_that_is_no_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = write_run(
        tmp_path / "a", [at_quota(cell(1, 0.1, list(RUN_A_KNEES)), RUN_A_DEMAND)], (45.8, 46.5)
    )
    b = write_run(
        tmp_path / "b", [at_quota(cell(1, 0.1, list(RUN_B_KNEES)), RUN_B_DEMAND)], (50.5, 48.0)
    )
    assert main([str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "B's host speed index is 1.07x A's" in out
    assert "| r1-c0.1-m256M | 1241 (1120-1327) | 1036 (977-1102) | 0.85x (0.79-0.92) | no |" in out
    assert "| 100 % / 100 % | 79.7 / 95.9 (1.20x) |" in out
    assert main([str(a), str(tmp_path)]) == 2
    assert "no readable run.json" in capsys.readouterr().err


@pytest.mark.parametrize("pair", ["a-b", "b-c", "c-d"])
def test_the_committed_comparisons_are_what_the_command_prints(
    pair: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # matrix/README.md quotes docs/reruns/*.md: they must stay what the code makes of the
    # committed runs.
    monkeypatch.chdir(PROJECT_ROOT)
    runs = Path("docs/reruns")
    first, second = pair.split("-")
    printed = render(load_run(runs / first), load_run(runs / second))
    assert printed == (runs / f"{pair}.md").read_text(encoding="utf-8")


def test_the_script_reads_run_directories_relative_to_where_it_is_called() -> None:
    # A user in another folder passes paths relative to it; the script must not cd first.
    result = subprocess.run(
        ["bash", str(PROJECT_ROOT / "scripts" / "compare_runs.sh"), "reruns/c", "reruns/d"],
        cwd=PROJECT_ROOT / "docs",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "| directory | reruns/c | reruns/d |" in result.stdout
    assert result.stdout.endswith("each median lies inside the other's interval.\n")
