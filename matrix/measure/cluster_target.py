"""The local multi-node Swarm of scripts/cluster_up.sh as a target for the matrix (`--cluster`).

What the cluster is (its env file, its nodes' cgroups, the host link its addresses are reached
through) is the cluster package's plan; this module only reads it. Every request the matrix
sends to a cluster address must leave through that link: without it the same address would be
routed off the machine, so the route is checked before each cell and watched while it runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cluster.settings import ClusterSettings
from cluster.topology import Topology, plan, read_env_file
from stack.engine import CGROUP_ROOT

# How long Locust could go on sending after the link is gone, before the guard stops it.
ROUTE_CHECK_INTERVAL_S = 0.25
ROUTE_CHECK_TIMEOUT_S = 5.0


class ClusterTargetError(RuntimeError):
    """No usable cluster: the message says what is missing and what to run."""


def routed_through(address: str, interface: str) -> bool:
    """Whether the kernel sends packets for `address` out of `interface` (`ip route get`)."""
    try:
        route = subprocess.run(
            ["ip", "route", "get", address],
            capture_output=True,
            text=True,
            timeout=ROUTE_CHECK_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return route.returncode == 0 and f" dev {interface} " in f"{route.stdout} "


def cpu_cgroup_dir(name: str, root: Path = CGROUP_ROOT) -> Path | None:
    """The folder of cgroup `name` whose cpu.stat matrix.measure.cgroups.read_counters reads: the
    cpu controller's in cgroup v1 (CPU time then comes from cpuacct), the one tree in v2."""
    for path in (root / "cpu,cpuacct" / name, root / "cpu" / name, root / name):
        if (path / "cpu.stat").is_file():
            return path
    return None


@dataclass(frozen=True)
class ClusterTarget:
    """The running cluster, from its env file: where the engine, the stack and Nginx are."""

    docker_host: str
    stack_name: str
    nginx_url: str
    edge_address: str
    interface: str  # the host end of the cluster's link
    node_cgroups: dict[str, str]  # node hostname -> its cgroup (engine, shims, containers)
    # The cluster's registry as image names spell it (`10.213.0.2:5000/`): what nodes pull.
    image_prefix: str = ""

    def check_route(self) -> None:
        """Refuses (ClusterTargetError) unless the edge address goes out of the cluster's link."""
        if not routed_through(self.edge_address, self.interface):
            raise ClusterTargetError(
                f"{self.edge_address} is not routed through {self.interface}: the cluster's "
                "link is gone, so no request is sent to it (run scripts/cluster_up.sh first)"
            )

    def node_cpu_dirs(self, root: Path = CGROUP_ROOT) -> dict[str, Path]:
        """Each node's CPU cgroup folder, by node; nodes without one are left out."""
        found = {node: cpu_cgroup_dir(cgroup, root) for node, cgroup in self.node_cgroups.items()}
        return {node: path for node, path in found.items() if path is not None}


def load_cluster_target(settings: ClusterSettings | None = None) -> ClusterTarget:
    """The cluster scripts/cluster_up.sh made; ClusterTargetError when there is none."""
    base = settings or ClusterSettings()
    env_file = plan(base).env_file
    try:
        values = read_env_file(env_file.read_text(encoding="utf-8"))
    except OSError:
        raise ClusterTargetError(
            f"no cluster is up ({env_file} is missing): run scripts/cluster_up.sh first"
        ) from None
    missing = [
        key
        for key in (
            "DOCKER_HOST",
            "STACK_NAME",
            "CLUSTER_NGINX_URL",
            "CLUSTER_EDGE_ADDRESS",
            "CLUSTER_NODES",
        )
        if not values.get(key)
    ]
    if missing:
        raise ClusterTargetError(
            f"{env_file} lacks {', '.join(missing)}: run scripts/cluster_up.sh first"
        )
    # The cluster as it was made: its size and stack from the env file, the rest as configured.
    made = {"nodes": int(values["CLUSTER_NODES"]), "stack_name": values["STACK_NAME"]}
    topology: Topology = plan(ClusterSettings(**{**base.model_dump(), **made}))
    return ClusterTarget(
        docker_host=values["DOCKER_HOST"],
        stack_name=values["STACK_NAME"],
        nginx_url=values["CLUSTER_NGINX_URL"],
        edge_address=values["CLUSTER_EDGE_ADDRESS"],
        interface=topology.host_interface,
        node_cgroups={node.name: node.cgroup for node in topology.nodes},
        image_prefix=values.get("IMAGE_PREFIX") or topology.image_prefix,
    )


class RouteGuard(threading.Thread):
    """While a cell runs, checks the route four times a second; when the link is gone,
    interrupts the main thread (the runner's Ctrl-C path stops Locust, restores the service)."""

    def __init__(
        self,
        check: Callable[[], None],
        interval: float = ROUTE_CHECK_INTERVAL_S,
        interrupt: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(name="route-guard", daemon=True)
        self.check = check
        self.interval = interval
        self.interrupt = interrupt or (lambda: os.kill(os.getpid(), signal.SIGINT))
        self.failure: str | None = None
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            try:
                self.check()
            except ClusterTargetError as error:
                self.failure = str(error)
                self.interrupt()
                return
