"""The runner against a fake Docker and a replayed Locust run: every cell measured, the service
restored afterwards (also on Ctrl-C), finished cells kept and the run resumed where it stopped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from matrix import runner as runner_module
from matrix import trial as trial_module
from matrix.config import MatrixSettings, load_matrix_file
from matrix.docker_ops import ServiceResources
from matrix.runner import MatrixRunner, find_unfinished_run, prepare_run_dir

FIXTURE = Path(__file__).parent / "fixtures" / "search-swarm"
MATRIX = """
name: test
cells: {replicas: [1, 2], cpus: [0.5], memory: [256M, 512M]}
profile: {kind: search, start_rate: 150, step_seconds: 4}
trials: 2
target_rps: 300
warmup_seconds: 0
"""
ORIGINAL = ServiceResources(replicas=2, limit_nano_cpus=10**9, limit_memory_bytes=512 * 1024**2,
                            reserve_nano_cpus=0, reserve_memory_bytes=0)


class FakeSwarm:
    def __init__(self, interrupt_on_run: int | None = None) -> None:
        self.updates: list[ServiceResources] = []
        self.update_configs: list[dict] = []
        self.runs = 0
        self.interrupt_on_run = interrupt_on_run

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        ops = runner_module.docker_ops
        monkeypatch.setattr(ops, "service_resources", lambda service: ORIGINAL)
        monkeypatch.setattr(ops, "update_service",
                            lambda service, wanted, timeout: self.updates.append(wanted))
        monkeypatch.setattr(ops, "update_config", lambda service: {"Order": "start-first"})
        monkeypatch.setattr(ops, "set_update_config",
                            lambda service, config: self.update_configs.append(config))
        monkeypatch.setattr(ops, "node_capacity", lambda: (2 * 10**9, 8 * 1024**3))
        monkeypatch.setattr(ops, "reserved_by_others", lambda exclude: (0, 0))
        monkeypatch.setattr(ops, "tasks_converged", lambda service, replicas: (True, "ok"))
        monkeypatch.setattr(ops, "task_ids", lambda service: {"t1"})
        monkeypatch.setattr(ops, "all_containers", lambda service: ["c1"])
        monkeypatch.setattr(ops, "oom_killed", lambda ids: [])
        monkeypatch.setattr(ops, "nginx_status", lambda service: {
            "active": 1, "accepts": 10, "handled": 10, "requests": 100 + 1000 * self.runs,
            "reading": 0, "writing": 1, "waiting": 0})
        monkeypatch.setattr(ops, "DockerStatsSampler", FakeSampler)
        monkeypatch.setattr(runner_module, "wait_ready", lambda url, timeout: None)
        monkeypatch.setattr(ops, "running_containers", lambda service: ["c1"])
        monkeypatch.setattr(trial_module, "run_locust", self.run_locust)

    def run_locust(self, command: list[str], out: Path, timeout: float, interval: float,
                   on_tick: object = None) -> int:
        self.runs += 1
        if self.runs == self.interrupt_on_run:
            raise KeyboardInterrupt
        for source in FIXTURE.iterdir():
            shutil.copy(source, out / source.name)
        return 0


class FakeSampler:
    errors: list[str] = []

    def __init__(self, service: str, output: Path, interval: float) -> None:
        self.output = output

    def start(self) -> None:
        self.output.write_text("timestamp,container,name,cpu_percent,mem_bytes,mem_limit_bytes\n")

    def stop(self) -> None:
        pass


@pytest.fixture
def setup(tmp_path: Path) -> tuple:
    path = tmp_path / "matrix.yaml"
    path.write_text(MATRIX)
    settings = MatrixSettings(results_dir=tmp_path / "results", stack_name="t", nginx_port=1)
    return load_matrix_file(path), path, settings


def test_measures_every_cell_restores_the_service_and_reports(
        setup: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    matrix, path, settings = setup
    swarm = FakeSwarm()
    swarm.install(monkeypatch)
    run_dir, info = prepare_run_dir(matrix, path, settings, None, fresh=False)
    MatrixRunner(matrix, settings, run_dir, info).run()
    cells = matrix.cell_list()
    assert [u.replicas for u in swarm.updates] == [c.replicas for c in cells] + [2]
    assert swarm.updates[0].limit_nano_cpus == 5 * 10**8
    assert swarm.updates[0].reserve_memory_bytes == 256 * 1024**2  # fits the fake node
    assert swarm.updates[-1] == ORIGINAL
    assert swarm.update_configs == [{"Order": "start-first"}]
    result = json.loads((run_dir / "cells" / cells[0].cell_id / "cell.json").read_text())
    assert result["status"] == "measured" and len(result["trials"]) == 2
    assert [t["knee_index"] for t in result["trials"]] == [4, 4]
    assert result["nginx_requests"] == 2000  # two trials of 1000 requests each
    assert swarm.runs == 2 * len(cells)
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"
    assert (run_dir / "report.md").is_file() and (run_dir / "summary.csv").is_file()


def test_interrupt_restores_keeps_finished_cells_and_resumes(
        setup: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    matrix, path, settings = setup
    swarm = FakeSwarm(interrupt_on_run=3)  # during the second cell's first trial
    swarm.install(monkeypatch)
    run_dir, info = prepare_run_dir(matrix, path, settings, None, fresh=False)
    with pytest.raises(KeyboardInterrupt):
        MatrixRunner(matrix, settings, run_dir, info).run()
    assert swarm.updates[-1] == ORIGINAL
    assert swarm.update_configs == [{"Order": "start-first"}]
    done = sorted(p.name for p in (run_dir / "cells").iterdir() if not p.name.startswith("."))
    assert done == [matrix.cell_list()[0].cell_id]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"

    # The same command again finds the unfinished run and measures only what is left.
    assert find_unfinished_run(settings.results_dir, matrix.fingerprint()) == run_dir
    resumed = FakeSwarm()
    resumed.install(monkeypatch)
    again, info = prepare_run_dir(matrix, path, settings, None, fresh=False)
    assert again == run_dir
    MatrixRunner(matrix, settings, again, info).run()
    assert resumed.runs == 2 * (len(matrix.cell_list()) - 1)
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
        setup: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    matrix, path, settings = setup
    swarm = FakeSwarm()
    swarm.install(monkeypatch)

    def converged(service: str, replicas: int) -> tuple[bool, str]:
        return replicas == 1, f"0/{replicas} tasks running"

    monkeypatch.setattr(runner_module.docker_ops, "tasks_converged", converged)
    monkeypatch.setattr(runner_module.time, "sleep", lambda seconds: None)
    matrix = matrix.model_copy(update={"converge_timeout_seconds": 0.01})
    run_dir, info = prepare_run_dir(matrix, path, settings, None, fresh=False)
    MatrixRunner(matrix, settings, run_dir, info).run()
    statuses = {}
    for c in matrix.cell_list():
        statuses[c.cell_id] = json.loads(
            (run_dir / "cells" / c.cell_id / "cell.json").read_text())["status"]
    assert statuses == {"r1-c0.5-m256M": "measured", "r1-c0.5-m512M": "measured",
                        "r2-c0.5-m256M": "failed", "r2-c0.5-m512M": "failed"}
    assert "not measured" in (run_dir / "report.md").read_text()
    assert swarm.updates[-1] == ORIGINAL
