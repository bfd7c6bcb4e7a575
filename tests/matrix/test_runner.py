"""The runner against a fake Docker and a replayed Locust run: every cell measured, the service
restored afterwards (also on Ctrl-C), finished cells kept and the run resumed where it stopped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from matrix import runner as runner_module
from matrix.analyse.records import StepRecord, TrialRecord
from matrix.config import ClosedLoop, MatrixFile, MatrixSettings, SearchProfile, load_matrix_file
from matrix.measure import deploy as deploy_module
from matrix.measure import trial as trial_module
from matrix.measure.cell_load import later_start, trials_ended
from matrix.measure.loadgen import profile_arguments
from matrix.runner import MatrixRunner, find_unfinished_run, prepare_run_dir
from stack.engine import ServiceResources
from tests.matrix.test_analysis import cell
from tests.stack.fake_engine import FakeEngine
from tests.stack.ready_server import ReadyServer

FIXTURE = Path(__file__).parent / "fixtures" / "search-swarm"
MATRIX = """
name: test
cells: {replicas: [1, 2], cpus: [0.5], memory: [256M, 512M]}
profile: {kind: search, start_rate: 150, step_seconds: 4}
trials: 2
objective: {p95_ms: 500}
target_rps: 300
warmup_seconds: 0
"""
ORIGINAL = ServiceResources(
    replicas=2,
    limit_nano_cpus=10**9,
    limit_memory_bytes=512 * 1024**2,
    reserve_nano_cpus=0,
    reserve_memory_bytes=0,
)


class ReplayedLocust:
    """Stands in for run_locust: copies a recorded Locust run and lets the fake engine serve it."""

    def __init__(
        self,
        engine: FakeEngine,
        interrupt_on_run: int | None = None,
        replace_task: bool = False,
        oom_kill: bool = False,
    ) -> None:
        self.engine = engine
        self.runs = 0
        self.interrupt_on_run = interrupt_on_run
        self.replace_task = replace_task
        self.oom_kill = oom_kill

    def __call__(
        self, command: list[str], out: Path, timeout: float, interval: float, on_tick: object = None
    ) -> int:
        self.runs += 1
        if self.runs == self.interrupt_on_run:
            raise KeyboardInterrupt
        for source in FIXTURE.iterdir():
            shutil.copy(source, out / source.name)
        self.engine.serve(1000, replace_task=self.replace_task, oom_kill=self.oom_kill)
        return 0


def new_engine(**kwargs: Any) -> FakeEngine:
    return FakeEngine(ORIGINAL, update_config={"Order": "start-first"}, **kwargs)


def replay_locust(
    monkeypatch: pytest.MonkeyPatch, engine: FakeEngine, **kwargs: Any
) -> ReplayedLocust:
    locust = ReplayedLocust(engine, **kwargs)
    monkeypatch.setattr(trial_module, "run_locust", locust)
    return locust


@pytest.fixture
def setup(tmp_path: Path, ready_server: ReadyServer, monkeypatch: pytest.MonkeyPatch) -> tuple:
    # Three answers in a row, without the half second between them a real stack needs.
    monkeypatch.setattr(deploy_module, "READY_INTERVAL_S", 0.0)
    path = tmp_path / "matrix.yaml"
    path.write_text(MATRIX)
    settings = MatrixSettings(
        results_dir=tmp_path / "results", stack_name="t", nginx_port=ready_server.port
    )
    return load_matrix_file(path), path, settings


def test_measures_every_cell_restores_the_service_and_reports(
    setup: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    matrix, path, settings = setup
    engine = new_engine()
    replay_locust(monkeypatch, engine)
    run_dir, info = prepare_run_dir(matrix, path, settings, None, fresh=False)
    MatrixRunner(matrix, settings, run_dir, info, engine).run()
    cells = matrix.cell_list()
    assert [u.replicas for u in engine.updates] == [c.replicas for c in cells] + [2]
    assert engine.updates[0].limit_nano_cpus == 5 * 10**8
    assert engine.updates[0].reserve_memory_bytes == 256 * 1024**2  # fits the fake node
    assert engine.updates[-1] == ORIGINAL
    assert engine.restored_configs == [{"Order": "start-first"}]
    result = json.loads((run_dir / "cells" / cells[0].cell_id / "cell.json").read_text())
    assert result["status"] == "measured" and len(result["trials"]) == 2
    assert [t["knee_index"] for t in result["trials"]] == [4, 4]
    assert result["nginx_requests"] == 2000  # two trials of 1000 requests each
    assert result["restarts"] == 0 and result["oom_kills"] == 0
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"
    assert (run_dir / "report.md").is_file() and (run_dir / "summary.csv").is_file()


def test_a_task_replaced_under_load_counts_as_restart_and_oom_kill(
    setup: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    matrix, path, settings = setup
    engine = new_engine()
    replay_locust(monkeypatch, engine, replace_task=True, oom_kill=True)
    run_dir, info = prepare_run_dir(matrix, path, settings, None, fresh=False)
    MatrixRunner(matrix, settings, run_dir, info, engine).run()
    first = matrix.cell_list()[0].cell_id
    result = json.loads((run_dir / "cells" / first / "cell.json").read_text())
    # The killed containers have stopped: only a look at all containers finds them. Every
    # trial of the cell replaced one task, and all of them count against the cell.
    assert result["restarts"] == matrix.trials == 2 and result["oom_kills"] == 2


def test_interrupt_restores_keeps_finished_cells_and_resumes(
    setup: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    matrix, path, settings = setup
    engine = new_engine()
    # Interrupted during the second cell's first trial.
    replay_locust(monkeypatch, engine, interrupt_on_run=3)
    run_dir, info = prepare_run_dir(matrix, path, settings, None, fresh=False)
    with pytest.raises(KeyboardInterrupt):
        MatrixRunner(matrix, settings, run_dir, info, engine).run()
    assert engine.updates[-1] == ORIGINAL
    assert engine.restored_configs == [{"Order": "start-first"}]
    done = sorted(p.name for p in (run_dir / "cells").iterdir() if not p.name.startswith("."))
    assert done == [matrix.cell_list()[0].cell_id]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"

    # The same command again finds the unfinished run and measures only what is left.
    assert find_unfinished_run(settings.results_dir, matrix.fingerprint()) == run_dir
    resumed = new_engine()
    locust = replay_locust(monkeypatch, resumed)
    again, info = prepare_run_dir(matrix, path, settings, None, fresh=False)
    assert again == run_dir
    MatrixRunner(matrix, settings, again, info, resumed).run()
    assert locust.runs == 2 * (len(matrix.cell_list()) - 1)
    assert resumed.updates[-1] == ORIGINAL
    assert not [p for p in (run_dir / "cells").iterdir() if p.name.startswith(".")]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"


def test_resume_refuses_a_run_of_another_matrix(setup: tuple, tmp_path: Path) -> None:
    matrix, path, settings = setup
    run_dir, _ = prepare_run_dir(matrix, path, settings, None, fresh=False)
    other = tmp_path / "other.yaml"
    other.write_text(MATRIX.replace("target_rps: 300", "target_rps: 301"))
    with pytest.raises(runner_module.MatrixRunError, match="different matrix"):
        prepare_run_dir(load_matrix_file(other), other, settings, run_dir, fresh=False)


def test_a_cell_that_cannot_deploy_is_recorded_and_the_rest_go_on(
    setup: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    matrix, path, settings = setup
    engine = new_engine(unschedulable_replicas=[2])
    replay_locust(monkeypatch, engine)
    monkeypatch.setattr("time.sleep", lambda seconds: None)
    matrix = matrix.model_copy(update={"converge_timeout_seconds": 0.01})
    run_dir, info = prepare_run_dir(matrix, path, settings, None, fresh=False)
    MatrixRunner(matrix, settings, run_dir, info, engine).run()
    statuses = {}
    for c in matrix.cell_list():
        statuses[c.cell_id] = json.loads((run_dir / "cells" / c.cell_id / "cell.json").read_text())[
            "status"
        ]
    assert statuses == {
        "r1-c0.5-m256M": "measured",
        "r1-c0.5-m512M": "measured",
        "r2-c0.5-m256M": "failed",
        "r2-c0.5-m512M": "failed",
    }
    assert "not measured" in (run_dir / "report.md").read_text()
    assert engine.updates[-1] == ORIGINAL


def test_adaptive_trials_stop_when_the_interval_is_narrow_and_start_near_the_knee(
    setup: tuple, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _, _, settings = setup
    path = tmp_path / "adaptive.yaml"
    path.write_text(
        MATRIX.replace("trials: 2", "trials: 1\nmax_trials: 4\nci_target: 0.1")
        .replace("replicas: [1, 2]", "replicas: [1]")
        .replace("memory: [256M, 512M]", "memory: [256M]")
    )
    matrix = load_matrix_file(path)
    assert matrix.adaptive
    engine = new_engine()
    locust = replay_locust(monkeypatch, engine)
    run_dir, info = prepare_run_dir(matrix, path, settings, None, fresh=False)
    MatrixRunner(matrix, settings, run_dir, info, engine).run()
    cell_dir = run_dir / "cells" / matrix.cell_list()[0].cell_id
    result = json.loads((cell_dir / "cell.json").read_text())
    # The replay gives every trial the same knee: the stopping rule wants three trials, and
    # the fourth never started.
    assert locust.runs == 3 and len(result["trials"]) == 3
    assert result["trials_ended"] == "converged"
    knee = result["trials"][0]["steps"][result["trials"][0]["knee_index"]]["served_rps"]
    # The second search started at half the first one's knee, not at the file's 150: the
    # replay's demand figures are of another cell, so the model expects far more than the
    # measured knee, and the lower of the two wins.
    first = (cell_dir / "trial-1" / "locust_command.txt").read_text().split()
    second = (cell_dir / "trial-2" / "locust_command.txt").read_text().split()
    assert first[first.index("--start-rate") + 1] == "150"
    assert float(second[second.index("--start-rate") + 1]) == pytest.approx(knee / 2, abs=0.1)


def test_no_further_trial_once_converged_or_past_the_budget() -> None:
    assert trials_ended([500.0], 0.1, 50.0, 100.0) == ""
    assert trials_ended([500.0, 505.0], 0.1, 50.0, 100.0) == ""  # two are never enough
    assert trials_ended([500.0, 505.0, 502.0], 0.1, 50.0, 100.0) == "converged"
    assert trials_ended([400.0, 600.0], 0.1, 50.0, 100.0) == ""
    assert trials_ended([400.0, 600.0], 0.1, 150.0, 100.0) == "budget"
    assert trials_ended([400.0, 600.0], 0.1, 150.0, None) == ""


def test_the_closed_loop_is_a_workshop_run_without_think_time() -> None:
    profile = ClosedLoop(enabled=True, users=64, seconds=10).profile(2.0)
    matrix = MatrixFile.model_validate(yaml.safe_load(MATRIX))
    args = profile_arguments(matrix.model_copy(update={"profile": profile}))
    assert args[args.index("--workshop-users") + 1] == "64"
    assert args[args.index("--think-min") + 1] == "0" == args[args.index("--think-max") + 1]
    assert args[args.index("--hold-seconds") + 1] == "10"
    assert args[args.index("--request-timeout") + 1] == "2"


def test_a_later_search_starts_at_half_the_predicted_knee() -> None:
    matrix = MatrixFile.model_validate(yaml.safe_load(MATRIX))
    steps = [
        # paced below the knee, saturated above it (0.5 CPU: 125 µs x 4000/s fills it)
        StepRecord(
            index=0,
            offered_rps=1000,
            served_rps=1000,
            passed=True,
            api_cpu_cores=0.25,
            demand_us_per_request=250.0,
        ),
        StepRecord(
            index=1,
            offered_rps=2000,
            served_rps=1990,
            passed=True,
            api_cpu_cores=0.49,
            demand_us_per_request=246.0,
        ),
        StepRecord(
            index=2,
            offered_rps=4000,
            served_rps=3900,
            passed=False,
            api_cpu_cores=0.5,
            demand_us_per_request=125.0,
        ),
    ]
    record = cell(1, 0.5, [])
    record.trials = [TrialRecord(trial=1, outcome="converged", steps=steps, knee_index=1)]
    start = later_start(matrix, record).profile
    assert isinstance(start, SearchProfile)
    # The model expects the quota over the saturated demand, 0.5 x 10^6 / 125 = 4000 req/s,
    # above the measured 1990: half the lower one.
    assert start.start_rate == 995.0
    # A saturated demand of 500 µs: the model expects 1000 req/s, below the measured knee.
    steps[2].demand_us_per_request = 500.0
    lower = later_start(matrix, record).profile
    assert isinstance(lower, SearchProfile)
    assert lower.start_rate == pytest.approx(500, rel=0.02)
    # Without demand figures, half the measured median knee.
    for step in steps:
        step.demand_us_per_request = None
    fallback = later_start(matrix, record).profile
    assert isinstance(fallback, SearchProfile) and fallback.start_rate == 995.0
    # The first trial starts where the file says.
    record.trials = []
    assert later_start(matrix, record) is matrix
