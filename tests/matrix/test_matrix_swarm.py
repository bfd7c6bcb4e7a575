"""A two-cell matrix end to end on a real single-node Swarm via scripts/run_matrix.sh, on its own
stack name and ports; the stack is removed afterwards whatever happens."""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import pytest

from matrix.engine import DockerEngine
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
"""


def _swarm_active() -> bool:
    if not docker_engine_available():
        return False
    state = subprocess.run(["docker", "info", "--format", "{{.Swarm.LocalNodeState}}"],
                           capture_output=True, text=True, timeout=30, check=False)
    return state.stdout.strip() == "active"


def _service_spec(service: str) -> dict:
    out = subprocess.run(["docker", "service", "inspect", service, "--format", "{{json .Spec}}"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return json.loads(out)


@pytest.mark.swarm
@pytest.mark.timeout(900)
def test_two_cell_matrix_end_to_end(tmp_path: Path) -> None:
    require(_swarm_active(), "no Docker engine in an active Swarm (scripts/test.sh sets one up "
                             "as root)")
    require((PROJECT_ROOT / "scripts" / "stack_up.sh").is_file(), "scripts/stack_up.sh missing")
    stack = f"lmxtest{os.getpid()}"
    env = {**os.environ, "STACK_NAME": stack, "NGINX_PORT": str(free_port()),
           "LOCUST_WEB_PORT": str(free_port()), "PROMETHEUS_PORT": str(free_port()),
           "MATRIX_RESULTS_DIR": str(tmp_path / "results")}
    matrix_file = tmp_path / "tiny.yaml"
    matrix_file.write_text(TINY_MATRIX)
    try:
        result = subprocess.run(
            [str(PROJECT_ROOT / "scripts" / "run_matrix.sh"), "--matrix", str(matrix_file)],
            cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=840, check=False)
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-4000:]
        assert "cell 2/2" in output and "left]" in output  # progress lines with an estimate

        (run_dir,) = (tmp_path / "results").iterdir()
        rows = list(csv.DictReader((run_dir / "summary.csv").open()))
        assert [r["cell"] for r in rows] == ["r1-c0.5-m256M", "r2-c0.5-m256M"]
        for row in rows:
            assert row["status"] == "measured", row
            assert int(row["requests"]) > 0 and int(row["failures"]) == 0
            assert int(row["nginx_requests"]) >= int(row["requests"])
            assert row["restarts"] == "0" and row["oom_kills"] == "0"
            assert float(row["api_mem_peak_mb"]) > 0
        report = (run_dir / "report.md").read_text()
        assert "## Recommendation" in report and "Horizontal against vertical" in report
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
            assert all(s["throttled_share"] is not None for t in record["trials"]
                       for s in t["steps"])

        # The api service is back as the stack deployed it (stack_up's defaults).
        spec = _service_spec(f"{stack}_api")
        assert spec["Mode"]["Replicated"]["Replicas"] == 2
        assert spec["TaskTemplate"]["Resources"]["Limits"]["NanoCPUs"] == 10**9
        assert spec["UpdateConfig"]["Order"] == "start-first"

        # Each api container's host cgroup, with the CPU throttling counters of its quota.
        cgroups = DockerEngine.from_env().cgroup_dirs(f"{stack}_api")
        assert len(cgroups) == 2
        for directory in cgroups.values():
            assert "nr_throttled" in (directory / "cpu.stat").read_text()
    finally:
        subprocess.run([str(PROJECT_ROOT / "scripts" / "stack_down.sh")], cwd=PROJECT_ROOT,
                       env=env, capture_output=True, timeout=300, check=False)
    gone = subprocess.run(["docker", "stack", "ls", "--format", "{{.Name}}"],
                          capture_output=True, text=True, timeout=30, check=False).stdout
    assert stack not in gone.split()
