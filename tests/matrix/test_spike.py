"""The spike profile and the autoscale cells: the matrix-file form, the locustfile options and
schedule, the autoscaler driven around a cell (fake engine), and the timeline's derived times
on a synthetic spike with known answers (explicit timestamps, never the clock)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from loadtest.spike import Phase, spike_counts, spike_phases, spike_step_rates, step_rates
from matrix.analyse.records import CellRecord, StepRecord, TrialRecord
from matrix.analyse.spike import (
    DECISIONS_FILE,
    REPLICAS_FILE,
    AutoscalerDecision,
    ReplicaSample,
    parse_decisions,
    read_replicas,
    spike_timeline,
)
from matrix.config import (
    PROJECT_ROOT,
    MatrixFile,
    MatrixFileError,
    MatrixSettings,
    SpikeProfile,
    load_matrix_file,
)
from matrix.errors import MatrixRunError
from matrix.measure import deploy as deploy_module
from matrix.measure import trial as trial_module
from matrix.measure.autoscale import ORIGINAL_KEY, AutoscalerCells
from matrix.measure.loadgen import profile_arguments
from matrix.report.report import CELL_FILE, CELLS_DIR, write_report
from matrix.runner import MatrixRunner, prepare_run_dir
from stack.engine import ServiceResources
from tests.stack.fake_engine import FakeEngine
from tests.stack.ready_server import ReadyServer

T0 = 1_700_000_000.0  # the jump; every time below is explicit
STEP_S = 5.0
COUNTS = (2, 4, 4)  # lead, peak, tail steps
OBJECTIVE_MS = 500.0
MAX_FAILURES = 0.01


def spike_matrix(**fields: object) -> MatrixFile:
    values: dict[str, object] = {
        "name": "spike-test",
        "cells": [{"replicas": 1, "cpus": 0.05, "memory": "256M"}],
        "autoscale": ["on", "off"],
        "profile": {"kind": "spike", "knee_rps": 276, "lead_seconds": 10, "peak_seconds": 20},
        "target_rps": 100,
    }
    return MatrixFile.model_validate({**values, **fields})


def test_the_spike_schedule_in_phases_and_steps() -> None:
    phases = spike_phases(27.6, 828.0, 10, 60, 0)
    assert phases == [Phase("base", 27.6, 10), Phase("peak", 828.0, 60)]
    assert step_rates(phases, 20) == [27.6, 828.0, 828.0, 828.0]
    # A phase is never cut short: 25 s in steps of 10 s is 3 steps.
    assert step_rates([Phase("peak", 1.0, 25)], 10) == [1.0, 1.0, 1.0]
    assert spike_step_rates(10, 30, (1, 2, 1)) == [10, 30, 30, 10]
    assert spike_counts("4,12,18") == (4, 12, 18)


@pytest.mark.parametrize("text", ["4,0,1", "1,2", "a,b,c", "1,-1,2"])
def test_bad_spike_steps_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="--spike-steps"):
        spike_counts(text)


def test_a_peak_below_the_base_is_refused() -> None:
    with pytest.raises(ValueError, match="base rate < peak rate"):
        spike_phases(100, 50, 10, 10, 10)


def test_the_spike_profile_and_its_locust_options() -> None:
    matrix = spike_matrix()
    profile = matrix.profile
    assert isinstance(profile, SpikeProfile)
    assert (profile.base_rate, profile.peak_rate) == (27.6, 828.0)
    assert profile.step_counts() == (2, 4, 18)
    assert [c.cell_id for c in matrix.cell_list()] == [
        "r1-c0.05-m256M-ason",
        "r1-c0.05-m256M-asoff",
    ]
    args = profile_arguments(matrix)
    assert args[args.index("--load-profile") + 1] == "spike"
    assert args[args.index("--start-rate") + 1] == "27.6"
    assert args[args.index("--spike-rate") + 1] == "828"
    assert args[args.index("--spike-steps") + 1] == "2,4,18"
    assert args[args.index("--settle-seconds") + 1] == "0"


def test_autoscale_on_needs_the_spike_profile(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "cells: {replicas: [1], cpus: [0.1], memory: [256M]}\nautoscale: [on]\n"
        "profile: {kind: search, start_rate: 100}\ntarget_rps: 100\n",
        encoding="utf-8",
    )
    with pytest.raises(MatrixFileError, match="autoscale: 'on' changes the replicas"):
        load_matrix_file(path)


def test_the_committed_spike_matrix_is_three_times_the_quick_runs_knee() -> None:
    matrix = load_matrix_file(PROJECT_ROOT / "matrix" / "matrix-spike.yaml")
    assert isinstance(matrix.profile, SpikeProfile)
    assert matrix.profile.multiple == 3
    assert [c.autoscale for c in matrix.cell_list()] == ["on", "off"]


# --- the timeline, on a synthetic spike -------------------------------------------------------


def step(
    index: int, start: float, rate: float, p95: float, refused: int = 0, failed: int = 0
) -> StepRecord:
    return StepRecord(
        index=index,
        offered_rps=rate,
        served_rps=rate - refused / STEP_S,
        p95_ms=p95,
        ok=int(rate * (STEP_S - 1)) - refused - failed,
        failed=refused + failed,
        failures={"HTTP 503": refused} if refused else {},
        started=start,
        ended=start + STEP_S - 1.0,  # a second between steps while generators report
        host_cpu_share=0.5 if rate > 100 else 0.2,
    )


def synthetic_trial(after_failures: int = 0) -> TrialRecord:
    """Two base steps before the jump at T0, four peak steps (p95 over the objective in the first
    two, refusals in the first), four base steps after."""
    p95s = [10, 10, 900, 700, 300, 200, 15, 12, 11, 10]
    rates = [20, 20, 600, 600, 600, 600, 20, 20, 20, 20]
    steps = [
        step(
            i,
            T0 + (i - 2) * STEP_S,
            rates[i],
            p95s[i],
            refused=50 if i == 2 else 0,
            failed=after_failures if i == 7 else 0,
        )
        for i in range(10)
    ]
    return TrialRecord(trial=1, outcome="all steps done", steps=steps)


def samples() -> list[ReplicaSample]:
    """1 replica until +7 s (desired) / +12 s (running), 2 until the fall (T0 + 19 s) + 40 s
    (desired) / + 42 s (running), then 1 again."""
    out = []
    for second in range(-10, 80):
        at = T0 + second
        desired = 2 if 7 <= second < 59 else 1
        running = 2 if 12 <= second < 61 else 1
        out.append(ReplicaSample(at=at, desired=desired, running=running))
    return out


def test_the_timelines_times_are_the_known_answers() -> None:
    timeline = spike_timeline(
        synthetic_trial(),
        COUNTS,
        samples(),
        [],
        OBJECTIVE_MS,
        MAX_FAILURES,
        "on",
        {"AUTOSCALE_STABILISATION_S": "30"},
    )
    assert timeline.start_replicas == 1
    assert timeline.scale_up_s == 7.0
    assert timeline.scale_up_running_s == 12.0
    assert timeline.max_replicas == 2
    # The objective was met from the third peak step on, which started 10 s after the jump.
    assert timeline.back_within_s == 10.0
    # The last peak step ended at +19 s; both desired and running were 1 again at +61 s.
    assert timeline.peak_s == 19.0
    assert timeline.back_to_min_s == 42.0
    assert timeline.refused_in_peak == 50
    assert timeline.failures_down == 0
    assert timeline.host_cpu_peak == 0.5
    assert [p.phase for p in timeline.points] == ["base"] * 2 + ["peak"] * 4 + ["after"] * 4
    assert timeline.points[2].refused_rps == 12.5  # 50 refusals over a 4 s step
    # Four peak steps sending 4 s each (a second between them while the generators report)
    # over the 19 s from the jump to the fall: the peak offered 600 req/s for 16 s of the 19.
    assert timeline.peak_arrival_share(STEP_S - 1.0) == pytest.approx(16 / 19)
    assert timeline.peak_offered_mean(STEP_S - 1.0) == pytest.approx(600 * 16 / 19)
    # Up in 7 s <= 30, the objective met again in 10 s <= 60, back in 42 s <= 30 + 30, and
    # nothing failed.
    assert [met for _what, _measured, met in timeline.checks(0.9)] == [True, True, True, True]


def test_the_checks_against_issue_20s_bounds() -> None:
    timeline = spike_timeline(
        synthetic_trial(after_failures=3),
        COUNTS,
        samples(),
        [],
        OBJECTIVE_MS,
        MAX_FAILURES,
        "on",
        {"AUTOSCALE_STABILISATION_S": "10"},
    )
    met = [met for _what, _measured, met in timeline.checks(0.9)]
    # Up in 7 s, the objective met again in 10 s, back to 1 in 42 s > 10 + 30 s, and 3 failures
    # on the way down.
    assert met == [True, True, False, False]
    assert timeline.failures_down == 3


def test_without_a_scale_up_the_times_are_none_and_a_busy_host_is_named() -> None:
    flat = [ReplicaSample(at=T0 + s, desired=1, running=1) for s in range(-10, 80)]
    trial = synthetic_trial()
    for record in trial.steps[2:6]:
        record.p95_ms = 2000.0
        record.host_cpu_share = 0.95
    timeline = spike_timeline(trial, COUNTS, flat, [], OBJECTIVE_MS, MAX_FAILURES, "off", {})
    assert (timeline.scale_up_s, timeline.back_to_min_s, timeline.back_within_s) == (
        None,
        None,
        None,
    )
    measured = timeline.checks(0.9)[1][1]
    assert "the host was the limit (its CPU 95% busy in the peak)" in measured


def test_a_peak_that_never_misses_the_objective_is_back_at_once() -> None:
    trial = synthetic_trial()
    for record in trial.steps:
        record.p95_ms, record.failed, record.failures = 20.0, 0, {}
    assert (
        spike_timeline(
            trial, COUNTS, samples(), [], OBJECTIVE_MS, MAX_FAILURES, "on", {}
        ).back_within_s
        == 0.0
    )


def test_fast_refusals_under_a_good_p95_are_not_back_within_the_objective() -> None:
    trial = synthetic_trial()
    for record in trial.steps[2:6]:
        record.p95_ms = 100.0  # the 503s are fast: p95 alone looks fine
    trial.steps[5].failed, trial.steps[5].failures = 100, {"HTTP 503": 100}
    timeline = spike_timeline(trial, COUNTS, samples(), [], OBJECTIVE_MS, MAX_FAILURES, "on", {})
    assert timeline.points[5].failure_ratio > MAX_FAILURES
    assert timeline.back_within_s is None


def test_a_p95_that_misses_again_late_in_the_peak_is_not_back() -> None:
    trial = synthetic_trial()
    trial.steps[5].p95_ms = 800.0  # the last peak step
    assert (
        spike_timeline(
            trial, COUNTS, samples(), [], OBJECTIVE_MS, MAX_FAILURES, "on", {}
        ).back_within_s
        is None
    )


def test_decision_lines_are_read_from_the_log() -> None:
    record = {"at": T0 + 3, "current": 1, "desired": 3, "applied": 3, "code": "scale_up"}
    lines = [
        "2026-12-05 18:00:00,000 INFO starting: {not json",
        f"2026-12-05 18:00:03,000 INFO {json.dumps(record)}",
        '2026-12-05 18:00:04,000 WARNING {"service": "x", "error": "engine"}',
    ]
    decisions = parse_decisions(lines)
    assert decisions == [AutoscalerDecision.model_validate(record)]
    timeline = spike_timeline(
        synthetic_trial(), COUNTS, samples(), decisions, 500, MAX_FAILURES, "on", {}
    )
    assert [(d.s, d.code) for d in timeline.changes] == [(3.0, "scale_up")]


# --- the autoscaler around a cell, on the fake engine -----------------------------------------


def fake_engine(enabled: str = "true") -> FakeEngine:
    engine = FakeEngine(
        ServiceResources(1, 50_000_000, 256 * 1024**2, 0, 0), update_config={}, stack="t"
    )
    engine.env["t_autoscaler"] = {"AUTOSCALE_ENABLED": enabled, "AUTOSCALE_STABILISATION_S": "30"}
    return engine


def test_an_autoscaled_cell_starts_and_stops_the_autoscaler(tmp_path: Path) -> None:
    engine = fake_engine()
    matrix = spike_matrix()
    run_info: dict[str, object] = {}
    cells = AutoscalerCells(matrix, MatrixSettings(STACK_NAME="t"), engine, run_info)
    on, _off = matrix.cell_list()
    say: list[str] = []
    cells.record()
    assert run_info[ORIGINAL_KEY] == 1
    cells.prepare(on, say.append)
    assert engine.scaled["t_autoscaler"] == 0
    record = CellRecord(
        cell_id=on.cell_id, replicas=1, cpus=0.05, memory="256M", memory_bytes=1, total_cpus=0.05
    )
    engine.logs["t_autoscaler"] = [
        '2026 INFO {"at": 1, "current": 1, "desired": 1, "applied": 1, "code": "hold_tolerance"}'
    ]
    cells.start(on, record, tmp_path, say.append)
    assert engine.scaled["t_autoscaler"] == 1
    assert record.autoscale == "on"
    cells.finish(on, tmp_path, say.append)
    assert engine.scaled["t_autoscaler"] == 0
    assert "hold_tolerance" in (tmp_path / DECISIONS_FILE).read_text(encoding="utf-8")
    assert read_replicas(tmp_path / REPLICAS_FILE)[0].desired == 1
    cells.restore(say.append)
    assert engine.scaled["t_autoscaler"] == 1


def test_autoscale_on_without_an_enabled_autoscaler_is_a_clear_error(tmp_path: Path) -> None:
    engine = fake_engine(enabled="false")
    matrix = spike_matrix()
    cells = AutoscalerCells(matrix, MatrixSettings(STACK_NAME="t"), engine, {})
    on = matrix.cell_list()[0]
    record = CellRecord(
        cell_id=on.cell_id, replicas=1, cpus=0.05, memory="256M", memory_bytes=1, total_cpus=0.05
    )
    with pytest.raises(
        MatrixRunError, match="AUTOSCALE_ENABLED='false'.*--autoscale-from.*--no-stack-up"
    ):
        cells.start(on, record, tmp_path, lambda _line: None)


# --- the report ---------------------------------------------------------------------------------


def test_the_report_draws_a_timeline_per_spike_cell(tmp_path: Path) -> None:
    matrix = spike_matrix()
    for cell, autoscale in zip(matrix.cell_list(), ("on", "off"), strict=True):
        trial = synthetic_trial()
        replicas = (
            samples()
            if autoscale == "on"
            else [ReplicaSample(at=T0 + s, desired=1, running=1) for s in range(-10, 80)]
        )
        record = CellRecord(
            cell_id=cell.cell_id,
            replicas=1,
            cpus=0.05,
            memory="256M",
            memory_bytes=256 * 1024**2,
            total_cpus=0.05,
            status="measured",
            trials=[trial],
            autoscale=autoscale,
            spike=[
                spike_timeline(
                    trial,
                    COUNTS,
                    replicas,
                    [],
                    OBJECTIVE_MS,
                    MAX_FAILURES,
                    autoscale,
                    {"AUTOSCALE_STABILISATION_S": "30"} if autoscale == "on" else {},
                )
            ],
        )
        cell_dir = tmp_path / CELLS_DIR / cell.cell_id
        cell_dir.mkdir(parents=True)
        (cell_dir / CELL_FILE).write_text(record.model_dump_json(), encoding="utf-8")
    run_info = {"host_cores": 2, "started": "2026-12-05T19:00:00+00:00"}
    text = write_report(tmp_path, matrix, run_info).read_text(encoding="utf-8")
    assert "## Spike" in text
    assert "then **828 req/s (3x the knee)**" in text
    assert "| r1-c0.05-m256M-ason | on | 1 -> 2 | 7 (12) | 10 | 42 | 50 | 0 | 50 % |" in text
    assert "| r1-c0.05-m256M-asoff | off | 1 -> 1 | - (-) | 10 | - | 50 | 0 | 50 % |" in text
    assert "| 1 -> 2+ replicas within 30 s of the jump | 7 s (running: 12 s) | yes |" in text
    assert (
        "| p95 <= 500 ms and failures <= 1% again within 60 s | 10 s after the jump | yes |" in text
    )
    assert "Without the autoscaler the api stayed at 1 replica(s)" in text
    for cell in matrix.cell_list():
        assert (tmp_path / "plots" / f"spike-{cell.cell_id}.png").is_file()


def test_the_replicas_file_round_trips(tmp_path: Path) -> None:
    path = tmp_path / REPLICAS_FILE
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(("at", "desired", "running"))
        writer.writerow((T0, 2, 1))
    assert read_replicas(path) == [ReplicaSample(at=T0, desired=2, running=1)]
    assert read_replicas(tmp_path / "missing.csv") == []


# --- a whole run, on the fake engine and a recorded spike ----------------------------------------

SPIKE_FIXTURE = Path(__file__).parent / "fixtures" / "spike-swarm"


def test_a_spike_run_drives_the_autoscaler_around_each_cell_and_reports(
    tmp_path: Path, ready_server: ReadyServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(deploy_module, "READY_INTERVAL_S", 0.0)

    def replayed_locust(command: list[str], out: Path, *_args: object, **_kwargs: object) -> int:
        assert "--spike-steps" in command
        for source in SPIKE_FIXTURE.iterdir():
            shutil.copy(source, out / source.name)
        return 0

    monkeypatch.setattr(trial_module, "run_locust", replayed_locust)
    path = tmp_path / "matrix.yaml"
    spike_file = (PROJECT_ROOT / "matrix" / "matrix-spike.yaml").read_text(encoding="utf-8")
    path.write_text(spike_file.replace("warmup_seconds: 5", "warmup_seconds: 0"), "utf-8")
    matrix = load_matrix_file(path)
    settings = MatrixSettings(
        results_dir=tmp_path / "results", stack_name="t", nginx_port=ready_server.port
    )
    engine = fake_engine()
    engine.logs["t_autoscaler"] = [
        '2026 INFO {"at": 1, "current": 1, "desired": 2, "applied": 2, "code": "scale_up"}'
    ]
    scalings: list[int] = []
    scale = engine.scale_service

    def recorded_scale(service: str, replicas: int, timeout: float) -> None:
        if service == "t_autoscaler":
            scalings.append(replicas)
        scale(service, replicas, timeout)

    monkeypatch.setattr(engine, "scale_service", recorded_scale)
    run_dir, info = prepare_run_dir(matrix, path, settings, None, fresh=False)
    MatrixRunner(matrix, settings, run_dir, info, engine).run()
    on, off = (
        CellRecord.model_validate_json((run_dir / CELLS_DIR / c.cell_id / CELL_FILE).read_text())
        for c in matrix.cell_list()
    )
    # Off before each deployment, on for the autoscaled cell's load only, back as it was (1).
    assert scalings == [0, 1, 0, 0, 0, 1]
    assert (on.autoscale, off.autoscale) == ("on", "off")
    assert len(on.spike) == len(off.spike) == 1
    assert [p.phase for p in on.spike[0].points].count("peak") == 12
    assert on.spike[0].autoscaler["AUTOSCALE_STABILISATION_S"] == "30"
    assert (run_dir / CELLS_DIR / on.cell_id / DECISIONS_FILE).is_file()
    assert not (run_dir / CELLS_DIR / off.cell_id / DECISIONS_FILE).exists()
    assert "## Spike" in (run_dir / "report.md").read_text(encoding="utf-8")
