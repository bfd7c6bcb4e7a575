"""Puts a cell's configuration on the api service: its replicas, limits and (when they fit)
reservations, and for a target its image, environment and health check; then waits until it
converged and answers /ready (a target: its health path) through Nginx."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from matrix.analyse.records import CellRecord
from matrix.config import Cell, MatrixFile, MatrixSettings, SearchProfile, TargetSpec, memory_bytes
from matrix.errors import MatrixRunError
from stack.engine import NANO, Engine, ServiceResources
from stack.waits import (
    CONVERGE_INTERVAL_S,
    READY_INTERVAL_S,
    WaitTimeout,
    api_ready,
    service_converged,
    wait_until,
)

READY_TIMEOUT_S = 90.0
# No container health check for a target: Docker's probe runs inside the container (a user's
# image has no penguin-healthcheck, maybe no curl or Python), inside the CPU quota a search
# saturates on purpose, and a replica it marks unhealthy under load is replaced, which the
# report would count as a restart. Readiness is proven from outside instead: the health path
# answering 2xx through Nginx, with Nginx balancing over every replica (stack/waits.py api_ready).
NO_HEALTHCHECK = {"Test": ["NONE"]}
READY_PATH = "/ready"
# Our api searched for its knee runs without its container health check too, for a measured
# reason: Docker's probe is an exec, about 14 ms of the replica's own CPU each time (issue 22),
# and at 0.05 CPU the quota is 5 ms per 100 ms period, so every probe (every 20 s) stalled the
# replica for about 300 ms, inside steps that are meant to measure the service. And a new task
# no longer waits up to 20 s for its first probe before it takes traffic. Readiness is /ready
# through Nginx, as for a target; the run puts the stack's health check back when it restores
# the service. Cells whose replicas the autoscaler adds keep it: a new task must not take
# traffic before it is ready.
SEARCH_CONTAINER = {"Healthcheck": NO_HEALTHCHECK}


def target_container(target: TargetSpec) -> dict[str, Any]:
    """The api service's ContainerSpec fields for a target: its image and environment only (the
    penguin service's variables mean nothing to it), and no container health check."""
    return {
        "Image": target.image,
        "Env": [f"{key}={value}" for key, value in sorted(target.env.items())],
        "Healthcheck": NO_HEALTHCHECK,
    }


class CellDeployer:
    def __init__(self, matrix: MatrixFile, settings: MatrixSettings, engine: Engine) -> None:
        self.matrix = matrix
        self.settings = settings
        self.engine = engine
        self.api_service = f"{settings.stack_name}_api"

    def wanted(self, cell: Cell) -> tuple[ServiceResources, bool]:
        """The cell's service resources, and whether they reserve what they limit."""
        limit_cpu = round(cell.cpus * NANO)
        limit_mem = memory_bytes(cell.memory)
        reserve = self.matrix.reserve == "always"
        if self.matrix.reserve == "auto":
            node_cpu, node_mem = self.engine.node_capacity()
            other_cpu, other_mem = self.engine.reserved_by_others(self.api_service)
            # One task more than the replicas: a start-first update runs it next to the others.
            tasks = cell.replicas + 1
            reserve = (
                tasks * limit_cpu <= node_cpu - other_cpu
                and tasks * limit_mem <= node_mem - other_mem
            )
        wanted = ServiceResources(
            cell.replicas,
            limit_cpu,
            limit_mem,
            limit_cpu if reserve else 0,
            limit_mem if reserve else 0,
        )
        return wanted, reserve

    def container(self, cell: Cell) -> dict[str, Any] | None:
        """The ContainerSpec fields the cell replaces: a target's, or for our api under a
        search without the autoscaler, no health check (SEARCH_CONTAINER); None: as deployed."""
        if self.matrix.target is not None:
            return target_container(self.matrix.target)
        if isinstance(self.matrix.profile, SearchProfile) and cell.autoscale != "on":
            return SEARCH_CONTAINER
        return None

    def deploy(self, cell: Cell, record: CellRecord, say: Callable[[str], None]) -> None:
        """Updates the service, waits for convergence and /ready; records reservation and
        placement. MatrixRunError when it does not get there in time."""
        wanted, reserved = self.wanted(cell)
        record.reserved = reserved
        say(
            f"updating {self.api_service}: {cell.replicas} "
            f"replica(s), {cell.cpus:g} CPU, {cell.memory}"
            + ("" if reserved else " (no reservation: does not fit the node)")
        )
        began = time.monotonic()
        timeout = self.matrix.converge_timeout_seconds
        target = self.matrix.target
        container = self.container(cell)
        self.engine.update_service(self.api_service, wanted, timeout, container)
        try:
            state = wait_until(
                service_converged(self.engine, self.api_service, cell.replicas),
                timeout,
                CONVERGE_INTERVAL_S,
            )
        except WaitTimeout as error:
            raise MatrixRunError(
                f"{self.api_service} did not converge within {timeout:g} s: {error}"
            ) from None
        placement: dict[str, int] = {}
        for task in self.engine.task_nodes(self.api_service):
            placement[task.node] = placement.get(task.node, 0) + 1
        record.placement = placement
        where = ", ".join(f"{node}: {count}" for node, count in sorted(placement.items()))
        path = target.health_path if target is not None else READY_PATH
        say(f"converged ({state}; api tasks per node: {where}); waiting for {path} via Nginx")
        url = f"{self.settings.base_url}{path}"
        # Without a container health check (a target, our api searched for its knee), convergence
        # means running, not ready: readiness is this wait alone, so it gets the whole
        # convergence timeout (a model that loads for a minute is not a failure). With one, the
        # tasks were healthy before they counted as converged.
        unprobed = container is not None and container.get("Healthcheck") == NO_HEALTHCHECK
        ready_timeout = timeout if unprobed else READY_TIMEOUT_S
        try:
            wait_until(
                api_ready(self.engine, self.settings.stack_name, url),
                ready_timeout,
                READY_INTERVAL_S,
            )
        except WaitTimeout as error:
            what = f"the target {target.image}" if target is not None else self.api_service
            raise MatrixRunError(
                f"{what} did not answer {url} with 2xx within {ready_timeout:g} s (last: {error})"
            ) from None
        # Where a cell's time goes: with a health check (the autoscaler's cells, other profiles)
        # a fresh api task takes traffic only after its first probe, up to 20 s.
        say(f"ready {time.monotonic() - began:.0f} s after the update")
