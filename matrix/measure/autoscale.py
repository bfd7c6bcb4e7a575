"""The autoscaler for cells with `autoscale: on|off`, and the replicas watched while they run.

A cell with autoscale 'on' starts the stack's autoscaler (one replica) once the cell is
deployed and warm, so it begins from the cell's replicas; 'off' keeps it stopped. Either way it
is stopped before each such cell is deployed (it would fight the deployment) and after its load,
and put back as it was at the end of the run. It is never switched on here: the stack must have
been deployed with it (`scripts/stack_up.sh --autoscale-from RUN` sets its target and bounds).

While the load runs, the api service's replicas are sampled about once a second (its spec, what
the autoscaler sets, and its running tasks); after it, the autoscaler's decision log is kept.
"""

from __future__ import annotations

import csv
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from matrix.analyse.records import CellRecord
from matrix.analyse.spike import (
    AUTOSCALER_SETTINGS,
    DECISIONS_FILE,
    REPLICAS_FILE,
    parse_decisions,
    read_replicas,
    spike_timeline,
)
from matrix.config import Cell, MatrixFile, MatrixSettings, SpikeProfile
from matrix.errors import MatrixRunError
from stack.engine import DockerError, Engine

ORIGINAL_KEY = "original_autoscaler_replicas"
REPLICA_SAMPLE_INTERVAL_S = 1.0
SCALE_TIMEOUT_S = 120.0

Say = Callable[[str], None]


class ReplicaSampler(threading.Thread):
    """The api service's desired replicas (its spec) and running tasks (Swarm's state: after
    their health check passed), to a CSV file."""

    def __init__(self, engine: Engine, service: str, output: Path, interval: float) -> None:
        super().__init__(name="replicas", daemon=True)
        self.engine, self.service, self.output, self.interval = engine, service, output, interval
        self._stop_event = threading.Event()

    def run(self) -> None:
        with self.output.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(("at", "desired", "running"))
            while True:
                try:
                    desired = self.engine.service_resources(self.service).replicas
                    running = len(self.engine.task_nodes(self.service))
                except DockerError:
                    desired = running = -1  # left out below: a gap, not a zero
                if desired >= 0:
                    writer.writerow((round(time.time(), 3), desired, running))
                    handle.flush()
                if self._stop_event.wait(self.interval):
                    return

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)


# How to run a matrix with `autoscale: on` cells, in both refusals that lead to it.
AUTOSCALER_RECIPE = (
    "deploy the stack with scripts/stack_up.sh --autoscale-from RUN (or --autoscale), then "
    "run the matrix with --no-stack-up: without it scripts/run_matrix.sh deploys the stack "
    "again, with the autoscaler off"
)


def stack_up_would_disable(matrix: MatrixFile, no_stack_up: bool) -> bool:
    """Whether run_matrix's own stack_up.sh (no --autoscale) would turn off the autoscaler a
    cell of this matrix needs on: refused before anything is deployed."""
    return not no_stack_up and any(c.autoscale == "on" for c in matrix.cell_list())


class AutoscalerCells:
    def __init__(
        self, matrix: MatrixFile, settings: MatrixSettings, engine: Engine, run_info: dict[str, Any]
    ) -> None:
        self.matrix, self.engine, self.run_info = matrix, engine, run_info
        self.service = f"{settings.stack_name}_autoscaler"
        self.api_service = f"{settings.stack_name}_api"
        self.used = any(c.autoscale != "stack" for c in matrix.cell_list())
        self._sampler: ReplicaSampler | None = None
        self._started = 0.0

    def record(self) -> None:
        """Notes the autoscaler's replicas before the run changes them (once per run)."""
        if self.used and ORIGINAL_KEY not in self.run_info:
            try:
                replicas = self.engine.service_resources(self.service).replicas
            except DockerError as error:
                raise MatrixRunError(
                    f"autoscale: the stack has no autoscaler service {self.service} ({error}); "
                    "deploy it with scripts/stack_up.sh --autoscale-from RUN"
                ) from None
            self.run_info[ORIGINAL_KEY] = replicas

    def prepare(self, cell: Cell, say: Say) -> None:
        """Before the cell is deployed: the autoscaler stopped, so it does not fight it."""
        if cell.autoscale != "stack":
            self._scale(0, say)

    def start(self, cell: Cell, record: CellRecord, out: Path, say: Say) -> None:
        """Once the cell is deployed and warm: the autoscaler on (for 'on'), replicas sampled."""
        record.autoscale = cell.autoscale
        if cell.autoscale == "on":
            env = self.engine.service_env(self.service)
            if env.get("AUTOSCALE_ENABLED", "").lower() != "true":
                raise MatrixRunError(
                    f"autoscale: 'on' needs the autoscaler enabled; {self.service} has "
                    f"AUTOSCALE_ENABLED={env.get('AUTOSCALE_ENABLED', '')!r}: {AUTOSCALER_RECIPE}"
                )
            self.run_info.setdefault("autoscaler", {})[cell.cell_id] = {
                key: env.get(key, "") for key in AUTOSCALER_SETTINGS
            }
            self._scale(1, say)
        if isinstance(self.matrix.profile, SpikeProfile):
            self._started = time.time()
            self._sampler = ReplicaSampler(
                self.engine, self.api_service, out / REPLICAS_FILE, REPLICA_SAMPLE_INTERVAL_S
            )
            self._sampler.start()

    def finish(self, cell: Cell, out: Path, say: Say) -> None:
        """After the cell's load, whatever happened: sampling stopped, the decision log kept
        and the autoscaler stopped."""
        if self._sampler is not None:
            self._sampler.stop()
            self._sampler = None
        if cell.autoscale == "on":
            try:
                lines = self.engine.service_logs(self.service, self._started - 5.0)
            except DockerError as error:
                lines = []
                say(f"the autoscaler's decision log could not be read: {error}")
            (out / DECISIONS_FILE).write_text(
                "".join(line + "\n" for line in lines), encoding="utf-8"
            )
        if cell.autoscale != "stack":
            self._scale(0, say)

    def timelines(self, cell: Cell, record: CellRecord, out: Path) -> None:
        """Each spike trial's timeline, from its steps, the replicas and the decisions."""
        profile = self.matrix.profile
        if not isinstance(profile, SpikeProfile):
            return
        decisions_file = out / DECISIONS_FILE
        decisions = parse_decisions(
            decisions_file.read_text(encoding="utf-8").splitlines()
            if decisions_file.is_file()
            else []
        )
        samples = read_replicas(out / REPLICAS_FILE)
        # A trial cut short (its Locust stopped early) has no peak to time.
        trials = [t for t in record.trials if len(t.steps) >= sum(profile.step_counts()[:2])]
        starts = [min(s.started for s in t.steps) for t in trials] + [math.inf]
        record.spike = [
            spike_timeline(
                trial,
                profile.step_counts(),
                samples,
                decisions,
                self.matrix.objective.p95_ms,
                self.matrix.objective.max_failure_ratio,
                cell.autoscale,
                self.run_info.get("autoscaler", {}).get(cell.cell_id, {}),
                until=starts[i + 1],
            )
            for i, trial in enumerate(trials)
        ]

    def restore(self, say: Say) -> None:
        original = self.run_info.get(ORIGINAL_KEY)
        if self.used and original is not None:
            self._scale(int(original), say)

    def _scale(self, replicas: int, say: Say) -> None:
        try:
            say(f"autoscaler: {replicas} replica(s)")
            self.engine.scale_service(self.service, replicas, SCALE_TIMEOUT_S)
        except DockerError as error:
            raise MatrixRunError(f"autoscale: scaling {self.service}: {error}") from None
