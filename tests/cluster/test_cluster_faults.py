"""The stack on a three-node Swarm (scripts/cluster_up.sh), under constant load: placement, a
node drained, a node lost (every process SIGKILLed, its link cut) and the node coming back.

One cluster serves every scenario in file order; the fixture removes it at the end, also on
failure. The load client runs here, on the host, against Nginx's published address inside the
edge node's namespace. Each scenario prints its figures (stack/README.md quotes a real run).
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from cluster.settings import ClusterSettings
from cluster.topology import plan, read_env_file
from tests.nginx.load import LoadGenerator, check_resends, nginx_reloads, report
from tests.support import (
    PROJECT_ROOT,
    SEED_BODY,
    docker_engine_available,
    require,
    run_checked,
)

pytestmark = pytest.mark.cluster

TOPOLOGY = plan(ClusterSettings(nodes=3))
EDGE, WORKER_A, WORKER_B = (node.name for node in TOPOLOGY.nodes)
STACK = TOPOLOGY.settings.stack_name
API = f"{STACK}_api"
LOAD_THREADS = 4


@dataclass
class Cluster:
    docker_host: str
    nginx_url: str
    up_seconds: float

    def docker(self, *args: str, timeout: float = 120) -> str:
        return run_checked(["docker", "--host", self.docker_host, *args], timeout=timeout)


def _namespaces_possible() -> tuple[bool, str]:
    if os.geteuid() != 0:
        return False, "the cluster tests make network namespaces and engines: run as root"
    for command in ("ip", "nsenter", "unshare", "dockerd"):
        if shutil.which(command) is None:
            return False, f"`{command}` is missing (scripts/cluster_up.sh installs it)"
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        return False, f"cannot make a network namespace: {probe.stderr.decode().strip()}"
    if not docker_engine_available():
        return False, "no host Docker engine to build the images (scripts/test.sh starts one)"
    return True, ""


def _routed_through_our_link(address: str) -> bool:
    route = subprocess.run(["ip", "route", "get", address], capture_output=True, text=True)
    return route.returncode == 0 and f" dev {TOPOLOGY.host_interface} " in route.stdout


def _cluster_down() -> None:
    run_checked([str(PROJECT_ROOT / "scripts" / "cluster_down.sh")], timeout=180)


def _cluster_cli(*args: str) -> str:
    return run_checked([sys.executable, "-m", "cluster", *args], timeout=180)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    possible, reason = _namespaces_possible()
    require(possible, reason)
    env = {
        **os.environ,
        "API_REPLICAS": "2",
        "API_CPUS": "0.5",
        "API_MEMORY": "256M",
        "LOCUST_WORKERS": "1",
        # Failed tries and "no live upstreams" in Nginx's log, for _nginx_failures.
        "NGINX_PROXY_ERROR_LOG_LEVEL": "error",
    }
    _cluster_down()  # leftovers of an interrupted run
    try:
        started = time.monotonic()
        run_checked([str(PROJECT_ROOT / "scripts" / "cluster_up.sh"), "--nodes", "3"], 900, env)
        up_seconds = time.monotonic() - started
        values = read_env_file(TOPOLOGY.env_file.read_text())
        # The load must stay on this machine: the edge's address is reached through our veth.
        assert _routed_through_our_link(values["CLUSTER_EDGE_ADDRESS"])
        yield Cluster(values["DOCKER_HOST"], values["CLUSTER_NGINX_URL"], up_seconds)
    finally:
        _cluster_down()


@dataclass(frozen=True)
class Task:
    node: str
    address: str


def _tasks(cluster: Cluster, service: str) -> list[Task]:
    """Running tasks of a service: the node each is on and its overlay address."""
    ids = cluster.docker(
        "service", "ps", "--quiet", "--filter", "desired-state=running", service
    ).split()
    if not ids:
        return []
    fmt = (
        "{{.Status.State}} {{.NodeID}} "
        "{{range .NetworksAttachments}}{{range .Addresses}}{{.}} {{end}}{{end}}"
    )
    names = {
        line.split()[0]: line.split()[1]
        for line in cluster.docker("node", "ls", "--format", "{{.ID}} {{.Hostname}}").splitlines()
    }
    tasks = []
    for line in cluster.docker("inspect", "--type", "task", "--format", fmt, *ids).splitlines():
        state, node_id, *addresses = line.split()
        if state == "running" and addresses:
            tasks.append(Task(names.get(node_id, node_id), addresses[0].split("/")[0]))
    return tasks


def _nginx_container(cluster: Cluster) -> str:
    # Nginx runs on the edge node, which is the manager: its containers are the manager's.
    container = cluster.docker(
        "ps", "--quiet", "--filter", f"label=com.docker.swarm.service.name={STACK}_nginx"
    ).split()
    assert container, "no Nginx container on the edge node"
    return container[0]


def _nginx_upstreams(cluster: Cluster) -> set[str]:
    text = cluster.docker(
        "exec", _nginx_container(cluster), "cat", "/run/penguin-nginx/upstream-servers.conf"
    )
    return {
        line.split()[1].rsplit(":", 1)[0]
        for line in text.splitlines()
        if line.startswith("server ") and "down;" not in line
    }


def _nginx_logs(cluster: Cluster, since: str, *options: str) -> subprocess.CompletedProcess[str]:
    """The edge Nginx container's output since `since` (the engine's clock): the access log on
    stdout, the error log and the entrypoint's lines (its reloads) on stderr."""
    return subprocess.run(
        [
            "docker",
            "--host",
            cluster.docker_host,
            "logs",
            "--since",
            since,
            *options,
            _nginx_container(cluster),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _nginx_failures(cluster: Cluster, since: str) -> str:
    """Nginx's story since `since` (the engine's clock), to explain a failure that happens once in
    several CI runs: its error log (the fixture lowers the proxy errors' level so that refused or
    timed-out tries and "no live upstreams" appear), the entrypoint's upstream rewrites, and the
    access-log lines around them, which name the replicas each request reached."""
    logs = _nginx_logs(cluster, since, "--timestamps")
    # The access log is on stdout, everything else on stderr: merged by their timestamps.
    errors = set(logs.stderr.splitlines())
    lines = sorted(logs.stdout.splitlines() + list(errors))
    keep = [i for i, line in enumerate(lines) if line in errors or '"status":5' in line]
    shown = sorted({j for i in keep for j in range(max(0, i - 2), min(len(lines), i + 3))})
    return "\n".join(lines[j] for j in shown[:150])


def _wait(what: str, condition: Callable[[], bool], timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _updating(cluster: Cluster, *services: str) -> bool:
    """A rolling update of any of `services` is under way: its tasks may all look right between
    two replacements while the next one is still to come. One inspect, a line per service."""
    states = cluster.docker(
        "service",
        "inspect",
        "--format",
        "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}",
        *services,
    ).split()
    return any(state in ("updating", "rollback_started") for state in states)


def _balanced(cluster: Cluster, replicas: int, avoid: str = "") -> bool:
    """`replicas` api tasks run (none on `avoid`), no update of the api or Nginx is under way,
    and Nginx balances over exactly those tasks."""
    if _updating(cluster, API, f"{STACK}_nginx"):
        return False
    tasks = _tasks(cluster, API)
    if len(tasks) != replicas or any(task.node == avoid for task in tasks):
        return False
    return _nginx_upstreams(cluster) == {task.address for task in tasks}


def _figure(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        sys.stderr.write(f"{text}\n")


def _node_state(cluster: Cluster, name: str) -> str:
    return cluster.docker(
        "node", "inspect", "--format", "{{.Status.State}} {{.Spec.Availability}}", name
    ).strip()


def _unreachable(address: str) -> bool:
    """Whether the kernel refuses to route `address` at all (our guard route), rather than
    sending it somewhere, e.g. out of the default route."""
    route = subprocess.run(["ip", "route", "get", address], capture_output=True, text=True)
    # An `unreachable` route answers EHOSTUNREACH: "RTNETLINK answers: No route to host".
    return route.returncode != 0 and "no route to host" in route.stderr.lower()


def test_the_subnet_is_closed_but_for_our_link(cluster: Cluster) -> None:
    # An address of the subnet that no link of ours covers (the overlays' half): without the
    # guard route (cluster/route_guard.py) it would leave through the default route.
    subnet = ipaddress.IPv4Network(TOPOLOGY.settings.subnet)
    outside_our_link = str(subnet.network_address + subnet.num_addresses // 2 + 1)
    assert _unreachable(outside_our_link)
    assert _routed_through_our_link(TOPOLOGY.manager.address)


def test_placement_puts_the_entry_on_the_edge_and_the_api_on_the_workers(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    _figure(capsys, f"\n[cluster: up] 3 nodes, registry, images, stack: {cluster.up_seconds:.0f}s")
    assert {task.node for task in _tasks(cluster, f"{STACK}_nginx")} == {EDGE}
    assert {task.node for task in _tasks(cluster, f"{STACK}_locust-master")} == {EDGE}
    assert {task.node for task in _tasks(cluster, f"{STACK}_locust-worker")} <= {
        WORKER_A,
        WORKER_B,
    }
    # Two replicas, spread over the zones: one on each worker.
    assert sorted(task.node for task in _tasks(cluster, API)) == [WORKER_A, WORKER_B]
    response = httpx.post(f"{cluster.nginx_url}/predict", json=SEED_BODY, timeout=10)
    assert response.status_code == 200, response.text


# A search short enough for the suite: three steps of 3 s, 100 to 400 req/s.
CLUSTER_MATRIX = """
name: cluster-test
cells: {replicas: [2], cpus: [0.25], memory: [256M]}
profile: {kind: search, start_rate: 100, growth: 2, ceiling: 400, max_steps: 3,
          step_seconds: 3, settle_seconds: 1, request_timeout_seconds: 2}
trials: 1
target_rps: 100
warmup_seconds: 2
load_generator: {processes: 1}
converge_timeout_seconds: 120
"""


def test_the_matrix_runs_on_the_cluster_and_reports_where_and_per_node_cpu(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    matrix_file = tmp_path / "matrix-cluster-test.yaml"
    matrix_file.write_text(CLUSTER_MATRIX)
    started = time.monotonic()
    run_checked(
        [
            str(PROJECT_ROOT / "scripts" / "run_matrix.sh"),
            "--cluster",
            "--matrix",
            str(matrix_file),
        ],
        timeout=300,
        env={**os.environ, "MATRIX_RESULTS_DIR": str(tmp_path / "results")},
    )
    seconds = time.monotonic() - started
    (run_dir,) = (tmp_path / "results").iterdir()
    cell = json.loads((run_dir / "cells" / "r2-c0.25-m256M" / "cell.json").read_text())
    assert cell["status"] == "measured", cell.get("error")
    # One api task on each worker, none on the edge.
    assert cell["placement"] == {WORKER_A: 1, WORKER_B: 1}
    cores = cell["node_cpu_mean_cores"]
    assert set(cores) == {EDGE, WORKER_A, WORKER_B}
    # Each worker served requests with its replica; the edge ran Nginx in front of them.
    assert all(cores[node] > 0.005 for node in cores), cores
    report_text = (run_dir / "report.md").read_text()
    assert "## Where it ran" in report_text
    assert f"{WORKER_A}: 1, {WORKER_B}: 1" in report_text
    _figure(
        capsys,
        f"[cluster: matrix] {seconds:.0f}s; api tasks per node {cell['placement']}; "
        f"mean cores per node {cores}; served req/s per step "
        f"{[round(step['served_rps']) for step in cell['trials'][0]['steps']]}",
    )
    # The api service is put back as the fixture deployed it (0.5 CPU) for the next scenarios.
    limit = cluster.docker(
        "service", "inspect", "--format", "{{.Spec.TaskTemplate.Resources.Limits.NanoCPUs}}", API
    )
    assert limit.strip() == "500000000"


def test_draining_a_worker_moves_the_api_with_no_failed_request(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    _wait("Nginx over both replicas", lambda: _balanced(cluster, 2), timeout=60)
    since = cluster.docker("info", "--format", "{{.SystemTime}}").strip()
    load = LoadGenerator(
        f"{cluster.nginx_url}/predict", threads=LOAD_THREADS, pause=0.01, max_seconds=150
    )
    try:
        with load:
            time.sleep(2)
            cluster.docker("node", "update", "--availability", "drain", WORKER_A)
            seconds = _wait(
                f"the api to leave {WORKER_A}",
                lambda: _balanced(cluster, 2, avoid=WORKER_A),
                timeout=120,
            )
            time.sleep(2)
    finally:
        cluster.docker("node", "update", "--availability", "active", WORKER_A)
    report(capsys, f"cluster: drain {WORKER_A} under load", load.result)
    _figure(capsys, f"[cluster: drain] both replicas on {WORKER_B}, in Nginx, {seconds:.1f}s")
    assert {task.node for task in _tasks(cluster, API)} == {WORKER_B}
    assert load.result.sent > 0
    if load.result.failed:
        pytest.fail(f"{load.result.failures}\nNginx:\n{_nginx_failures(cluster, since)}")
    check_resends(load.result, nginx_reloads(_nginx_logs(cluster, since).stderr))


def test_losing_a_worker_fails_only_requests_in_flight(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    # Both replicas sit on WORKER_B after the drain: a third lands on the reactivated WORKER_A
    # (spread), so losing WORKER_A loses one of three replicas while the others keep serving.
    cluster.docker("service", "scale", "--detach=false", f"{API}=3", timeout=240)
    _wait("Nginx over three replicas", lambda: _balanced(cluster, 3), timeout=60)
    lost = {task.address for task in _tasks(cluster, API) if task.node == WORKER_A}
    assert len(lost) == 1, _tasks(cluster, API)
    since = cluster.docker("info", "--format", "{{.SystemTime}}").strip()
    load = LoadGenerator(
        f"{cluster.nginx_url}/predict", threads=LOAD_THREADS, pause=0.01, max_seconds=180
    )
    with load:
        time.sleep(3)
        killed_at = time.monotonic()
        _cluster_cli("kill-node", "2")
        _wait(
            "Nginx to stop sending to the lost replica",
            lambda: not lost & _nginx_upstreams(cluster),
            timeout=120,
        )
        out_of_nginx = time.monotonic() - killed_at
        _wait(
            "three replicas again, all in Nginx",
            lambda: _balanced(cluster, 3, avoid=WORKER_A),
            timeout=150,
        )
        full_capacity = time.monotonic() - killed_at
        time.sleep(3)
    report(capsys, f"cluster: {WORKER_A} lost (SIGKILL, link cut) under load", load.result)
    _figure(
        capsys,
        f"[cluster: node loss] {WORKER_A} marked {_node_state(cluster, WORKER_A)}; "
        f"lost replica out of Nginx after {out_of_nginx:.1f}s, "
        f"3 replicas serving again after {full_capacity:.1f}s; failures: {load.result.failures}",
    )
    assert load.result.sent > 0
    # Only requests Nginx had on the lost node may fail: those in flight, or sent over an open
    # keep-alive connection to it before Nginx drops its address. Each hangs its load thread for
    # the client timeout (15 s), longer than that takes, so at most one per thread.
    assert load.result.failed <= LOAD_THREADS, load.result.failures
    check_resends(load.result, nginx_reloads(_nginx_logs(cluster, since).stderr))


def test_the_lost_worker_comes_back_and_takes_work_again(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    _cluster_cli("restore-node", "2")
    _wait(
        f"{WORKER_A} Ready",
        lambda: _node_state(cluster, WORKER_A) == "ready active",
        timeout=120,
    )
    rejoined = time.monotonic() - started
    # The scheduler spreads a new replica onto the node with none: the one that came back.
    cluster.docker("service", "scale", "--detach=false", f"{API}=4", timeout=240)
    _wait("Nginx over four replicas", lambda: _balanced(cluster, 4), timeout=60)
    _figure(capsys, f"[cluster: rejoin] {WORKER_A} Ready again {rejoined:.1f}s after restart")
    assert WORKER_A in {task.node for task in _tasks(cluster, API)}
    response = httpx.post(f"{cluster.nginx_url}/predict", json=SEED_BODY, timeout=10)
    assert response.status_code == 200


def test_cluster_down_leaves_nothing_behind(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    _cluster_down()
    _figure(capsys, f"[cluster: down] {time.monotonic() - started:.1f}s")
    assert _cluster_cli("leftovers").strip() == "nothing"
    prefix = f"{TOPOLOGY.settings.prefix}-"
    namespaces = run_checked(["ip", "netns", "list"]).split()
    ours = [name for name in namespaces if name.startswith(prefix)]
    assert ours == []
    engines = run_checked(["ps", "-eo", "args"]).splitlines()
    assert not [line for line in engines if str(TOPOLOGY.settings.run_dir) in line]
    assert not Path(TOPOLOGY.settings.data_dir).exists()
    # No request is sent to the cluster's addresses now: without our link they are not local,
    # and the guard route went last (the subnet is the machine's own business again).
    assert not _routed_through_our_link(TOPOLOGY.manager.address)
    assert not _unreachable(TOPOLOGY.manager.address)
    # And the matrix refuses to target a cluster that is gone.
    refused = subprocess.run(
        [sys.executable, "-m", "matrix", "--cluster", "--quick"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=PROJECT_ROOT,
    )
    assert refused.returncode == 1 and "run scripts/cluster_up.sh first" in refused.stderr


def _leftovers() -> str:
    result = subprocess.run(
        [sys.executable, "-m", "cluster", "leftovers"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=PROJECT_ROOT,
    )
    return result.stdout.strip()


def test_up_killed_half_way_is_finished_by_up_and_removed_by_down() -> None:
    possible, reason = _namespaces_possible()
    require(possible, reason)
    up_args = [str(PROJECT_ROOT / "scripts" / "cluster_up.sh"), "--no-build", "--no-deploy"]
    crashed = subprocess.Popen(
        up_args,
        cwd=PROJECT_ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Half-way: the second engine is starting, the third and the Swarm do not exist yet.
        _wait("the second engine", lambda: TOPOLOGY.nodes[1].socket.exists(), timeout=180)
    finally:
        os.killpg(crashed.pid, signal.SIGKILL)
        crashed.wait(timeout=30)
    assert _leftovers() != "nothing"
    try:
        run_checked(up_args, timeout=600)
        cluster = Cluster(TOPOLOGY.manager.docker_host, "", 0)
        assert _node_state(cluster, WORKER_B) == "ready active"
    finally:
        _cluster_down()
    assert _leftovers() == "nothing"
