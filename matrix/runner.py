"""Measures every cell of a matrix on the running stack, restoring the api service afterwards
whatever happens, and resuming an interrupted run where it stopped."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

from matrix.analyse.analysis import docker_stats_summary
from matrix.analyse.records import CellRecord, TrialRecord
from matrix.analyse.soak import soak_summary
from matrix.config import Cell, MatrixFile, MatrixSettings, SoakProfile, memory_bytes
from matrix.measure.cgroups import CgroupSampler, read_samples, window_cpu
from matrix.measure.cluster_target import ClusterTarget, ClusterTargetError, RouteGuard
from matrix.measure.prometheus import attach_server_figures
from matrix.measure.stack_locust import LocustMaster, StackLocustError, run_stack_trial
from matrix.measure.trial import StepWatcher, TrialError, analyse_trial, run_trial
from matrix.report.report import CELL_FILE, CELLS_DIR, load_cell, write_report
from stack.admission import AdmissionError, AdmissionKnob, limit_for, stack_knob
from stack.credentials import lab_ui_credentials
from stack.docker_stats import DockerStatsSampler
from stack.engine import NANO, DockerError, Engine, ServiceResources
from stack.waits import (
    CONVERGE_INTERVAL_S,
    READY_INTERVAL_S,
    WaitTimeout,
    api_ready,
    service_converged,
    wait_until,
)

RUN_FILE = "run.json"
NODE_CPU_FILE = "node_cpu.csv"
NODE_CPU_SAMPLE_INTERVAL_S = 1.0
READY_TIMEOUT_S = 90.0
# Estimated fixed cost of a cell besides the profile: update, convergence, warm-up, teardown.
CELL_OVERHEAD_S = 30.0
WARMUP_BODY = {
    "island": "Biscoe",
    "culmen_length_mm": 47.5,
    "culmen_depth_mm": 15.0,
    "flipper_length_mm": 217.0,
    "body_mass_g": 5000.0,
    "sex": "MALE",
}
WARMUP_THREADS = 4


class MatrixRunError(RuntimeError):
    pass


class Progress:
    """One readable line per step, with elapsed time and an estimate of what is left."""

    def __init__(self, cells: int, seconds_per_cell: float) -> None:
        self.cells = cells
        self.estimate = seconds_per_cell
        self.started = time.monotonic()
        self.cell_started = self.started
        self.done_durations: list[float] = []
        self.position = 0

    def start_cell(self, position: int) -> None:
        self.position = position
        self.cell_started = time.monotonic()

    def finish_cell(self) -> None:
        self.done_durations.append(time.monotonic() - self.cell_started)

    def _left(self) -> float:
        per_cell = (
            sum(self.done_durations) / len(self.done_durations)
            if self.done_durations
            else self.estimate
        )
        current = max(0.0, per_cell - (time.monotonic() - self.cell_started))
        return current + per_cell * max(0, self.cells - self.position)

    def line(self, cell_id: str, message: str) -> None:
        elapsed = time.monotonic() - self.started
        print(
            f"[{_clock(elapsed)} elapsed, ~{_clock(self._left())} left] "
            f"cell {self.position}/{self.cells} {cell_id}: {message}",
            flush=True,
        )

    def note(self, message: str) -> None:
        print(f"[{_clock(time.monotonic() - self.started)} elapsed] {message}", flush=True)


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


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


def _read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _write_json(path: Path, data: object) -> None:
    temp = path.with_suffix(path.suffix + ".tmp")
    temp.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
    temp.replace(path)


def find_unfinished_run(results_dir: Path, fingerprint: str) -> Path | None:
    """The latest run of the same matrix that did not finish, to resume automatically."""
    if not results_dir.is_dir():
        return None
    for run_dir in sorted(results_dir.iterdir(), reverse=True):
        info_path = run_dir / RUN_FILE
        if not info_path.is_file():
            continue
        try:
            info = _read_json(info_path)
        except (OSError, ValueError):
            continue
        if info.get("fingerprint") == fingerprint and info.get("status") != "complete":
            return run_dir
    return None


def prepare_run_dir(
    matrix: MatrixFile,
    matrix_path: Path,
    settings: MatrixSettings,
    resume: Path | None,
    fresh: bool,
) -> tuple[Path, dict[str, Any]]:
    """Picks the run directory: --resume, else the latest unfinished run of this matrix, else a
    new results/<timestamp>/."""
    fingerprint = matrix.fingerprint()
    if resume is not None:
        info_path = resume / RUN_FILE
        if not info_path.is_file():
            raise MatrixRunError(f"--resume {resume}: no {RUN_FILE} there, not a matrix run")
        info = _read_json(info_path)
        if info.get("fingerprint") != fingerprint:
            raise MatrixRunError(
                f"--resume {resume}: that run measured a different matrix "
                f"(fingerprint {info.get('fingerprint')} != {fingerprint})"
            )
        return resume, info
    if not fresh:
        found = find_unfinished_run(settings.results_dir, fingerprint)
        if found is not None:
            return found, _read_json(found / RUN_FILE)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    run_dir = settings.results_dir / stamp
    suffix = 1
    while run_dir.exists():
        run_dir = settings.results_dir / f"{stamp}-{suffix}"
        suffix += 1
    (run_dir / CELLS_DIR).mkdir(parents=True)
    shutil.copyfile(matrix_path, run_dir / "matrix.yaml")
    info = {
        "fingerprint": fingerprint,
        "matrix_file": str(matrix_path),
        "status": "running",
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "stack": settings.stack_name,
        "host_cores": os.cpu_count(),
    }
    _write_json(run_dir / RUN_FILE, info)
    return run_dir, info


def served_models(base_url: str) -> list[str]:
    """The model names the API serves (GET /models): the service's registry, not a copy."""
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=10) as response:
            listing = json.loads(response.read())
        return [str(model["name"]) for model in listing["models"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise MatrixRunError(f"{base_url}/models did not list the served models: {error}") from None


def warm_up(base_url: str, seconds: float) -> int:
    """Predictions on every model for `seconds`: loads caches and JITs nothing, but makes the
    first measured step see warm workers and open Nginx upstream connections."""
    deadline = time.monotonic() + seconds
    count = [0]
    body = json.dumps(WARMUP_BODY).encode()
    models = served_models(base_url)

    def worker(offset: int) -> None:
        index = offset
        while time.monotonic() < deadline:
            model = models[index % len(models)]
            index += 1
            request = urllib.request.Request(
                f"{base_url}/predict?model={model}",
                data=body,
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    response.read()
                count[0] += 1
            except OSError:
                time.sleep(0.1)

    threads = [
        threading.Thread(target=worker, args=(i,), daemon=True) for i in range(WARMUP_THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return count[0]


def locust_auth(settings: MatrixSettings) -> tuple[str, str] | None:
    """The stack's Locust login (the file stack_up.sh wrote), when the stack has one."""
    credentials = lab_ui_credentials(settings.stack_name)
    return credentials.auth if credentials is not None else None


def _per_node_cores(samples_file: Path, start: float, end: float) -> dict[str, float]:
    """Mean cores each node's cgroup used between `start` and `end`."""
    cores = {}
    for node, series in read_samples(samples_file).items():
        window = window_cpu({node: series}, start, end)
        if window is not None:
            cores[node] = round(window.cpu_cores, 3)
    return cores


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
        self.engine = engine
        self.settings = settings
        self.run_dir = run_dir
        self.run_info = run_info
        self.api_service = f"{settings.stack_name}_api"
        self.nginx_service = f"{settings.stack_name}_nginx"
        self.base_url = settings.base_url
        self.locust_master = LocustMaster(settings.locust_url, locust_auth(settings))
        self._knob: AdmissionKnob | None = None
        per_cell = (
            matrix.trials * matrix.profile.expected_seconds()
            + matrix.warmup_seconds
            + CELL_OVERHEAD_S
        )
        self.progress = Progress(len(matrix.cell_list()), per_cell)

    def cell_done(self, cell: Cell) -> bool:
        return (self.run_dir / CELLS_DIR / cell.cell_id / CELL_FILE).is_file()

    def run(self) -> Path:
        """Measures the remaining cells, restores the service, writes the report."""
        self._same_target()
        try:
            original = self.engine.service_resources(self.api_service)
        except DockerError as error:
            raise MatrixRunError(
                f"cannot read service {self.api_service}; is the stack "
                f"'{self.settings.stack_name}' deployed? ({error})"
            ) from None
        # A resumed run restores what the first attempt found, not what it left behind.
        recorded = self.run_info.get("original_service")
        restore_to = ServiceResources(**recorded) if recorded else original
        self.run_info["original_service"] = restore_to.as_dict()
        if "original_update_config" not in self.run_info:
            self.run_info["original_update_config"] = self.engine.update_config(self.api_service)
        if any(c.admission != "stack" for c in self.matrix.cell_list()):
            knob = self._admission_knob()
            if "original_admission" not in self.run_info:
                current = self.engine.service_env(self.nginx_service).get(knob.env)
                self.run_info["original_admission"] = current
        _write_json(self.run_dir / RUN_FILE, self.run_info)
        cells = self.matrix.cell_list()
        done = [c.cell_id for c in cells if self.cell_done(c)]
        if done:
            self.progress.note(
                f"resuming {self.run_dir}: {len(done)} of {len(cells)} cells "
                f"already measured ({', '.join(done)})"
            )
        self.progress.cells = len(cells) - len(done)
        changed = False
        try:
            with _terminate_as_interrupt():
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
                self._restore(restore_to)
                self._restore_admission()
        self.run_info["status"] = "complete"
        self.run_info["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        report = write_report(self.run_dir, self.matrix, self.run_info)
        _write_json(self.run_dir / RUN_FILE, self.run_info)
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

    def _restore(self, original: ServiceResources) -> None:
        self.progress.note(
            f"restoring {self.api_service} to {original.replicas} replica(s), "
            f"limits {original.limit_nano_cpus / NANO:g} CPU / "
            f"{original.limit_memory_bytes / 2**20:g} MiB"
        )
        try:
            self.engine.update_service(
                self.api_service, original, self.matrix.converge_timeout_seconds
            )
            self.engine.set_update_config(self.api_service, self.run_info["original_update_config"])
        except (DockerError, KeyboardInterrupt) as error:
            print(
                f"warning: could not restore {self.api_service}: {error}; restore it with "
                f"docker service update --replicas {original.replicas} ... "
                f"{self.api_service}",
                file=sys.stderr,
            )

    def _admission_knob(self) -> AdmissionKnob:
        if self._knob is None:
            try:
                self._knob = stack_knob()
            except AdmissionError as error:
                raise MatrixRunError(str(error)) from None
        return self._knob

    def _set_admission(self, cell: Cell, record: CellRecord) -> None:
        """Applies the cell's in-flight limit to Nginx (a rolling update of the nginx service)
        when it differs from what runs."""
        knob = self._admission_knob()
        wanted = limit_for(cell.admission, knob)
        current = self.engine.service_env(self.nginx_service).get(knob.env)
        if wanted is None:
            record.admission_limit = int(current) if current and current.isdigit() else None
            return
        record.admission_limit = wanted
        if current == str(wanted):
            return
        self.progress.line(
            cell.cell_id,
            f"admission control: {knob.env}={wanted} on "
            f"{self.nginx_service}" + (" (off)" if wanted == 0 else ""),
        )
        self.engine.set_service_env(
            self.nginx_service, {knob.env: str(wanted)}, self.matrix.converge_timeout_seconds
        )

    def _restore_admission(self) -> None:
        original = self.run_info.get("original_admission")
        if original is None or self._knob is None:
            return
        try:
            if self.engine.service_env(self.nginx_service).get(self._knob.env) != original:
                self.progress.note(f"restoring {self.nginx_service}: {self._knob.env}={original}")
                self.engine.set_service_env(
                    self.nginx_service,
                    {self._knob.env: original},
                    self.matrix.converge_timeout_seconds,
                )
        except (DockerError, KeyboardInterrupt) as error:
            print(
                f"warning: could not restore {self.nginx_service}: {error}; restore it with "
                f"docker service update --env-add {self._knob.env}={original} "
                f"{self.nginx_service}",
                file=sys.stderr,
            )

    def _wanted(self, cell: Cell) -> tuple[ServiceResources, bool]:
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

    def measure(self, cell: Cell) -> None:
        final = self.run_dir / CELLS_DIR / cell.cell_id
        partial = self.run_dir / CELLS_DIR / f".{cell.cell_id}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
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
        guard = None
        try:
            if self.cluster is not None:
                self.cluster.check_route()
                guard = RouteGuard(self.cluster.check_route)
                guard.start()
            if cell.admission != "stack":
                self._set_admission(cell, record)
            self._deploy(cell, record)
            if cell.search_first:
                record.reference = self._reference(cell, partial)
            self._load(cell, partial, record)
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
            self.progress.line(cell.cell_id, f"FAILED: {error}")
        finally:
            if guard is not None:
                guard.stop()
        record.finished = datetime.now(UTC).isoformat(timespec="seconds")
        (partial / CELL_FILE).write_text(record.model_dump_json(indent=2), encoding="utf-8")
        shutil.rmtree(final, ignore_errors=True)
        partial.rename(final)
        if record.status == "measured":
            knees = ", ".join(f"{k:.0f}" for k in record.knees)
            self.progress.line(
                cell.cell_id,
                f"done: knee (served req/s) per trial: {knees}; "
                f"{record.requests} requests, {record.failures} failures"
                + (" (load generator limited)" if record.generator_limited else ""),
            )

    def _deploy(self, cell: Cell, record: CellRecord) -> None:
        wanted, reserved = self._wanted(cell)
        record.reserved = reserved
        self.progress.line(
            cell.cell_id,
            f"updating {self.api_service}: {cell.replicas} "
            f"replica(s), {cell.cpus:g} CPU, {cell.memory}"
            + ("" if reserved else " (no reservation: does not fit the node)"),
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
        self.progress.line(
            cell.cell_id,
            f"converged ({state}; api tasks per node: {where}); waiting for /ready via Nginx",
        )
        url = f"{self.base_url}/ready"
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
        if self.matrix.warmup_seconds > 0:
            self.progress.line(cell.cell_id, f"warming up for {self.matrix.warmup_seconds:g} s")
            record.warmup_requests = warm_up(self.base_url, self.matrix.warmup_seconds)

    def _reference(self, cell: Cell, out: Path) -> TrialRecord:
        """The cell's knee from an open-model search (host Locust), or the one a cell of the same
        configuration already measured in this run."""
        for other in self.matrix.cell_list():
            if other.config_id == cell.config_id and other is not cell and self.cell_done(other):
                done = load_cell(self.run_dir / CELLS_DIR / other.cell_id / CELL_FILE)
                if done.reference is not None:
                    self.progress.line(cell.cell_id, f"reference knee from {other.cell_id}")
                    return done.reference
        search = self.matrix.reference_search
        assert search is not None  # the matrix file's validation requires it
        generator = self.matrix.load_generator.model_copy(update={"where": "host"})
        matrix = self.matrix.model_copy(update={"profile": search, "load_generator": generator})
        self.progress.line(
            cell.cell_id,
            f"reference: open-model search for this cell's knee, "
            f"about {search.expected_seconds():.0f} s",
        )
        return run_trial(
            matrix,
            self.settings,
            self.base_url,
            out / "reference",
            0,
            partial(self.engine.cgroup_dirs, self.api_service),
            partial(self._trial_line, cell.cell_id, 0),
        )

    def _trial(self, cell: Cell, out: Path, trial: int) -> TrialRecord:
        say = partial(self._trial_line, cell.cell_id, trial)
        cgroup_dirs = partial(self.engine.cgroup_dirs, self.api_service)
        if self.matrix.load_generator.where == "host":
            return run_trial(
                self.matrix, self.settings, self.base_url, out, trial, cgroup_dirs, say
            )
        watcher = StepWatcher(out / "steps.jsonl", say)
        return run_stack_trial(
            self.matrix,
            self.settings,
            self.engine,
            self.locust_master,
            out,
            trial,
            cgroup_dirs,
            say,
            watcher.poll,
            analyse_trial,
        )

    def _trial_line(self, cell_id: str, trial: int, message: str) -> None:
        self.progress.line(cell_id, f"trial {trial}: {message}")

    def _load(self, cell: Cell, out: Path, record: CellRecord) -> None:
        """Runs every trial of the cell; restarts, OOM kills and Nginx counters over all."""
        generator = self.matrix.load_generator
        profile = self.matrix.profile
        tasks_before = self.engine.task_ids(self.api_service)
        nginx_before = self.engine.nginx_status(self.nginx_service)
        sampler = DockerStatsSampler(
            self.engine,
            self.api_service,
            out / "docker_stats.csv",
            self.settings.docker_stats_interval,
        )
        nodes = None
        if self.cluster is not None:
            node_dirs = self.cluster.node_cpu_dirs()
            nodes = CgroupSampler(
                lambda: node_dirs, out / NODE_CPU_FILE, NODE_CPU_SAMPLE_INTERVAL_S
            )
        started = time.time()
        sampler.start()
        if nodes is not None:
            nodes.start()
        try:
            for trial in range(1, self.matrix.trials + 1):
                where = (
                    f"{generator.workers} Locust workers of the stack"
                    if generator.where == "stack"
                    else f"{generator.processes} Locust processes"
                )
                self.progress.line(
                    cell.cell_id,
                    f"trial {trial}/{self.matrix.trials}: "
                    f"{profile.kind} load, about "
                    f"{profile.expected_seconds():.0f} s ({where})",
                )
                record.trials.append(self._trial(cell, out / f"trial-{trial}", trial))
        finally:
            sampler.stop()
            if nodes is not None:
                nodes.stop()
        finished = time.time()
        # The replicas' own figures per step, from the stack's Prometheus (n/a without one).
        attach_server_figures(record.trials, log=partial(self.progress.line, cell.cell_id))
        if nodes is not None:
            record.node_cpu_mean_cores = _per_node_cores(out / NODE_CPU_FILE, started, finished)
        containers = self.engine.containers(self.api_service, running_only=False)
        record.restarts = len(self.engine.task_ids(self.api_service) - tasks_before)
        record.oom_kills = len(self.engine.oom_killed(containers))
        nginx_after = self.engine.nginx_status(self.nginx_service)
        if nginx_before and nginx_after:
            record.nginx_requests = nginx_after["requests"] - nginx_before["requests"]
        stats = docker_stats_summary(out / "docker_stats.csv", started, finished)
        record.api_cpu_mean_cores = stats["api_cpu_mean_cores"]
        record.api_cpu_peak_cores = stats["api_cpu_peak_cores"]
        record.api_mem_peak_mb = stats["api_mem_peak_mb"]
        if isinstance(profile, SoakProfile):
            record.soak = [
                soak_summary(trial, out / "docker_stats.csv", profile) for trial in record.trials
            ]
