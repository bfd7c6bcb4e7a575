"""A target (any model API in an image) in place of the penguin service: its block in the matrix
file, and what the runner does with it on the (fake) engine: the api service runs the target's
image, environment and no container health check, Nginx and Prometheus follow its port, the
load generator gets its requests, and everything is put back afterwards."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from loadtest.data import pick_target_request, target_requests
from matrix.config import MatrixFile, MatrixFileError, MatrixSettings, load_matrix_file
from matrix.measure import cell_load
from matrix.measure import deploy as deploy_module
from matrix.measure.deploy import NO_HEALTHCHECK
from matrix.measure.prometheus import PrometheusUnavailable, target_metrics_note
from matrix.runner import MatrixRunner, prepare_run_dir
from tests.matrix.test_runner import new_engine, replay_locust
from tests.stack.fake_engine import FakeEngine
from tests.stack.ready_server import ReadyServer

BASE = """
name: byo
cells: {replicas: [1], cpus: [0.5], memory: [256M]}
profile: {kind: search, start_rate: 150, step_seconds: 4}
target_rps: 100
warmup_seconds: 0
"""
TARGET = """
target:
  image: my-model-api:1.0
  port: 8080
  health_path: /ready
  env: {MODEL_PATH: /models/m.pkl, WORKERS: 2}
  requests:
    - method: post
      path: /predict
      body_file: bodies/one.json
      headers: {Content-Type: application/json}
      expect_status: 201
      weight: 3
    - {method: GET, path: /info}
"""
BODY = {"island": "Biscoe", "bill_length_mm": 50.0}


def write(tmp_path: Path, text: str, body: str = json.dumps(BODY)) -> Path:
    (tmp_path / "bodies").mkdir(exist_ok=True)
    (tmp_path / "bodies" / "one.json").write_text(body)
    path = tmp_path / "matrix.yaml"
    path.write_text(text)
    return path


def test_the_target_block_as_the_issue_shows_it(tmp_path: Path) -> None:
    target = load_matrix_file(write(tmp_path, BASE + TARGET)).target
    assert target is not None
    assert (target.image, target.port, target.health_path) == ("my-model-api:1.0", 8080, "/ready")
    assert target.env == {"MODEL_PATH": "/models/m.pkl", "WORKERS": "2"}
    first, second = target.requests
    # The body file is read relative to the matrix file, and held as the body itself.
    assert (first.method, first.path, first.body, first.body_file) == (
        "POST",
        "/predict",
        BODY,
        None,
    )
    assert (first.expect_status, first.weight) == (201, 3.0)
    assert (second.method, second.body, second.expect_status, second.weight) == (
        "GET",
        None,
        None,
        1.0,
    )


def test_without_a_target_block_nothing_changes(tmp_path: Path) -> None:
    assert load_matrix_file(write(tmp_path, BASE)).target is None


def test_the_fingerprint_covers_the_body_files_content(tmp_path: Path) -> None:
    before = load_matrix_file(write(tmp_path, BASE + TARGET)).fingerprint()
    after = load_matrix_file(write(tmp_path, BASE + TARGET, '{"other": 1}')).fingerprint()
    assert before != after


@pytest.mark.parametrize(
    ("change", "fault"),
    [
        (("image: my-model-api:1.0", "image: ''"), "target.image"),
        (("port: 8080", "port: 70000"), "target.port"),
        (("  port: 8080\n", ""), "target.port: Field required"),
        (("health_path: /ready", "health_path: ready"), "target.health_path"),
        (("method: post", "method: FETCH"), "target.requests.0.method"),
        (("path: /predict", "path: predict"), "target.requests.0.path"),
        (("expect_status: 201", "expect_status: 42"), "target.requests.0.expect_status"),
        (("weight: 3", "weight: 0"), "target.requests.0.weight"),
        (("body_file: bodies/one.json", "body_file: bodies/none.json"), "cannot read it"),
        (("body_file: bodies/one.json", "body_file: bodies/one.json\n      body: {}"), "not both"),
        (("weight: 3", "weight: 3\n      timeout: 3"), "target.requests.0.timeout"),
        (("  requests:", "  requests: []\n  unused:"), "target.requests"),
    ],
)
def test_a_bad_target_block_names_the_field(
    tmp_path: Path, change: tuple[str, str], fault: str
) -> None:
    text = (BASE + TARGET).replace(*change)
    with pytest.raises(MatrixFileError) as error:
        load_matrix_file(write(tmp_path, text))
    assert fault in str(error.value)


def test_a_body_file_that_is_not_json_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MatrixFileError) as error:
        load_matrix_file(write(tmp_path, BASE + TARGET, "island=Biscoe"))
    assert "target.requests.0" in str(error.value)
    assert "bodies/one.json is not JSON" in str(error.value)


@pytest.mark.parametrize(
    ("generator", "fault"),
    [
        ("{model_mix: lr=1}", "load_generator.model_mix is for the penguin service"),
        ("{batch_weight: 1}", "load_generator.batch_weight"),
        ("{body: seed}", "load_generator.body"),
    ],
)
def test_penguin_only_load_settings_are_refused_with_a_target(
    tmp_path: Path, generator: str, fault: str
) -> None:
    text = BASE + TARGET + f"load_generator: {generator}\n"
    with pytest.raises(MatrixFileError) as error:
        load_matrix_file(write(tmp_path, text.replace("lr=1", "lr=1.0")))
    assert fault in str(error.value)


def test_a_command_line_target_fills_in_for_the_block(tmp_path: Path) -> None:
    block = {"image": "x:1", "port": 9000, "requests": [{"path": "/p", "body": {"a": 1}}]}
    matrix = load_matrix_file(write(tmp_path, BASE), target=block)
    assert matrix.target is not None and matrix.target.requests[0].body == {"a": 1}
    with pytest.raises(MatrixFileError, match="has a target block already"):
        load_matrix_file(write(tmp_path, BASE + TARGET), target=block)


def test_the_generator_reads_the_requests_the_matrix_writes(tmp_path: Path) -> None:
    target = load_matrix_file(write(tmp_path, BASE + TARGET)).target
    assert target is not None
    sent = target_requests(json.loads(json.dumps(target.requests_document())))
    assert [(r.method, r.path) for r in sent] == [("POST", "/predict"), ("GET", "/info")]
    assert json.loads(sent[0].body or b"") == BODY and sent[1].body is None
    assert sent[0].headers == {"Content-Type": "application/json"}
    # Success is the expected status, or any 2xx without one.
    assert sent[0].accepts(201) and not sent[0].accepts(200)
    assert sent[1].accepts(204) and not sent[1].accepts(302)


def test_requests_are_picked_by_weight() -> None:
    document = {"requests": [{"path": "/a", "weight": 3}, {"path": "/b", "weight": 1}]}
    requests = target_requests(document)
    rng = random.Random(7)
    picks = [pick_target_request(requests, rng).path for _ in range(4000)]
    assert 0.72 < picks.count("/a") / len(picks) < 0.78


def test_a_bad_requests_file_is_refused() -> None:
    with pytest.raises(ValueError, match="requests\\[1\\]"):
        target_requests({"requests": [{"path": "/a"}, {"path": "/b", "weight": "heavy"}]})
    with pytest.raises(ValueError, match="non-empty"):
        target_requests({"requests": []})


def run_target(
    path: Path, port: int, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> tuple[MatrixFile, Path]:
    """The runner over the matrix at `path` on the fake engine, a replayed Locust run per trial
    and the ready server as Nginx; the matrix and the run folder."""
    monkeypatch.setattr(deploy_module, "READY_INTERVAL_S", 0.0)
    matrix = load_matrix_file(path)
    settings = MatrixSettings(results_dir=path.parent / "results", stack_name="t", nginx_port=port)
    replay_locust(monkeypatch, engine)
    run_dir, info = prepare_run_dir(matrix, path, settings, None, fresh=False)
    MatrixRunner(matrix, settings, run_dir, info, engine).run()
    return matrix, run_dir


def test_the_runner_deploys_the_target_and_puts_everything_back(
    tmp_path: Path, ready_server: ReadyServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = new_engine()
    engine.env = {"t_nginx": {"NGINX_UPSTREAM_PORT": "8000"}, "t_prometheus": {}}
    original = engine.container_settings("t_api")
    path = write(tmp_path, BASE + TARGET)
    matrix, run_dir = run_target(path, ready_server.port, engine, monkeypatch)

    # The cell ran the target's image and environment only, without a container health check.
    deployed = engine.container_updates[0]
    assert deployed == {
        "Image": "my-model-api:1.0",
        "Env": ["MODEL_PATH=/models/m.pkl", "WORKERS=2"],
        "Healthcheck": NO_HEALTHCHECK,
    }
    # Nginx proxied and Prometheus scraped on the target's port, and both were put back.
    assert ("t_nginx", {"NGINX_UPSTREAM_PORT": "8080"}) in engine.env_updates
    assert ("t_prometheus", {"PROMETHEUS_API_PORT": "8080"}) in engine.env_updates
    assert engine.env == {"t_nginx": {"NGINX_UPSTREAM_PORT": "8000"}, "t_prometheus": {}}
    # The api service got its own image, environment and health check back.
    assert engine.container == original
    assert engine.container_updates[-1] == original
    # The load generator was given the target's requests.
    trial = run_dir / "cells" / matrix.cell_list()[0].cell_id / "trial-1"
    command = (trial / "locust_command.txt").read_text()
    # (written while the cell's folder was still .<cell>.partial)
    assert "--target-requests " in command and "/trial-1/target_requests.json" in command
    written = json.loads((trial / "target_requests.json").read_text())
    assert written == matrix.target.requests_document()  # type: ignore[union-attr]
    assert json.loads((run_dir / "run.json").read_text())["target"] == {
        "image": "my-model-api:1.0",
        "port": 8080,
    }


def test_a_target_that_never_answers_its_health_path_fails_the_cell_not_the_run(
    tmp_path: Path, ready_server: ReadyServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (BASE + TARGET).replace("health_path: /ready", "health_path: /healthz")
    text = text.replace("cells: {replicas: [1]", "cells: {replicas: [1, 2]")
    path = write(tmp_path, text + "converge_timeout_seconds: 1\n")
    engine = new_engine()
    matrix, run_dir = run_target(path, ready_server.port, engine, monkeypatch)
    for cell in matrix.cell_list():
        record = json.loads((run_dir / "cells" / cell.cell_id / "cell.json").read_text())
        assert record["status"] != "measured"
        assert "my-model-api:1.0 did not answer" in record["error"]
        assert "/healthz with 2xx within 1 s" in record["error"]
    assert engine.container == {
        "Image": "penguin-lab/api:latest",
        "Env": ["PENGUIN_DEFAULT_MODEL=lr"],
        "Healthcheck": {"Test": ["CMD", "/usr/local/bin/penguin-healthcheck"]},
    }


class _Scrapes:
    """Prometheus' answers about the api job: each replica's `up`, and whether the penguin
    service's request counter is among what it scraped."""

    def __init__(self, up: list[float], penguin: bool) -> None:
        self.up, self.penguin = up, penguin

    def query(self, expr: str, at: float) -> list[tuple[dict[str, str], float]]:
        if expr.startswith("up{"):
            return [({"instance": f"10.0.0.{i}:8080"}, v) for i, v in enumerate(self.up)]
        if expr.startswith("count("):
            return [({}, 3.0)] if self.penguin else []
        raise PrometheusUnavailable(f"not asked in this test: {expr}")


def test_why_a_targets_server_side_figures_are_absent() -> None:
    no_metrics = target_metrics_note(_Scrapes([0, 0], penguin=False).query, 0.0, 0.0, 8080)
    assert no_metrics is not None
    assert "the target serves no Prometheus metrics at :8080/metrics" in no_metrics
    assert "scraped 2 replica(s)" in no_metrics
    its_own = target_metrics_note(_Scrapes([1, 0], penguin=False).query, 0.0, 0.0, 8080)
    assert its_own is not None
    assert "scraped into the stack's Prometheus (job `api`, 1 of 2 replica(s) up" in its_own
    assert "not the penguin service's" in its_own
    # A target exposing our metrics (our own image, say) gets the figures read as ours.
    assert target_metrics_note(_Scrapes([1], penguin=True).query, 0.0, 0.0, 8080) is None

    def down(expr: str, at: float) -> list[tuple[dict[str, str], float]]:
        raise PrometheusUnavailable("http://127.0.0.1:9090: connection refused")

    refused = target_metrics_note(down, 0.0, 0.0, 8080)
    assert refused is not None and "could not be asked" in refused


def test_the_report_says_why_the_server_side_is_absent(
    tmp_path: Path, ready_server: ReadyServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cell_load, "stack_client", lambda _s: _Scrapes([0], penguin=False))
    path = write(tmp_path, BASE + TARGET)
    _, run_dir = run_target(path, ready_server.port, new_engine(), monkeypatch)
    report = (run_dir / "report.md").read_text()
    assert "the target `my-model-api:1.0` (port 8080) as the stack's api service" in report
    assert "Server-side figures absent: the target serves no Prometheus metrics at :8080" in report
    # Every client-side figure is still there: the knee of each trial.
    cell = json.loads((run_dir / "cells" / "r1-c0.5-m256M" / "cell.json").read_text())
    assert cell["trials"][0]["knee_index"] == 4
    assert all(s["server"] is None for s in cell["trials"][0]["steps"])
