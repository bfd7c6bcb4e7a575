"""Puts a cell's configuration on the api service: its replicas, limits and (when they fit)
reservations, then waits until it converged and answers /ready through Nginx."""

from __future__ import annotations

from collections.abc import Callable

from matrix.analyse.records import CellRecord
from matrix.config import Cell, MatrixFile, MatrixSettings, memory_bytes
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
        timeout = self.matrix.converge_timeout_seconds
        self.engine.update_service(self.api_service, wanted, timeout)
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
        say(f"converged ({state}; api tasks per node: {where}); waiting for /ready via Nginx")
        url = f"{self.settings.base_url}/ready"
        try:
            wait_until(
                api_ready(self.engine, self.settings.stack_name, url),
                READY_TIMEOUT_S,
                READY_INTERVAL_S,
            )
        except WaitTimeout as error:
            raise MatrixRunError(
                f"{url} was not ready within {READY_TIMEOUT_S:g} s (last: {error})"
            ) from None
