"""Server-side figures from answers recorded from the h9 stack's real Prometheus
(fixtures/prometheus/step-answers.json: two api replicas, a short Locust run, 3 s steps), and
the report's server-side section, with "n/a" where there was no Prometheus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from matrix.analyse.records import CellRecord, StepRecord, TrialRecord
from matrix.config import load_matrix_file
from matrix.measure.prometheus import (
    PrometheusUnavailable,
    RecordedQueries,
    ServerFigures,
    attach_server_figures,
    parse_vector,
    step_figures,
)
from matrix.report.report import CELL_FILE, write_report

FIXTURE = Path(__file__).parent / "fixtures" / "prometheus" / "step-answers.json"
MATRIX = """
name: server-side
cells: {replicas: [1, 2], cpus: [0.1], memory: [256M]}
profile: {kind: search, start_rate: 10, step_seconds: 3}
trials: 1
target_rps: 5
"""


@pytest.fixture(scope="module")
def recorded() -> dict:
    return json.loads(FIXTURE.read_text())


def _steps(recorded: dict) -> list[StepRecord]:
    return [
        StepRecord(
            index=i,
            offered_rps=6.0,
            served_rps=6.0,
            ok=18,
            p95_ms=4.0,
            passed=True,
            started=w["started"],
            ended=w["ended"],
        )
        for i, w in enumerate(recorded["steps"], 1)
    ]


def test_step_figures_from_recorded_answers(recorded: dict) -> None:
    query = RecordedQueries(recorded["answers"])
    window = recorded["steps"][0]
    figures = step_figures(query, window["started"], window["ended"])
    # Two replicas that served 9 requests each in the 3 s window: perfectly balanced.
    assert figures.requests == 18 and len(figures.per_replica) == 2
    assert set(figures.per_replica.values()) == {9.0} and figures.balance == 1.0
    assert figures.p95_ms is not None and 0.25 < figures.p95_ms < 5
    assert figures.p50_ms is not None and figures.p50_ms <= figures.p95_ms
    assert figures.errors_5xx == 0 and figures.errors_503 == 0 and figures.nginx_dropped == 0
    assert figures.nginx_requests is not None and figures.nginx_requests >= figures.requests


def test_attach_fills_every_step_and_stops_at_the_first_refusal(recorded: dict) -> None:
    trial = TrialRecord(trial=1, outcome="converged", steps=_steps(recorded), knee_index=2)
    assert attach_server_figures([trial], RecordedQueries(recorded["answers"])) == len(
        recorded["steps"]
    )
    assert all(step.server is not None for step in trial.steps)

    refused: list[str] = []

    def down(expr: str, at: float) -> list[tuple[dict[str, str], float]]:
        refused.append(expr)
        raise PrometheusUnavailable("connection refused")

    fresh = TrialRecord(trial=1, outcome="converged", steps=_steps(recorded))
    messages: list[str] = []
    assert attach_server_figures([fresh], down, log=messages.append) == 0
    assert len(refused) == 1 and all(step.server is None for step in fresh.steps)
    assert messages and "n/a" in messages[0]


def test_balance_and_shares() -> None:
    figures = ServerFigures(per_replica={"a:8000": 30.0, "b:8000": 10.0})
    assert figures.balance == 3.0
    assert figures.replica_shares() == {"a:8000": 0.75, "b:8000": 0.25}
    assert ServerFigures(per_replica={"a:8000": 5.0}).balance is None


def test_a_failed_query_is_unavailable_not_an_empty_answer() -> None:
    with pytest.raises(PrometheusUnavailable):
        parse_vector({"status": "error", "error": "parse error"})
    assert parse_vector({"status": "success", "data": {"resultType": "vector", "result": []}}) == []


def test_report_has_the_server_side_columns_and_na_without_prometheus(
    recorded: dict, tmp_path: Path
) -> None:
    (tmp_path / "matrix.yaml").write_text(MATRIX)
    matrix = load_matrix_file(tmp_path / "matrix.yaml")
    with_server = TrialRecord(trial=1, outcome="converged", steps=_steps(recorded), knee_index=2)
    attach_server_figures([with_server], RecordedQueries(recorded["answers"]))
    without = TrialRecord(trial=1, outcome="converged", steps=_steps(recorded), knee_index=2)
    cells = [
        CellRecord(
            cell_id="r2-c0.1-m256M",
            replicas=2,
            cpus=0.1,
            memory="256M",
            memory_bytes=256 * 1024**2,
            total_cpus=0.2,
            status="measured",
            trials=[with_server],
        ),
        CellRecord(
            cell_id="r1-c0.1-m256M",
            replicas=1,
            cpus=0.1,
            memory="256M",
            memory_bytes=256 * 1024**2,
            total_cpus=0.1,
            status="measured",
            trials=[without],
        ),
    ]
    for record in cells:
        (tmp_path / "cells" / record.cell_id).mkdir(parents=True)
        (tmp_path / "cells" / record.cell_id / CELL_FILE).write_text(record.model_dump_json())
    report = write_report(tmp_path, matrix, {"started": "now", "stack": "h9"}).read_text()
    assert "client p95 / server p95" in report
    assert "queueing in Nginx" in report
    knee = with_server.steps[1].server
    assert knee is not None and knee.p95_ms is not None
    ratio = 4.0 / knee.p95_ms
    assert f"| 1 | 2 (knee) | 6 | 4 | {knee.p95_ms:.3g} | {ratio:.3g} |" in report
    assert (
        "Per-replica balance at the knee (step 2): 10.0.1.14 50 %, 10.0.1.7 50 %; max/min 1"
        in report
    )
    section = report.split("### r1-c0.1-m256M: server side", 1)[1]
    assert section.lstrip().startswith("n/a: no Prometheus answered")
    assert "client p95 / server p95" in (tmp_path / "report.html").read_text()
