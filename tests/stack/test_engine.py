"""The parts of the Docker engine client that compute rather than ask: CPU and memory of a
stats answer as `docker stats` shows them, Nginx's stub_status, where a container's cgroup is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stack import engine as engine_module
from stack.engine import (
    DockerEngine,
    DockerError,
    TaskPlacement,
    cgroup_candidates,
    cpu_percent,
    memory_used,
    parse_stub_status,
    pending_task_lines,
)
from tests.support import FakeServiceApi

CONTAINER = "8e4211dd293929a67183037e3f9632608609b8c740355bdcb9408ab1bfec7028"


def _stats(total: int, previous_total: int, system: int, previous_system: int) -> dict:
    return {
        "cpu_stats": {
            "cpu_usage": {"total_usage": total},
            "system_cpu_usage": system,
            "online_cpus": 2,
        },
        "precpu_stats": {
            "cpu_usage": {"total_usage": previous_total},
            "system_cpu_usage": previous_system,
        },
    }


def test_cpu_percent_is_of_one_core_like_docker_stats() -> None:
    # Half of the whole 2-core system's time went to the container: one full core.
    assert cpu_percent(_stats(1_500, 500, 12_000, 10_000)) == 100.0
    assert cpu_percent(_stats(600, 500, 12_000, 10_000)) == 10.0
    assert cpu_percent({"cpu_stats": {}, "precpu_stats": {}}) == 0.0


@pytest.mark.parametrize(
    "detail", [{"total_inactive_file": 30, "inactive_file": 5}, {"inactive_file": 30}]
)
def test_memory_leaves_out_inactive_page_cache(detail: dict) -> None:
    assert memory_used({"memory_stats": {"usage": 100, "stats": detail}}) == 70
    assert memory_used({"memory_stats": {"usage": 20, "stats": detail}}) == 20


def test_parse_stub_status() -> None:
    text = (
        "Active connections: 3 \nserver accepts handled requests\n 10 10 250 \n"
        "Reading: 0 Writing: 1 Waiting: 2 \n"
    )
    assert parse_stub_status(text) == {
        "active": 3,
        "accepts": 10,
        "handled": 10,
        "requests": 250,
        "reading": 0,
        "writing": 1,
        "waiting": 2,
    }
    with pytest.raises(ValueError, match="not an nginx stub_status"):
        parse_stub_status("<html>502 Bad Gateway</html>")


def test_cgroup_candidates_follow_driver_and_version(tmp_path: Path) -> None:
    v2_systemd = cgroup_candidates(CONTAINER, "systemd", "2", tmp_path)
    assert v2_systemd[0] == tmp_path / f"system.slice/docker-{CONTAINER}.scope"
    assert cgroup_candidates(CONTAINER, "cgroupfs", "2", tmp_path)[0] == (
        tmp_path / "docker" / CONTAINER
    )
    # cgroup v1: the cpu controller's tree, mounted as cpu,cpuacct or cpu alone.
    v1 = cgroup_candidates(CONTAINER, "cgroupfs", "1", tmp_path)
    assert v1[0] == tmp_path / "cpu,cpuacct" / "docker" / CONTAINER
    assert tmp_path / "cpu" / "docker" / CONTAINER in v1


class _SwarmApi:
    """The low-level client's answers for a manager (node-a) whose service has one task here and
    one on a worker (node-b), like the local cluster's edge and workers."""

    def __init__(self, local_status: str = "Up 5 seconds (healthy)") -> None:
        self.local_status = local_status

    def info(self) -> dict:
        return {"Swarm": {"NodeID": "id-a"}}

    def tasks(self, filters: dict) -> list[dict]:
        return [
            {"ID": "t2", "NodeID": "id-b", "Status": {"State": "running"}},
            {"ID": "t1", "NodeID": "id-a", "Status": {"State": "running"}},
        ]

    def inspect_node(self, node_id: str) -> dict:
        return {"Description": {"Hostname": {"id-a": "node-a", "id-b": "node-b"}[node_id]}}

    def containers(self, all: bool, filters: dict) -> list[dict]:
        # Only this engine's own container: the worker's is not listed here.
        return [{"Id": "c1", "Status": self.local_status}]


class _Client:
    def __init__(self, api: object) -> None:
        self.api = api


def test_task_nodes_name_the_node_of_every_running_task() -> None:
    engine = DockerEngine(_Client(_SwarmApi()))  # type: ignore[arg-type]
    assert engine.task_nodes("s_api") == [
        TaskPlacement("t1", "node-a"),
        TaskPlacement("t2", "node-b"),
    ]


def test_convergence_over_several_nodes_asks_health_of_this_nodes_containers_only() -> None:
    assert DockerEngine(_Client(_SwarmApi())).tasks_converged(  # type: ignore[arg-type]
        "s_api", 2
    ) == (True, "2/2 tasks running and healthy")
    starting = _SwarmApi("Up 1 second (health: starting)")
    converged, state = DockerEngine(_Client(starting)).tasks_converged(  # type: ignore[arg-type]
        "s_api", 2
    )
    assert not converged and state == "0/1 containers on this node healthy"


def test_an_explicit_engine_address_wins_over_docker_host(monkeypatch: pytest.MonkeyPatch) -> None:
    # The --cluster path: the manager's address is given; the process environment is not changed.
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/from-the-environment.sock")
    with pytest.raises(DockerError, match="connecting to the Docker engine"):
        DockerEngine.from_env()
    clients: list[dict[str, object]] = []

    class Client:
        api = None

        def __init__(self, **kwargs: object) -> None:
            clients.append(kwargs)

    monkeypatch.setattr(engine_module.docker, "DockerClient", Client)
    DockerEngine.from_env("unix:///run/cluster/node1/docker.sock")
    assert [c["base_url"] for c in clients] == ["unix:///run/cluster/node1/docker.sock"]
    assert os.environ["DOCKER_HOST"] == "unix:///nonexistent/from-the-environment.sock"


def _task(slot: int, desired: str, state: str, updated: str, err: str = "") -> dict:
    status = {"State": state, **({"Err": err} if err else {})}
    return {"Slot": slot, "DesiredState": desired, "Status": status, "UpdatedAt": updated}


def test_a_gap_between_a_failed_task_and_its_replacement_names_the_failure() -> None:
    # The replacement is not created yet (restart delay): only the ended tasks explain the gap.
    tasks = [
        _task(1, "shutdown", "failed", "2026-12-05T10:00:01Z", "task: non-zero exit (1)"),
        _task(1, "shutdown", "failed", "2026-12-05T10:00:09Z", "task: non-zero exit (2)"),
    ]
    assert pending_task_lines("s_autoscaler", tasks, desired=1) == (
        "s_autoscaler.1 failed task: non-zero exit (2) (ended)",
        "s_autoscaler.1 failed task: non-zero exit (1) (ended)",
    )


def test_a_service_at_its_replicas_lists_no_ended_task() -> None:
    tasks = [
        _task(1, "running", "running", "2026-12-05T10:00:09Z"),
        _task(1, "shutdown", "failed", "2026-12-05T10:00:01Z", "old failure"),
    ]
    assert pending_task_lines("s_api", tasks, desired=1) == ()


def test_a_wanted_task_not_yet_running_is_listed_first() -> None:
    tasks = [
        _task(1, "running", "preparing", "2026-12-05T10:00:09Z"),
        _task(1, "shutdown", "rejected", "2026-12-05T10:00:05Z", "no suitable node"),
    ]
    assert pending_task_lines("s_api", tasks, desired=1) == (
        "s_api.1 preparing",
        "s_api.1 rejected no suitable node (ended)",
    )


def test_a_spec_change_sends_the_spec_as_read_with_only_that_change() -> None:
    # Engine defaults sent back would be a new task template: Swarm would replace every task.
    template = {"ContainerSpec": {"Image": "penguin-lab/api:latest"}}
    api = FakeServiceApi("s_api", {"Name": "s_api", "TaskTemplate": template, "UpdateConfig": {}})
    DockerEngine(_Client(api)).set_update_config("s_api", {"Parallelism": 2})  # type: ignore[arg-type]
    assert api.updates == [
        {
            "url": "/services/svc-id/update",
            "params": {"version": 7},
            "spec": {"Name": "s_api", "TaskTemplate": template, "UpdateConfig": {"Parallelism": 2}},
        }
    ]
