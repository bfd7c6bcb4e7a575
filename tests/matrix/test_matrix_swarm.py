"""A two-cell matrix end to end on a real single-node Swarm via scripts/run_matrix.sh, on its own
stack name and ports; the stack is removed afterwards whatever happens."""

from __future__ import annotations

import csv
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from loadtest.locustfile_check import check_locustfile
from matrix.config import load_matrix_file
from matrix.errors import MatrixRunError
from matrix.measure.user_locustfile import check_on_stack_locust
from stack.admission import stack_knob
from stack.engine import DockerEngine
from tests.support import PROJECT_ROOT, docker_engine_available, free_port, require

TINY_MATRIX = """
name: swarm-test
cells: {replicas: [1, 2], cpus: [0.5], memory: [256M]}
profile: {kind: staircase, start_rate: 10, step_rate: 10, step_seconds: 4, max_rate: 20}
objective: {p95_ms: 2000, max_failure_ratio: 0.01}
trials: 2
target_rps: 10
warmup_seconds: 2
load_generator: {processes: 2}
converge_timeout_seconds: 150
closed_loop: {enabled: true, users: 8, seconds: 3}
"""
# The workshop's shape, reduced: 400 users at 200/s thinking 0.2-0.6 s offer ~1000 req/s, far
# above what 0.1 CPU serves, so admission control has to refuse.
REDUCED_WORKSHOP = """
name: workshop-test
cells:
  - {replicas: 1, cpus: 0.1, memory: 128M, observation: a test observation, search_first: true}
admission: ["on", "off"]
profile: {kind: workshop, users: 400, spawn_rate: 200, hold_seconds: 20, think_time: [0.2, 0.6],
          request_timeout_seconds: 10}
reference_search: {kind: search, start_rate: 200, growth: 2, precision: 0.2, step_seconds: 2,
                   settle_seconds: 0.5, ceiling: 3000, request_timeout_seconds: 2}
objective: {p95_ms: 500, max_failure_ratio: 0.01}
target_rps: 100
warmup_seconds: 2
load_generator: {where: stack, workers: 2, processes: 2, model_mix: default, body: seed}
converge_timeout_seconds: 150
"""

# The soak profile for two minutes: one replica held at a rate it serves easily, one row per
# minute.
SHORT_SOAK = """
name: soak-test
cells:
  - {replicas: 1, cpus: 0.5, memory: 256M}
profile: {kind: soak, rate: 50, duration_seconds: 120, step_seconds: 60, settle_seconds: 1,
          request_timeout_seconds: 2}
objective: {p95_ms: 500, max_failure_ratio: 0.01}
target_rps: 50
warmup_seconds: 2
load_generator: {processes: 2}
converge_timeout_seconds: 150
"""

# A user's own locustfile on the stack's Locust: the course's file, its requests named apart so
# that Locust's statistics show whose users ran; 40 users offer about 20 req/s.
COURSE_WORKSHOP = """
name: locustfile-test
cells:
  - {replicas: 1, cpus: 0.5, memory: 256M}
profile: {kind: workshop, users: 40, spawn_rate: 20, hold_seconds: 15, request_timeout_seconds: 10}
objective: {p95_ms: 500, max_failure_ratio: 0.01}
target_rps: 10
warmup_seconds: 2
load_generator: {where: stack, workers: 2, locustfile: course.py}
converge_timeout_seconds: 150
"""
COURSE_REQUEST_NAME = "course-predict"


def _swarm_active() -> bool:
    if not docker_engine_available():
        return False
    state = subprocess.run(
        ["docker", "info", "--format", "{{.Swarm.LocalNodeState}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return state.stdout.strip() == "active"


def _service_env(service: str) -> dict[str, str]:
    env = _service_spec(service)["TaskTemplate"]["ContainerSpec"].get("Env") or []
    return dict(item.partition("=")[::2] for item in env)


def _service_spec(service: str) -> dict:
    out = subprocess.run(
        ["docker", "service", "inspect", service, "--format", "{{json .Spec}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    return json.loads(out)


@dataclass(frozen=True)
class Stack:
    name: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One stack for the module, on its own name and free ports, removed whatever happens."""
    require(
        _swarm_active(), "no Docker engine in an active Swarm (scripts/test.sh sets one up as root)"
    )
    require((PROJECT_ROOT / "scripts" / "stack_up.sh").is_file(), "scripts/stack_up.sh missing")
    name = f"lmxtest{os.getpid()}"
    env = {
        **os.environ,
        "STACK_NAME": name,
        "NGINX_PORT": str(free_port()),
        "LOCUST_WEB_PORT": str(free_port()),
        "PROMETHEUS_PORT": str(free_port()),
        "LOCUST_WORKERS": "2",
    }
    try:
        up = subprocess.run(
            [str(PROJECT_ROOT / "scripts" / "stack_up.sh")],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert up.returncode == 0, (up.stdout + up.stderr)[-4000:]
        yield Stack(name, env)
    finally:
        subprocess.run(
            [str(PROJECT_ROOT / "scripts" / "stack_down.sh")],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            timeout=300,
            check=False,
        )
    gone = subprocess.run(
        ["docker", "stack", "ls", "--format", "{{.Name}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout
    assert name not in gone.split()


def _run_matrix(stack: Stack, matrix_text: str, tmp_path: Path, timeout: float) -> tuple[Path, str]:
    matrix_file = tmp_path / "matrix.yaml"
    matrix_file.write_text(matrix_text)
    results = tmp_path / "results"
    result = subprocess.run(
        [
            str(PROJECT_ROOT / "scripts" / "run_matrix.sh"),
            "--matrix",
            str(matrix_file),
            "--no-stack-up",
        ],
        cwd=PROJECT_ROOT,
        env={**stack.env, "MATRIX_RESULTS_DIR": str(results)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = result.stdout + result.stderr
    print(output[-3000:])
    assert result.returncode == 0, output[-4000:]
    (run_dir,) = results.iterdir()
    return run_dir, output


@pytest.mark.swarm
@pytest.mark.timeout(900)
def test_two_cell_matrix_end_to_end(stack: Stack, tmp_path: Path) -> None:
    run_dir, output = _run_matrix(stack, TINY_MATRIX, tmp_path, 840)
    assert "cell 2/2" in output and "left]" in output  # progress lines with an estimate
    rows = list(csv.DictReader((run_dir / "summary.csv").open()))
    assert [r["cell"] for r in rows] == ["r1-c0.5-m256M", "r2-c0.5-m256M"]
    for row in rows:
        assert row["status"] == "measured", row
        assert int(row["requests"]) > 0 and int(row["failures"]) == 0
        assert int(row["nginx_requests"]) >= int(row["requests"])
        assert row["restarts"] == "0" and row["oom_kills"] == "0"
        assert float(row["api_mem_peak_mb"]) > 0
        # The closed loop ran against the cell after its trials and served something.
        assert float(row["closed_loop_rps"]) > 0 and float(row["closed_loop_p95_ms"]) > 0
    report = (run_dir / "report.md").read_text()
    assert "## Recommendation" in report and "Horizontal against vertical" in report
    # The replicas' own p95 per step, from the stack's Prometheus.
    assert "## Server side" in report and "no Prometheus answered" not in report
    assert (run_dir / "report.html").is_file()
    assert (run_dir / "plots" / "capacity-vs-cpu.png").stat().st_size > 0
    for row in rows:
        cell_dir = run_dir / "cells" / row["cell"]
        assert (cell_dir / "docker_stats.csv").read_text().count("\n") > 1
        for trial in ("trial-1", "trial-2"):
            assert (cell_dir / trial / "locust_stats_history.csv").is_file()
            # The api containers' cgroup counters were read on the host during the trial.
            assert (cell_dir / trial / "cgroup_cpu.csv").read_text().count("\n") > 2
        record = json.loads((cell_dir / "cell.json").read_text())
        assert [len(t["steps"]) for t in record["trials"]] == [2, 2]
        assert all(s["throttled_share"] is not None for t in record["trials"] for s in t["steps"])
        assert all(
            s["server"] and s["server"]["p95_ms"] > 0 for t in record["trials"] for s in t["steps"]
        )

    # The api service is back as the stack deployed it (stack_up's defaults).
    spec = _service_spec(f"{stack.name}_api")
    assert spec["Mode"]["Replicated"]["Replicas"] == 2
    assert spec["TaskTemplate"]["Resources"]["Limits"]["NanoCPUs"] == 10**9
    assert spec["UpdateConfig"]["Order"] == "start-first"

    # Each api container's host cgroup, with the CPU throttling counters of its quota.
    cgroups = DockerEngine.from_env().cgroup_dirs(f"{stack.name}_api")
    assert len(cgroups) == 2
    for directory in cgroups.values():
        assert "nr_throttled" in (directory / "cpu.stat").read_text()


@pytest.mark.swarm
@pytest.mark.timeout(900)
def test_reduced_workshop_on_the_stacks_own_locust(stack: Stack, tmp_path: Path) -> None:
    """Two cells (one configuration with admission control on and off) under a reduced workshop
    load from the stack's Locust master and 2 workers, collected and reported."""
    knob = stack_knob()
    before = _service_env(f"{stack.name}_nginx").get(knob.env)
    run_dir, _ = _run_matrix(stack, REDUCED_WORKSHOP, tmp_path, 840)
    objective = load_matrix_file(tmp_path / "matrix.yaml").objective
    cells = {}
    for cell_id in ("r1-c0.1-m128M-admon", "r1-c0.1-m128M-admoff"):
        cell_dir = run_dir / "cells" / cell_id
        cells[cell_id] = record = json.loads((cell_dir / "cell.json").read_text())
        assert record["status"] == "measured", record.get("error")
        (trial,) = record["trials"]
        assert trial["where"] == "stack" and trial["outcome"] == "held"
        (step,) = trial["steps"]
        assert step["users"] == 400 and step["ok"] > 0
        assert record["restarts"] == 0 and record["oom_kills"] == 0
        # What a host run leaves, collected from the master: CSVs, history, step log.
        trial_dir = cell_dir / "trial-1"
        stats = list(csv.DictReader((trial_dir / "locust_stats.csv").open()))
        aggregated = next(r for r in stats if r["Name"] == "Aggregated")
        assert int(aggregated["Request Count"]) >= step["ok"]
        assert (trial_dir / "locust_stats_history.csv").read_text().count("\n") > 10
        assert (trial_dir / "locust_failures.csv").is_file()
        assert len(trial["timeline"]) >= 20
        # No connection errors in either cell. Timeouts: with admission control, at most the
        # objective's failure share (not none: on 2026-12-06, a host about twice as slow as the
        # day before, a 0.1 CPU replica left 12 of 13 815 admitted requests waiting past 10 s).
        # Without it, unbounded queueing is what the cell is there to show: its requests may
        # time out (13-126 of ~10 000 that day, with the previous main as with this code).
        assert "connection error" not in step["failures"]
        if cell_id.endswith("admon"):
            allowed = objective.max_failure_ratio * (step["ok"] + step["failed"])
            assert step["failures"].get("timeout", 0) <= allowed
    on, off = cells["r1-c0.1-m128M-admon"], cells["r1-c0.1-m128M-admoff"]
    assert on["admission_limit"] == knob.default and off["admission_limit"] == 0
    # The reference search ran once and the sibling cell reused it.
    assert on["reference"]["steps"] and off["reference"] == on["reference"]
    # Overloaded (the users offer several times the knee): refusals with admission control
    # only, and fast.
    on_step, off_step = on["trials"][0]["steps"][0], off["trials"][0]["steps"][0]
    assert on_step["failures"].get("refused (503)", 0) > 0
    assert on_step["refused_p95_ms"] < 200
    assert "refused (503)" not in off_step["failures"]
    report = (run_dir / "report.md").read_text()
    assert "## The workshop, side by side" in report and "a test observation" in report
    assert "### What holds of the workshop's conclusions" in report
    assert (run_dir / "plots" / "workshop-timeline.png").stat().st_size > 0
    # Nginx is back to the limit it had before the matrix.
    assert _service_env(f"{stack.name}_nginx").get(knob.env) == before


@pytest.mark.swarm
@pytest.mark.timeout(600)
def test_two_minute_soak(stack: Stack, tmp_path: Path) -> None:
    """The soak profile on the stack: a row per minute with the replica's memory, a memory
    slope, no restart, and the report's soak section."""
    run_dir, _ = _run_matrix(stack, SHORT_SOAK, tmp_path, 540)
    record = json.loads((run_dir / "cells" / "r1-c0.5-m256M" / "cell.json").read_text())
    assert record["status"] == "measured", record.get("error")
    (soak,) = record["soak"]
    minutes = soak["minutes"]
    assert [m["index"] for m in minutes] == [0, 1]
    for minute in minutes:
        assert minute["offered_rps"] == 50
        assert minute["served_rps"] == pytest.approx(50, rel=0.05)
        assert minute["errors"] == 0 and minute["restarts"] == 0 and minute["passed"]
        assert minute["memory_mb"] > 0
    assert 55 <= minutes[1]["start_s"] <= 70  # a minute after the first began
    assert soak["memory_slope_mb_per_10min"] is not None
    assert record["restarts"] == 0 and record["oom_kills"] == 0
    report = (run_dir / "report.md").read_text()
    assert "## Soak" in report and "Memory slope: **" in report
    assert "restarts 0; errors 0" in report
    assert (run_dir / "plots" / "soak-r1-c0.5-m256M.png").stat().st_size > 0


@pytest.mark.swarm
@pytest.mark.timeout(600)
def test_a_users_locustfile_on_the_stacks_locust(stack: Stack, tmp_path: Path) -> None:
    """load_generator.locustfile: the course's locustfile, shipped to the stack's Locust master
    and workers, runs there instead of our users against the penguin service; the cell record
    counts its requests as Locust did, and the Locust services are put back afterwards."""
    course = (PROJECT_ROOT / "examples" / "tutorial-api" / "locustfile.py").read_text()
    assert '"/predict",' in course
    (tmp_path / "course.py").write_text(
        course.replace('"/predict",', f'"/predict",\n            name="{COURSE_REQUEST_NAME}",')
    )
    args_before = {
        name: _service_spec(f"{stack.name}_{name}")["TaskTemplate"]["ContainerSpec"]["Args"]
        for name in ("locust-master", "locust-worker")
    }
    run_dir, output = _run_matrix(stack, COURSE_WORKSHOP, tmp_path, 540)
    assert "shipping" in output and "user_locustfile_" in output
    cell_dir = run_dir / "cells" / "r1-c0.5-m256M"
    record = json.loads((cell_dir / "cell.json").read_text())
    assert record["status"] == "measured", record.get("error")
    (trial,) = record["trials"]
    assert trial["where"] == "stack" and trial["outcome"] == "held"
    (step,) = trial["steps"]
    assert step["users"] == 40 and step["ok"] > 0 and not step["failures"]
    # Only the user's users ran, and the record counts what Locust counted.
    stats = list(csv.DictReader((cell_dir / "trial-1" / "locust_stats.csv").open()))
    names = {row["Name"] for row in stats if row["Name"] != "Aggregated"}
    assert names == {COURSE_REQUEST_NAME}, names
    aggregated = next(row for row in stats if row["Name"] == "Aggregated")
    assert int(aggregated["Failure Count"]) == 0
    counted = int(aggregated["Request Count"])
    assert counted >= step["ok"] > 0
    # Every request Locust counted is in the per-second record, but those the stop cut off
    # on their way back (at most one per user).
    recorded = sum(s["ok"] + s["refused"] + s["other_failures"] for s in trial["timeline"])
    assert counted - 40 <= recorded <= counted
    assert "your own locustfile `course.py`" in (run_dir / "report.md").read_text()
    # The Locust services run as the stack file has them again, without the user's config.
    for name, args in args_before.items():
        spec = _service_spec(f"{stack.name}_{name}")["TaskTemplate"]["ContainerSpec"]
        assert spec["Args"] == args
        assert not [c for c in spec.get("Configs") or [] if "user_locustfile" in c["ConfigName"]]
    configs = subprocess.run(
        ["docker", "config", "ls", "--format", "{{.Name}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert f"{stack.name}_user_locustfile_" not in configs


TARGET_IMAGE = "penguin-lab/test-target:latest"
TARGET_IMAGE_DIR = Path(__file__).parent / "target_image"
# One cell of the tiny non-penguin service (target_image/app.py): its own port, health path,
# body file, method and expected status; a short search to a ceiling the small CPU limit is
# well below.
TARGET_MATRIX = """
name: target-test
cells: {replicas: [1], cpus: [0.25], memory: [128M]}
profile: {kind: search, start_rate: 25, growth: 2, precision: 0.25, ceiling: 800,
          step_seconds: 3, settle_seconds: 0.5, request_timeout_seconds: 2}
objective: {p95_ms: 500, max_failure_ratio: 0.01}
target_rps: 20
warmup_seconds: 1
load_generator: {processes: 1}
converge_timeout_seconds: 120
target:
  image: penguin-lab/test-target:latest
  port: 8080
  health_path: /healthz
  env: {APP_MODE: test}
  requests:
    - {method: POST, path: /score, body_file: one.json, expect_status: 201,
       headers: {Content-Type: application/json}}
"""


@pytest.mark.swarm
@pytest.mark.timeout(300)
def test_a_locustfile_importing_what_only_the_host_has_is_refused_in_the_locust_image(
    stack: Stack, tmp_path: Path
) -> None:
    """The host's virtualenv has scikit-learn, the stack's Locust image has not: the host's
    check passes such a file, the check in the image the stack's Locust runs refuses it, with
    the workers' own error, before anything changes. The course's file passes both."""
    course = (PROJECT_ROOT / "examples" / "tutorial-api" / "locustfile.py").read_text()
    host_only = tmp_path / "course_sklearn.py"
    host_only.write_text("import sklearn  # only the host's virtualenv has it\n" + course)
    assert check_locustfile(host_only) is None
    engine = DockerEngine.from_env()
    with pytest.raises(MatrixRunError) as caught:
        check_on_stack_locust(host_only, engine, stack.name, None, lambda _line: None)
    message = str(caught.value)
    assert message.startswith(f"load_generator.locustfile: {host_only} cannot run")
    # Checked in the image the stack's locust-master service runs, as its spec names it.
    assert "(checked in penguin-lab/locust:latest)" in message
    assert "No module named 'sklearn'" in message
    (tmp_path / "course.py").write_text(course)
    check_on_stack_locust(tmp_path / "course.py", engine, stack.name, None, lambda _line: None)


def _build_target_image() -> None:
    """The tiny target from the base image build_images.sh built the stack's images from."""
    base = subprocess.run(
        [
            "bash",
            "-c",
            "source scripts/lib/common.sh && source scripts/lib/base_image.sh && "
            'resolve_base "$PYTHON_BASE_DEFAULT"',
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout.strip()
    subprocess.run(
        ["docker", "build", "-q", "--build-arg", f"BASE_IMAGE={base}", "-t", TARGET_IMAGE, "."],
        cwd=TARGET_IMAGE_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )


@pytest.mark.swarm
@pytest.mark.timeout(600)
def test_a_non_penguin_image_as_the_target(stack: Stack, tmp_path: Path) -> None:
    """A one-cell matrix of another service on the stack: refused on a wrong port before
    anything changes, then measured with knees and without server metrics, and the stack put
    back as it was."""
    _build_target_image()
    (tmp_path / "one.json").write_text(json.dumps({"features": [1.0, 2.5, 3.0]}))
    api, nginx, prometheus = (f"{stack.name}_{s}" for s in ("api", "nginx", "prometheus"))
    api_before = _service_spec(api)["TaskTemplate"]["ContainerSpec"]

    # The command line's block with a port the container does not listen on: refused by the
    # smoke container, naming the field and the port it does listen on.
    requests = tmp_path / "requests.yaml"
    requests.write_text("health_path: /healthz\nrequests: [{path: /score, body_file: one.json}]\n")
    (tmp_path / "plain.yaml").write_text(TARGET_MATRIX.split("target:")[0])
    refused = subprocess.run(
        [
            str(PROJECT_ROOT / "scripts" / "run_matrix.sh"),
            "--matrix",
            str(tmp_path / "plain.yaml"),
            "--no-stack-up",
            "--target-image",
            TARGET_IMAGE,
            "--target-port",
            "9000",
            "--request-file",
            str(requests),
        ],
        cwd=PROJECT_ROOT,
        env={**stack.env, "MATRIX_RESULTS_DIR": str(tmp_path / "refused")},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "error: target.port: the container of" in refused.stderr
    assert "does not listen on 9000; it listens on 8080" in refused.stderr
    assert not (tmp_path / "refused").exists()  # refused before a run folder was made

    run_dir, output = _run_matrix(stack, TARGET_MATRIX, tmp_path, 540)
    assert "answers /healthz and every request as expected" in output
    record = json.loads((run_dir / "cells" / "r1-c0.25-m128M" / "cell.json").read_text())
    assert record["status"] == "measured", record.get("error")
    (trial,) = record["trials"]
    assert trial["knee_index"] is not None, trial["outcome"]
    knee = trial["steps"][trial["knee_index"]]
    assert knee["served_rps"] > 0 and knee["ok"] > 0 and knee["failures"] == {}
    # Client-side figures and the container's cgroup figures, without any server metrics.
    assert knee["api_cpu_cores"] is not None and knee["throttled_share"] is not None
    assert all(step["server"] is None for step in trial["steps"])
    assert "serves no Prometheus metrics at :8080/metrics" in record["server_metrics"]
    assert record["restarts"] == 0
    report = (run_dir / "report.md").read_text()
    assert "the target `penguin-lab/test-target:latest` (port 8080)" in report
    assert "Server-side figures absent: the target serves no Prometheus metrics" in report
    assert "## Recommendation" in report
    print(f"target knee: {knee['served_rps']:.0f} req/s served at 1 x 0.25 CPU")

    # Everything is back: the api's image, environment and health check, Nginx's upstream port,
    # and Prometheus' scrape port (left to its image's default, as the stack file does).
    api_after = _service_spec(api)["TaskTemplate"]["ContainerSpec"]
    for field in ("Image", "Env", "Healthcheck"):
        assert api_after.get(field) == api_before.get(field), field
    assert _service_env(nginx)["NGINX_UPSTREAM_PORT"] == "8000"
    assert "PROMETHEUS_API_PORT" not in _service_env(prometheus)
