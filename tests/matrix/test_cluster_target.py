"""`--cluster`: the cluster's env file read into a target, the route checked before any request
(and watched during a cell), where each api task ran and each node's CPU recorded per cell and
reported. With the fake engine and cgroup folders under tmp_path: no cluster, no root."""

from __future__ import annotations

import csv
import json
import os
import re
import threading
import time
from functools import partial
from pathlib import Path

import pytest

from cluster.settings import ClusterSettings
from matrix import __main__ as main_module
from matrix.config import MatrixSettings
from matrix.measure import cell_load as cell_load_module
from matrix.measure.cell_load import NODE_CPU_FILE, per_node_cores
from matrix.measure.cgroups import FIELDS, CgroupSampler
from matrix.measure.cluster_target import (
    ClusterTarget,
    ClusterTargetError,
    RouteGuard,
    cpu_cgroup_dir,
    load_cluster_target,
)
from matrix.runner import MatrixRunError, MatrixRunner, prepare_run_dir
from tests.matrix.test_runner import ORIGINAL, new_engine, replay_locust
from tests.matrix.test_runner import setup as setup  # noqa: F401 (a fixture)
from tests.stack.fake_engine import FakeEngine

WORKERS = ["pclab-node2", "pclab-node3"]
# Cores each node's cgroup counter advances by while the fake load runs.
NODE_CORES = {"pclab-node2": 0.5, "pclab-node3": 0.25}


def cluster_settings(tmp_path: Path) -> ClusterSettings:
    return ClusterSettings(nodes=3, run_dir=tmp_path / "run", data_dir=tmp_path / "data")


class FakeCluster(ClusterTarget):
    """A target whose nodes' cgroups are folders under `root` and whose route may be gone."""

    root: Path
    routed: bool

    def check_route(self) -> None:
        if not self.routed:
            raise ClusterTargetError("the cluster's link is gone")

    def node_cpu_dirs(self, root: Path = Path()) -> dict[str, Path]:
        return super().node_cpu_dirs(self.root)


def fake_cluster(root: Path, routed: bool = True) -> FakeCluster:
    target = FakeCluster(
        docker_host="unix:///nowhere",
        stack_name="t",
        nginx_url="http://10.213.0.11:8000",
        edge_address="10.213.0.11",
        interface="pclab0",
        node_cgroups={f"pclab-node{i}": f"pclab-node{i}" for i in (1, 2, 3)},
    )
    object.__setattr__(target, "root", root)
    object.__setattr__(target, "routed", routed)
    return target


@pytest.fixture
def ticking_cgroups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """cgroup v2 folders of the workers whose usage grows at NODE_CORES. The node sampler's clock
    writes each node's counters for the very time it stamps the sample with, so the per-node
    cores come out exact whatever the machine's load (no thread that may fall behind)."""
    root = tmp_path / "cgroup"
    for node in NODE_CORES:
        (root / node).mkdir(parents=True)
    start = time.time()

    def clock() -> float:
        now = time.time()
        for node, cores in NODE_CORES.items():
            usage = int((now - start) * cores * 1e6)
            (root / node / "cpu.stat.tmp").write_text(f"usage_usec {usage}\nnr_periods 0\n")
            (root / node / "cpu.stat.tmp").replace(root / node / "cpu.stat")
        return now

    monkeypatch.setattr(cell_load_module, "CgroupSampler", partial(CgroupSampler, clock=clock))
    return root


def test_the_env_file_names_engine_stack_url_and_each_nodes_cgroup(tmp_path: Path) -> None:
    settings = cluster_settings(tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "env").write_text(
        "DOCKER_HOST='unix:///run/x/node1/docker.sock'\nSTACK_NAME='lab'\nCLUSTER_NODES='2'\n"
        "CLUSTER_EDGE_ADDRESS='10.213.0.11'\nCLUSTER_NGINX_URL='http://10.213.0.11:8000'\n"
    )
    target = load_cluster_target(settings)
    assert target.docker_host == "unix:///run/x/node1/docker.sock"
    assert target.stack_name == "lab" and target.nginx_url == "http://10.213.0.11:8000"
    assert target.interface == "pclab0"
    assert target.node_cgroups == {"pclab-node1": "pclab-node1", "pclab-node2": "pclab-node2"}


def test_without_a_cluster_it_says_to_run_cluster_up(tmp_path: Path) -> None:
    with pytest.raises(ClusterTargetError, match="run scripts/cluster_up.sh first"):
        load_cluster_target(cluster_settings(tmp_path))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "env").write_text("STACK_NAME='lab'\n")
    with pytest.raises(ClusterTargetError, match="lacks DOCKER_HOST.*cluster_up.sh first"):
        load_cluster_target(cluster_settings(tmp_path))


def test_cli_cluster_refuses_without_a_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CLUSTER_RUN_DIR", str(tmp_path / "run"))
    assert main_module.main(["--cluster", "--quick"]) == 1
    assert "run scripts/cluster_up.sh first" in capsys.readouterr().err


def test_cli_cluster_refuses_when_the_edge_is_not_routed_through_our_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # An interface that does not exist: `ip route get` can never name it, so nothing is sent.
    monkeypatch.setenv("CLUSTER_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("CLUSTER_PREFIX", "nolink")
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "env").write_text(
        "DOCKER_HOST='unix:///nowhere'\nSTACK_NAME='lab'\nCLUSTER_NODES='3'\n"
        "CLUSTER_EDGE_ADDRESS='10.213.0.11'\nCLUSTER_NGINX_URL='http://10.213.0.11:8000'\n"
    )
    assert main_module.main(["--cluster", "--quick"]) == 1
    assert "not routed through nolink0" in capsys.readouterr().err
    assert "DOCKER_HOST" not in os.environ


def test_base_url_is_the_local_port_unless_set() -> None:
    assert MatrixSettings(nginx_port=8123).base_url == "http://127.0.0.1:8123"
    assert (
        MatrixSettings(base_url_override="http://10.213.0.11:8000/").base_url
        == "http://10.213.0.11:8000"
    )


def test_cpu_cgroup_dir_finds_v1_cpu_controller_or_v2(tmp_path: Path) -> None:
    (tmp_path / "cpu" / "pclab-node2").mkdir(parents=True)
    (tmp_path / "cpu" / "pclab-node2" / "cpu.stat").write_text("nr_periods 0\n")
    (tmp_path / "pclab-node3").mkdir()
    (tmp_path / "pclab-node3" / "cpu.stat").write_text("usage_usec 5\n")
    assert cpu_cgroup_dir("pclab-node2", tmp_path) == tmp_path / "cpu" / "pclab-node2"
    assert cpu_cgroup_dir("pclab-node3", tmp_path) == tmp_path / "pclab-node3"
    assert cpu_cgroup_dir("pclab-node4", tmp_path) is None


def test_route_guard_interrupts_once_the_link_is_gone() -> None:
    calls: list[int] = []
    interrupted = threading.Event()

    def check() -> None:
        calls.append(1)
        if len(calls) >= 2:
            raise ClusterTargetError("gone")

    guard = RouteGuard(check, interval=0.01, interrupt=interrupted.set)
    guard.start()
    assert interrupted.wait(5)
    guard.stop()
    assert guard.failure == "gone" and len(calls) == 2


def test_per_node_cores_over_the_window(tmp_path: Path) -> None:
    path = tmp_path / NODE_CPU_FILE
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(FIELDS)
        for second in range(5):
            writer.writerow((100 + second, "pclab-node2", second * 600_000, 0, 0, 0))
            writer.writerow((100 + second, "pclab-node3", second * 100_000, 0, 0, 0))
    # Only the samples inside [101, 103] count: 2 s of counters.
    assert per_node_cores(path, 101, 103) == {
        "pclab-node2": 0.6,
        "pclab-node3": 0.1,
    }


@pytest.fixture
def cluster_run(setup: tuple, monkeypatch: pytest.MonkeyPatch) -> tuple:
    monkeypatch.setattr(cell_load_module, "NODE_CPU_SAMPLE_INTERVAL_S", 0.02)
    matrix, path, settings = setup
    engine = new_engine()
    engine.nodes = list(WORKERS)
    return matrix, path, settings, engine


class SlowReplay:
    """The replayed Locust run, lasting long enough for the node sampler to see the counters."""

    def __init__(self, inner: object) -> None:
        self.inner = inner

    def __call__(self, *args: object, **kwargs: object) -> int:
        time.sleep(0.3)
        result: int = self.inner(*args, **kwargs)  # type: ignore[operator]
        return result


def test_cluster_run_records_where_each_task_ran_and_each_nodes_cpu(
    cluster_run: tuple, ticking_cgroups: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    matrix, path, settings, engine = cluster_run
    locust = replay_locust(monkeypatch, engine)
    monkeypatch.setattr("matrix.measure.trial.run_locust", SlowReplay(locust))
    run_dir, info = prepare_run_dir(matrix, path, settings, None, fresh=False)
    MatrixRunner(matrix, settings, run_dir, info, engine, fake_cluster(ticking_cgroups)).run()
    one, two = (
        json.loads((run_dir / "cells" / c.cell_id / "cell.json").read_text())
        for c in matrix.cell_list()[::2]
    )
    assert one["placement"] == {"pclab-node2": 1}
    assert two["placement"] == {"pclab-node2": 1, "pclab-node3": 1}
    cores = two["node_cpu_mean_cores"]
    assert set(cores) == set(NODE_CORES)  # node 1 has no cgroup folder here
    for node, expected in NODE_CORES.items():
        # Only the stamps' rounding to the millisecond stands between them.
        assert cores[node] == pytest.approx(expected, rel=0.02)
    report = (run_dir / "report.md").read_text()
    assert "## Where it ran" in report
    assert re.search(
        r"\| r2-c0.5-m256M \| pclab-node2: 1, pclab-node3: 1 \| "
        r"pclab-node2: 0\.\d+, pclab-node3: 0\.\d+ \|",
        report,
    )
    assert "Locust) ran on the host" in report
    assert "engines in network namespaces on one host" in report
    assert json.loads((run_dir / "run.json").read_text())["cluster"]["nodes"] == [
        "pclab-node1",
        *WORKERS,
    ]


def test_a_single_host_run_reports_no_placement(
    setup: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    matrix, path, settings = setup
    engine: FakeEngine = new_engine()
    replay_locust(monkeypatch, engine)
    run_dir, info = prepare_run_dir(matrix, path, settings, None, fresh=False)
    MatrixRunner(matrix, settings, run_dir, info, engine).run()
    cell = json.loads((run_dir / "cells" / matrix.cell_list()[0].cell_id / "cell.json").read_text())
    # Recorded, but one node says nothing a reader needs: the report leaves it out.
    assert cell["placement"] == {"fake-node": 1} and cell["node_cpu_mean_cores"] == {}
    report = (run_dir / "report.md").read_text()
    assert "Where it ran" not in report and "Every replica here runs on one host" in report


def test_a_cluster_without_its_link_gets_no_request_and_no_update(
    cluster_run: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    matrix, path, settings, engine = cluster_run
    locust = replay_locust(monkeypatch, engine)
    run_dir, info = prepare_run_dir(matrix, path, settings, None, fresh=False)
    runner = MatrixRunner(
        matrix, settings, run_dir, info, engine, fake_cluster(tmp_path, routed=False)
    )
    with pytest.raises(MatrixRunError, match="link is gone"):
        runner.run()
    assert locust.runs == 0
    # No cell was deployed: the one update puts back what was there.
    assert engine.updates == [ORIGINAL]


def test_a_run_started_on_the_host_is_not_resumed_on_the_cluster(
    cluster_run: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    matrix, path, settings, engine = cluster_run
    locust = replay_locust(monkeypatch, engine, interrupt_on_run=3)
    run_dir, info = prepare_run_dir(matrix, path, settings, None, fresh=False)
    with pytest.raises(KeyboardInterrupt):
        MatrixRunner(matrix, settings, run_dir, info, engine).run()
    updates = len(engine.updates)
    run_dir, info = prepare_run_dir(matrix, path, settings, None, fresh=False)
    with pytest.raises(MatrixRunError, match="started on the host's Swarm.*--fresh"):
        MatrixRunner(matrix, settings, run_dir, info, engine, fake_cluster(tmp_path)).run()
    assert len(engine.updates) == updates and locust.runs == 3
