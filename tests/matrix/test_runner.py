"""The runner against a fake Docker and a replayed Locust run: every cell measured, the service
restored afterwards (also on Ctrl-C), finished cells kept and the run resumed where it stopped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from loadtest import open_model
from matrix import runner as runner_module
from matrix.analyse.records import CellRecord, StepRecord, TrialRecord
from matrix.config import ClosedLoop, MatrixFile, MatrixSettings, SearchProfile, load_matrix_file
from matrix.measure import deploy as deploy_module
from matrix.measure import trial as trial_module
from matrix.measure.cell_load import later_start, predicted_start, search_limit, trials_ended
from matrix.measure.deploy import SEARCH_CONTAINER, CellDeployer
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
    original_container = engine.container_settings("t_api")
    replay_locust(monkeypatch, engine)
    run_dir, info = prepare_run_dir(matrix, path, settings, None, fresh=False)
    MatrixRunner(matrix, settings, run_dir, info, engine).run()
    cells = matrix.cell_list()
    assert [u.replicas for u in engine.updates] == [c.replicas for c in cells] + [2]
    # Searched without Docker's exec probe (it stalls a small quota), and the probe put back.
    assert engine.container_updates[:-1] == [SEARCH_CONTAINER] * len(cells)
    assert engine.container == original_container
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
    limit = search_limit(TrialRecord.model_validate(result["trials"][0]))
    assert limit is not None
    # The second search brackets the rate where the first one's short steps converged (0.9 x,
    # the file's later_start_share), not the file's 150, and moves by later_growth.
    first = (cell_dir / "trial-1" / "locust_command.txt").read_text().split()
    second = (cell_dir / "trial-2" / "locust_command.txt").read_text().split()
    assert first[first.index("--start-rate") + 1] == "150"
    assert float(second[second.index("--start-rate") + 1]) == pytest.approx(0.9 * limit, abs=0.1)
    assert second[second.index("--growth") + 1] == "1.1"


def test_no_further_trial_once_converged_or_past_the_budget() -> None:
    def ended(knees: list[float], elapsed: float, budget: float | None = 100.0) -> str:
        return trials_ended(cell(1, 0.5, knees), 0.1, elapsed, budget)

    assert ended([500.0], 50.0) == ""
    assert ended([500.0, 505.0], 50.0) == ""  # two are never enough
    assert ended([500.0, 505.0, 502.0], 50.0) == "converged"
    assert ended([400.0, 600.0], 50.0) == ""
    assert ended([400.0, 600.0], 150.0) == "budget"
    assert ended([400.0, 600.0], 150.0, None) == ""


def test_trials_that_agree_converge_only_when_they_located_their_knees_finely() -> None:
    # Three equal knees, each with a failing rate 5 % above: within +-10 %. The same knees
    # from trials whose failures lay 15 % above: the knee is known no better than that.
    fine = cell(1, 0.5, [500.0, 500.0, 500.0])
    assert fine.knee_resolution == pytest.approx(0.05)
    assert trials_ended(fine, 0.1, 50.0, 100.0) == "converged"
    coarse = fine.model_copy(deep=True)
    for trial in coarse.trials:
        trial.steps[1].offered_rps = trial.steps[0].offered_rps * 1.15
    assert coarse.knee_resolution == pytest.approx(0.15)
    assert trials_ended(coarse, 0.1, 50.0, 100.0) == ""


def test_the_closed_loop_is_a_workshop_run_without_think_time() -> None:
    profile = ClosedLoop(enabled=True, users=64, seconds=10).profile(2.0)
    matrix = MatrixFile.model_validate(yaml.safe_load(MATRIX))
    args = profile_arguments(matrix.model_copy(update={"profile": profile}))
    assert args[args.index("--workshop-users") + 1] == "64"
    assert args[args.index("--think-min") + 1] == "0" == args[args.index("--think-max") + 1]
    assert args[args.index("--hold-seconds") + 1] == "10"
    assert args[args.index("--request-timeout") + 1] == "2"


def _later_trial(knees: list[float]) -> tuple[MatrixFile, CellRecord]:
    matrix = MatrixFile.model_validate(yaml.safe_load(MATRIX))
    record = cell(1, 0.5, [])
    record.trials = [
        TrialRecord(
            trial=trial,
            outcome="converged",
            steps=[StepRecord(index=0, offered_rps=knee, served_rps=knee, passed=True)],
            knee_index=0,
        )
        for trial, knee in enumerate(knees, start=1)
    ]
    return matrix, record


def test_a_later_search_brackets_the_median_knee_and_the_first_starts_where_the_file_says() -> None:
    matrix, record = _later_trial([1000.0, 1100.0, 900.0])
    start = later_start(matrix, record).profile
    assert isinstance(start, SearchProfile) and isinstance(matrix.profile, SearchProfile)
    assert start.start_rate == 900.0  # 0.9 x the median limit 1000
    assert start.growth == 1.1
    assert start.precision == matrix.profile.precision  # the same precision as the first
    record.trials = []
    assert later_start(matrix, record) is matrix


def test_a_later_search_starts_below_the_limit_the_short_steps_found_not_the_held_knee() -> None:
    """Holds fail where the short steps pass: the later search climbs by short steps, so it
    starts below where those converged (offered rates), whatever the holds then made of it."""
    matrix, record = _later_trial([])
    rates = [(400, True, False), (800, False, False), (600, False, False), (500, True, False)]
    rates += [(550, False, False), (500, False, True), (475, True, True)]
    steps = [
        StepRecord(index=i, offered_rps=rate, served_rps=rate - 20, passed=ok, confirmation=held)
        for i, (rate, ok, held) in enumerate(rates)
    ]
    record.trials = [TrialRecord(trial=1, outcome="converged", steps=steps, knee_index=6)]
    start = later_start(matrix, record).profile
    assert isinstance(start, SearchProfile)
    assert start.start_rate == 450.0  # 0.9 x 500, the highest passing short step below 550


def _held_trials(matrix: MatrixFile, record: CellRecord, held: list[float]) -> MatrixFile:
    """Trials whose knees were held at `held` (offered) after a failing short step 5 % above."""
    record.trials = [
        TrialRecord(
            trial=number,
            outcome="converged, knee held",
            steps=[
                StepRecord(index=0, offered_rps=rate, served_rps=rate, passed=True),
                StepRecord(index=1, offered_rps=rate * 1.05, served_rps=rate, passed=False),
                StepRecord(
                    index=2, offered_rps=rate, served_rps=rate - 5, passed=True, confirmation=True
                ),
            ],
            knee_index=2,
        )
        for number, rate in enumerate(held, start=1)
    ]
    confirming = matrix.profile.model_copy(update={"confirm_seconds": 10.0})
    return matrix.model_copy(update={"profile": confirming})


def test_later_trials_of_a_confirming_profile_hold_from_the_median_held_rate() -> None:
    matrix, record = _later_trial([])
    matrix = _held_trials(matrix, record, [400.0, 440.0, 420.0])
    start = later_start(matrix, record).profile
    assert isinstance(start, SearchProfile)
    assert start.holds_only and start.start_rate == 420.0
    args = profile_arguments(matrix.model_copy(update={"profile": start}))
    assert "--holds-only" in args and args[args.index("--start-rate") + 1] == "420"
    # A first trial, or one whose holds all failed, leaves nothing held: a search again.
    record.trials[0].knee_index = 0
    record.trials = record.trials[:1]
    assert not later_start(matrix, record).profile.holds_only


@pytest.mark.parametrize("capacity", [100.0, 300.0, 395.0, 420.0, 445.0, 470.0, 600.0])
def test_a_holds_only_trial_brackets_its_own_knee(capacity: float) -> None:
    """Holds go up by 5 % while they pass and down while they fail (5 %, then 10 %, 20 % ...)
    until a pass and a failure lie 5 % apart; near the start that costs two holds, a knee down
    to 0.7 x the start is still bracketed within the hold limit, and one beyond it is reported
    as not bracketed, with the highest hold that passed."""
    search = open_model.HoldSearch(start_rate=420.0, precision=0.05)
    rates = []
    while (rate := search.next_rate()) is not None:
        rates.append(rate)
        search.record(rate, rate <= capacity)
    passed = [r for r in rates if r <= capacity]
    assert len(rates) <= open_model.MAX_HOLDS
    if 280.0 <= capacity < 420.0 * 1.05**3:
        assert search.outcome == open_model.CONFIRMED
        knee = max(passed)
        assert knee <= capacity < knee / 0.95 + 1e-9
    elif capacity > 420.0:
        assert search.outcome == open_model.HOLDS_LIMIT and max(passed) <= capacity
    else:
        assert search.outcome == open_model.NO_PASS and not passed
    if 400.0 <= capacity < 441.0:
        assert len(rates) == 2


def test_a_holds_only_trial_after_a_noisy_pass_above_a_failure_stops_at_the_bracket() -> None:
    search = open_model.HoldSearch(start_rate=500.0, precision=0.05)
    outcomes = iter([False, True])  # 500 fails, 475 holds: the knee is 475
    while (rate := search.next_rate()) is not None:
        search.record(rate, next(outcomes))
    assert search.outcome == open_model.CONFIRMED
    assert search.passed_rates == [pytest.approx(475.0)]


@pytest.mark.parametrize("capacity", [300.0, 700.0, 880.0, 1000.0, 1300.0, 2500.0])
def test_a_later_search_finds_its_own_knee_not_the_previous_one(capacity: float) -> None:
    """Its first step may fail (the search then goes down) and nothing caps it near the
    earlier knee: each trial stays an independent measurement."""
    matrix, record = _later_trial([1000.0])
    profile = later_start(matrix, record).profile
    assert isinstance(profile, SearchProfile)
    search = open_model.RateSearch(
        start_rate=profile.start_rate, growth=profile.growth, precision=profile.precision
    )
    rates = []
    while (rate := search.next_rate()) is not None:
        rates.append(rate)
        search.record(rate, rate <= capacity)
    assert search.outcome == open_model.CONVERGED
    assert search.lo is not None and search.hi is not None
    assert search.lo <= capacity < search.hi
    assert (search.hi - search.lo) / search.lo <= profile.precision
    if capacity < profile.start_rate:
        assert rates[1] < rates[0]  # the first step failed and the search went down
    # Near the earlier knee it costs a handful of steps, not a climb from the file's start.
    if 880.0 <= capacity <= 1000.0:
        assert len(rates) <= 5


def test_cells_the_autoscaler_scales_keep_the_health_check(tmp_path: Path) -> None:
    # A replica the autoscaler adds must not take traffic before its first probe says ready.
    path = tmp_path / "matrix.yaml"
    path.write_text(MATRIX)
    matrix = load_matrix_file(path)
    deployer = CellDeployer(matrix, MatrixSettings(stack_name="t"), new_engine())
    cell = matrix.cell_list()[0]
    assert deployer.container(cell) == SEARCH_CONTAINER
    assert deployer.container(cell.model_copy(update={"autoscale": "on"})) is None


@pytest.mark.parametrize(("autoscale", "ready_timeout"), [("stack", "1 s"), ("on", "0 s")])
def test_readiness_without_the_health_check_gets_the_convergence_timeout(
    tmp_path: Path,
    ready_server: ReadyServer,
    monkeypatch: pytest.MonkeyPatch,
    autoscale: str,
    ready_timeout: str,
) -> None:
    """Our api searched for its knee runs without the container health check, so a converged
    task is running, not yet ready: /ready through Nginx is its readiness and gets the whole
    convergence timeout, as a target's health path does. A cell that keeps the probe (the
    autoscaler's) converged healthy and keeps the short READY_TIMEOUT_S."""
    monkeypatch.setattr(deploy_module, "READY_TIMEOUT_S", 0.0)
    ready_server.down = True
    path = tmp_path / "matrix.yaml"
    path.write_text(MATRIX + "converge_timeout_seconds: 1\n")
    matrix = load_matrix_file(path)
    settings = MatrixSettings(stack_name="t", nginx_port=ready_server.port)
    deployer = CellDeployer(matrix, settings, new_engine())
    searched = matrix.cell_list()[0].model_copy(update={"autoscale": autoscale})
    record = cell(searched.replicas, searched.cpus, [])
    with pytest.raises(runner_module.MatrixRunError) as caught:
        deployer.deploy(searched, record, lambda _line: None)
    assert f"did not answer {settings.base_url}/ready with 2xx within {ready_timeout}" in str(
        caught.value
    )


def test_a_cells_first_search_starts_below_the_knee_predicted_from_earlier_cells() -> None:
    """Known answer: 100 CPU-µs per request at every rate, the quota binding above 400 req/s
    on 1 x 0.05 CPU, so 1 x 0.1 CPU saturates at 0.1 / 100 µs = 1000 req/s. A 4 s step passes
    a little above that (its queue stays within the p95 objective), and the first search of
    that cell starts at 0.9 x the predicted knee."""
    matrix = MatrixFile.model_validate(yaml.safe_load(MATRIX))
    earlier = cell(1, 0.05, [])
    earlier.trials = [
        TrialRecord(
            trial=1,
            outcome="converged",
            steps=[
                StepRecord(
                    index=i,
                    offered_rps=rate,
                    served_rps=min(rate, 500.0),
                    passed=rate <= 450,
                    demand_us_per_request=100.0,
                    api_cpu_cores=min(rate, 500.0) * 100e-6,
                )
                for i, rate in enumerate([100.0, 200.0, 400.0, 450.0, 800.0])
            ],
            knee_index=3,
        )
    ]
    record = cell(1, 0.1, [])
    near, predicted = predicted_start(matrix, record, [earlier])
    profile = near.profile
    assert predicted is not None and 1000.0 < predicted < 1250.0
    assert isinstance(profile, SearchProfile) and isinstance(matrix.profile, SearchProfile)
    assert profile.start_rate == round(0.9 * predicted, 1)
    assert profile.growth == matrix.profile.later_growth and not profile.holds_only
    # The run's first cell, or earlier cells without demand figures: the file's start_rate.
    assert predicted_start(matrix, record, []) == (matrix, None)
    assert predicted_start(matrix, record, [cell(1, 0.05, [400.0])]) == (matrix, None)
