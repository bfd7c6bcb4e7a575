"""Measures every cell of a matrix on the running stack, restoring the api service afterwards
whatever happens, and resuming an interrupted run where it stopped.

The run is an order of stages, each in its own module: the run folder (matrix/run_dir.py), what
is changed on the stack and put back (measure/service_state.py), the cell's deployment
(measure/deploy.py), the warm-up (measure/warmup.py) and the cell's trials with their samplers
(measure/cell_load.py). This module only puts them in order and keeps the cell's record."""

from __future__ import annotations

import shutil
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

from matrix.analyse.records import CellRecord, TrialRecord
from matrix.config import Cell, MatrixFile, MatrixSettings, memory_bytes
from matrix.errors import MatrixRunError
from matrix.measure.autoscale import AutoscalerCells
from matrix.measure.cell_load import CellLoad
from matrix.measure.cluster_target import ClusterTarget, ClusterTargetError, RouteGuard
from matrix.measure.deploy import CellDeployer
from matrix.measure.host_facts import host_facts, speed_index_us
from matrix.measure.service_info import evaluator
from matrix.measure.service_state import (
    ApiServiceState,
    NginxAdmission,
    NginxTargetPort,
    PrometheusTargetPort,
)
from matrix.measure.stack_locust import StackLocustError
from matrix.measure.trial import TrialError
from matrix.measure.user_locustfile import StackLocustfile
from matrix.measure.warmup import warm_up
from matrix.progress import Progress
from matrix.report.report import CELL_FILE, CELLS_DIR, load_cell, write_report
from matrix.run_dir import RUN_FILE, find_unfinished_run, prepare_run_dir, write_json
from stack.engine import DockerError, Engine

__all__ = ["RUN_FILE", "MatrixRunError", "MatrixRunner", "find_unfinished_run", "prepare_run_dir"]

# Estimated fixed cost of a cell besides the profile: update, convergence, warm-up, teardown.
CELL_OVERHEAD_S = 30.0


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM / SIGHUP take the same clean-up path as Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class MatrixRunner:
    def __init__(
        self,
        matrix: MatrixFile,
        settings: MatrixSettings,
        run_dir: Path,
        run_info: dict[str, Any],
        engine: Engine,
        cluster: ClusterTarget | None = None,
    ) -> None:
        self.matrix = matrix
        # A multi-node Swarm: its route is checked before and watched during every cell, and
        # each node's CPU is sampled from its cgroup.
        self.cluster = cluster
        self.settings = settings
        self.run_dir = run_dir
        self.run_info = run_info
        self.engine = engine
        self.api = ApiServiceState(matrix, settings, engine, run_info)
        self.admission = NginxAdmission(matrix, settings, engine, run_info)
        # A target listens on its own port: Nginx proxies to it, Prometheus scrapes it there.
        self.target_ports = [
            NginxTargetPort(matrix, settings, engine, run_info),
            PrometheusTargetPort(matrix, settings, engine, run_info),
        ]
        self.deployer = CellDeployer(matrix, settings, engine)
        self.autoscaler = AutoscalerCells(matrix, settings, engine, run_info)
        self.load = CellLoad(matrix, settings, engine, cluster)
        # A user's own locustfile on the stack's Locust services, for the run's duration.
        self.locustfile = (
            StackLocustfile(matrix, settings, engine, run_info)
            if matrix.load_generator.locustfile is not None
            else None
        )
        per_cell = matrix.expected_load_seconds() + CELL_OVERHEAD_S
        self.progress = Progress(len(matrix.cell_list()), per_cell)

    def cell_done(self, cell: Cell) -> bool:
        return (self.run_dir / CELLS_DIR / cell.cell_id / CELL_FILE).is_file()

    def run(self) -> Path:
        """Measures the remaining cells, restores the service, writes the report."""
        self._same_target()
        restore_to = self.api.record()
        if any(c.admission != "stack" for c in self.matrix.cell_list()):
            self.admission.record()
        self.autoscaler.record()
        target = self.matrix.target
        if target is not None:
            self.run_info["target"] = {"image": target.image, "port": target.port}
        else:
            # For the report's header: "c" (the C module) or "numpy" served single rows.
            self.run_info["evaluator"] = self.run_info.get("evaluator") or evaluator(
                self.settings.base_url
            )
        if "host_facts" not in self.run_info:  # a resumed run keeps the facts it started with
            self.progress.note("reproducibility: host facts, and the host speed index (start)")
            self.run_info["host_facts"] = host_facts(self.engine, self.settings.stack_name)
            self.run_info["speed_index_start_us"] = speed_index_us()
        write_json(self.run_dir / RUN_FILE, self.run_info)
        cells = self.matrix.cell_list()
        done = [c.cell_id for c in cells if self.cell_done(c)]
        if done:
            self.progress.note(
                f"resuming {self.run_dir}: {len(done)} of {len(cells)} cells "
                f"already measured ({', '.join(done)})"
            )
        self.progress.cells = len(cells) - len(done)
        changed = shipped = False
        try:
            with _terminate_as_interrupt():
                if self.locustfile is not None and self.progress.cells > 0:
                    shipped = True
                    self.locustfile.apply(self.progress.note)
                position = 0
                for cell in cells:
                    if self.cell_done(cell):
                        continue
                    position += 1
                    self.progress.start_cell(position)
                    changed = True
                    self.measure(cell)
                    self.progress.finish_cell()
        finally:
            if changed:
                # The autoscaler first: it would scale the api away from what is put back.
                self.autoscaler.restore(self.progress.note)
                self.api.restore(restore_to, self.progress.note)
                self.admission.restore(self.progress.note)
                for port in self.target_ports:
                    port.restore(self.progress.note)
            if self.locustfile is not None and shipped:
                self.locustfile.restore(self.progress.note)
        if changed:
            self.progress.note("reproducibility: the host speed index (end)")
            self.run_info["speed_index_end_us"] = speed_index_us()
        self.run_info["status"] = "complete"
        self.run_info["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        report = write_report(self.run_dir, self.matrix, self.run_info)
        write_json(self.run_dir / RUN_FILE, self.run_info)
        self.progress.note(f"report: {report} (and report.html, summary.csv, plots/)")
        return report

    def _same_target(self) -> None:
        """A resumed run goes on where it started, the host's Swarm or the cluster: one report
        never mixes the two, nor restores one's service settings onto the other."""
        on_cluster = self.cluster is not None
        started_on_cluster = "cluster" in self.run_info
        if on_cluster != started_on_cluster and (
            "original_service" in self.run_info
            or any(self.cell_done(cell) for cell in self.matrix.cell_list())
        ):
            where = "the local cluster (--cluster)" if started_on_cluster else "the host's Swarm"
            raise MatrixRunError(
                f"{self.run_dir} was started on {where}; resume it there, or "
                "start a new run with --fresh"
            )
        if self.cluster is not None:
            self.run_info["cluster"] = {
                "nginx_url": self.cluster.nginx_url,
                "nodes": sorted(self.cluster.node_cgroups),
            }

    def measure(self, cell: Cell) -> None:
        final = self.run_dir / CELLS_DIR / cell.cell_id
        partial_dir = self.run_dir / CELLS_DIR / f".{cell.cell_id}.partial"
        shutil.rmtree(partial_dir, ignore_errors=True)
        partial_dir.mkdir(parents=True)
        record = CellRecord(
            cell_id=cell.cell_id,
            replicas=cell.replicas,
            cpus=cell.cpus,
            memory=cell.memory,
            memory_bytes=memory_bytes(cell.memory),
            total_cpus=cell.total_cpus,
            started=datetime.now(UTC).isoformat(timespec="seconds"),
            config_id=cell.config_id,
            admission=str(cell.admission),
            observation=cell.observation,
        )
        say = partial(self.progress.line, cell.cell_id)
        guard = None
        try:
            if self.cluster is not None:
                self.cluster.check_route()
                guard = RouteGuard(self.cluster.check_route)
                guard.start()
            if cell.admission != "stack":
                self.admission.apply(cell, record, say)
            for port in self.target_ports:
                port.apply(say)
            self.autoscaler.prepare(cell, say)
            self.deployer.deploy(cell, record, say)
            if self.matrix.warmup_seconds > 0:
                say(f"warming up for {self.matrix.warmup_seconds:g} s")
                record.warmup_requests = warm_up(
                    self.settings.base_url, self.matrix.warmup_seconds, self.matrix.target
                )
            self.load.measure_idle(record, say)
            if cell.search_first:
                record.reference = self._reference(cell, partial_dir)
            self.autoscaler.start(cell, record, partial_dir, say)
            try:
                self.load.run(partial_dir, record, say, self._measured())
            finally:
                self.autoscaler.finish(cell, partial_dir, say)
            self.autoscaler.timelines(cell, record, partial_dir)
            record.status = "measured"
        except ClusterTargetError as error:
            raise MatrixRunError(str(error)) from None
        except KeyboardInterrupt:
            if guard is not None and guard.failure:
                raise MatrixRunError(f"stopped: {guard.failure}") from None
            raise
        except (DockerError, MatrixRunError, StackLocustError, TimeoutError, TrialError) as error:
            # The cell stays on record as not measurable (e.g. it does not fit the node).
            record.error = str(error)
            say(f"FAILED: {error}")
        finally:
            if guard is not None:
                guard.stop()
        record.finished = datetime.now(UTC).isoformat(timespec="seconds")
        (partial_dir / CELL_FILE).write_text(record.model_dump_json(indent=2), encoding="utf-8")
        shutil.rmtree(final, ignore_errors=True)
        partial_dir.rename(final)
        if record.status == "measured":
            knees = ", ".join(f"{k:.0f}" for k in record.knees)
            say(
                f"done: knee (served req/s) per trial: {knees}; "
                f"{record.requests} requests, {record.failures} failures"
                + (" (load generator limited)" if record.generator_limited else "")
            )

    def _measured(self) -> list[CellRecord]:
        """The cells this run has measured so far (also before a resume)."""
        done = [
            load_cell(self.run_dir / CELLS_DIR / cell.cell_id / CELL_FILE)
            for cell in self.matrix.cell_list()
            if self.cell_done(cell)
        ]
        return [record for record in done if record.status == "measured"]

    def _reference(self, cell: Cell, out: Path) -> TrialRecord:
        """The cell's knee from an open-model search, or the one a cell of the same
        configuration already measured in this run."""
        for other in self.matrix.cell_list():
            if other.config_id == cell.config_id and other is not cell and self.cell_done(other):
                done = load_cell(self.run_dir / CELLS_DIR / other.cell_id / CELL_FILE)
                if done.reference is not None:
                    self.progress.line(cell.cell_id, f"reference knee from {other.cell_id}")
                    return done.reference
        return self.load.reference(out, partial(self.progress.line, cell.cell_id))
