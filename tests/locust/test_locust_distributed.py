"""Distributed Locust (a master and two workers over ZeroMQ) against the real service on
loopback: every request answered correctly, every model of the mix hit, CSVs that parse."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import PROJECT_ROOT, free_port, require, start_gunicorn, wait_for_http

LOCUSTFILE = PROJECT_ROOT / "locust" / "locustfile.py"
LOCUST = str(Path(sys.executable).with_name("locust"))
RUN_SECONDS = 12


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def service_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require(
        (PROJECT_ROOT / "models" / "manifest.json").is_file(),
        "models/ are not trained (python -m training)",
    )
    port = free_port()
    process = start_gunicorn(port, tmp_path_factory.mktemp("gunicorn") / "gunicorn.log")
    try:
        wait_for_http(f"http://127.0.0.1:{port}/ready", timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(process)


def _read_stats(prefix: Path) -> dict[str, tuple[int, int]]:
    with open(f"{prefix}_stats.csv", newline="") as handle:
        return {
            row["Name"]: (int(row["Request Count"]), int(row["Failure Count"]))
            for row in csv.DictReader(handle)
        }


def _history_rows(prefix: Path) -> list[dict[str, str]]:
    with open(f"{prefix}_stats_history.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_master_and_two_workers_over_zeromq(service_url: str, tmp_path: Path) -> None:
    master_port = free_port()
    prefix = tmp_path / "run"
    common = ["-f", str(LOCUSTFILE), "--model-mix", "lr=0.5,rf=0.3,svm=0.2", "--user-rate", "4"]
    master = subprocess.Popen(
        [
            LOCUST,
            *common,
            "--master",
            "--master-bind-host",
            "127.0.0.1",
            "--master-bind-port",
            str(master_port),
            "--expect-workers",
            "2",
            "--expect-workers-max-wait",
            "60",
            "--headless",
            "--host",
            service_url,
            "-u",
            "12",
            "-r",
            "12",
            "-t",
            f"{RUN_SECONDS}s",
            "--csv",
            str(prefix),
            "--csv-full-history",
            "--batch-weight",
            "1",
            "--batch-size",
            "5",
        ],
        cwd=tmp_path,
        stdout=(tmp_path / "master.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    workers = [
        subprocess.Popen(
            [
                LOCUST,
                *common,
                "--worker",
                "--master-host",
                "127.0.0.1",
                "--master-port",
                str(master_port),
                "--batch-weight",
                "1",
                "--batch-size",
                "5",
            ],
            cwd=tmp_path,
            stdout=(tmp_path / f"worker{i}.log").open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for i in range(2)
    ]
    try:
        master.wait(timeout=RUN_SECONDS + 90)
    finally:
        for process in [master, *workers]:
            _stop(process)
    log = (tmp_path / "master.log").read_text()
    assert "2 workers connected" in log or "workers connected" in log, log[-2000:]

    stats = _read_stats(prefix)
    requests, failures = stats["Aggregated"]
    assert requests > 0
    assert failures == 0, (tmp_path / "run_failures.csv").read_text()
    for model in ("lr", "rf", "svm"):
        assert stats.get(f"/predict?model={model}", (0, 0))[0] > 0, f"{model} never requested"
    assert sum(count for name, (count, _) in stats.items() if name.startswith("/predict/batch")) > 0
    # lr has the largest share of the mix and should get the most single predictions.
    assert stats["/predict?model=lr"][0] > stats["/predict?model=svm"][0]
    history = _history_rows(prefix)
    assert history and {"Timestamp", "User Count", "95%"} <= set(history[0])
    assert max(int(row["User Count"]) for row in history) == 12


def _step_events(step_log: Path) -> list[dict]:
    return [json.loads(line) for line in step_log.read_text().splitlines()]


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_staircase_with_processes_logs_every_generators_steps(
    service_url: str, tmp_path: Path
) -> None:
    prefix = tmp_path / "stairs"
    step_log = tmp_path / "steps.jsonl"
    port = str(free_port())
    result = subprocess.run(
        [
            LOCUST,
            "-f",
            str(LOCUSTFILE),
            "--headless",
            "--host",
            service_url,
            "--processes",
            "2",
            "--master-bind-host",
            "127.0.0.1",
            "--master-bind-port",
            port,
            "--master-host",
            "127.0.0.1",
            "--master-port",
            port,
            "--load-profile",
            "staircase",
            "--start-rate",
            "20",
            "--step-rate",
            "40",
            "--step-seconds",
            "4",
            "--max-rate",
            "60",
            "--step-log",
            str(step_log),
            "--csv",
            str(prefix),
            "--csv-full-history",
            "-t",
            "60s",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert step_log.is_file(), result.stderr[-3000:]
    events = _step_events(step_log)
    assert events[0]["event"] == "start" and events[0]["generators"] == 2
    steps = [e for e in events if e["event"] == "step"]
    assert [s["rate"] for s in steps] == [20, 60], result.stderr[-2000:]
    for step in steps:
        # Both generators reported; constant arrivals over the 3 s after the settle second.
        assert step["generators"] == 2 and step["passed"], step["reasons"]
        assert step["scheduled"] == pytest.approx(step["rate"] * 3, abs=2)
        assert step["ok"] == step["scheduled"] and step["failed"] == 0
    assert events[-1] == {
        **events[-1],
        "event": "end",
        "outcome": "all steps done",
        "knee_rate": 60,
    }
    # Locust's own statistics saw the same requests (the settle seconds included).
    requests, failures = _read_stats(prefix)["Aggregated"]
    assert failures == 0 and requests >= sum(s["scheduled"] for s in steps)


def _run_unreachable_objective(service_url: str, tmp_path: Path, profile: list[str]) -> Path:
    """One Locust process running `profile` (--load-profile and its options) in 3 s steps
    against an objective no request meets (p95 0.05 ms); returns its step log."""
    step_log = tmp_path / "steps.jsonl"
    subprocess.run(
        [
            LOCUST,
            "-f",
            str(LOCUSTFILE),
            "--headless",
            "--host",
            service_url,
            "--load-profile",
            *profile,
            "--step-seconds",
            "3",
            "--p95-ms",
            "0.05",
            "--step-log",
            str(step_log),
            "-t",
            "60s",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    return step_log


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_staircase_stops_after_a_step_that_breaks_the_objective(
    service_url: str, tmp_path: Path
) -> None:
    # No real request is answered within a twentieth of a millisecond: the first step breaks.
    step_log = _run_unreachable_objective(
        service_url,
        tmp_path,
        ["staircase", "--start-rate", "10", "--step-rate", "10", "--max-rate", "50"],
    )
    events = _step_events(step_log)
    steps = [e for e in events if e["event"] == "step"]
    assert [s["index"] for s in steps] == [0]
    assert not steps[0]["passed"] and "p95" in steps[0]["reasons"][0]
    assert events[-1]["event"] == "end" and events[-1]["knee_rate"] is None


@pytest.mark.integration
@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("profile", "rates"),
    [
        (["soak", "--start-rate", "10", "--soak-steps", "3"], [10, 10, 10]),
        (
            ["spike", "--start-rate", "5", "--spike-rate", "20", "--spike-steps", "1,2,1"],
            [5, 20, 20, 5],
        ),
    ],
    ids=["soak", "spike"],
)
def test_soak_and_spike_run_every_step_even_when_they_fail(
    service_url: str, tmp_path: Path, profile: list[str], rates: list[float]
) -> None:
    # As above every step breaks the objective; a soak (one rate) or a spike (base, peak, base:
    # loadtest/spike.py) runs its whole schedule anyway, without a pause.
    events = _step_events(_run_unreachable_objective(service_url, tmp_path, profile))
    steps = [e for e in events if e["event"] == "step"]
    assert [(s["index"], s["rate"], s["passed"]) for s in steps] == [
        (i, rate, False) for i, rate in enumerate(rates)
    ]
    assert all(s["ok"] == s["scheduled"] > 0 for s in steps)
    assert events[0]["profile"] == profile[0]
    assert events[-1]["event"] == "end" and events[-1]["outcome"] == "all steps done"


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_invalid_options_fail_clearly(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            LOCUST,
            "-f",
            str(LOCUSTFILE),
            "--headless",
            "--host",
            "http://127.0.0.1:9",
            "--model-mix",
            "lr=abc",
            "-t",
            "2s",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert result.returncode != 0
    assert "model mix" in result.stderr
