"""A cell's load: its trials (host Locust or the stack's), with the api tasks' docker stats and,
on a cluster, each node's CPU sampled meanwhile; then what happened to the service over all of
them (restarts, OOM kills, Nginx's counters, the replicas' own figures from Prometheus)."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from matrix.analyse.analysis import docker_stats_summary
from matrix.analyse.records import CellRecord, TrialRecord
from matrix.analyse.soak import soak_summary
from matrix.config import MatrixFile, MatrixSettings, SoakProfile
from matrix.measure.cgroups import CgroupSampler, read_samples, window_cpu
from matrix.measure.cluster_target import ClusterTarget
from matrix.measure.loadgen import TrialRun
from matrix.measure.prometheus import attach_server_figures, stack_client, target_metrics_note
from matrix.measure.stack_locust import LocustMaster, run_stack_trial
from matrix.measure.trial import StepWatcher, analyse_trial, run_trial
from stack.credentials import lab_ui_credentials
from stack.docker_stats import DockerStatsSampler
from stack.engine import Engine

NODE_CPU_FILE = "node_cpu.csv"
NODE_CPU_SAMPLE_INTERVAL_S = 1.0

Say = Callable[[str], None]


def locust_auth(settings: MatrixSettings) -> tuple[str, str] | None:
    """The stack's Locust login (the file stack_up.sh wrote), when the stack has one."""
    credentials = lab_ui_credentials(settings.stack_name)
    return credentials.auth if credentials is not None else None


def per_node_cores(samples_file: Path, start: float, end: float) -> dict[str, float]:
    """Mean cores each node's cgroup used between `start` and `end`."""
    cores = {}
    for node, series in read_samples(samples_file).items():
        window = window_cpu({node: series}, start, end)
        if window is not None:
            cores[node] = round(window.cpu_cores, 3)
    return cores


def _trial_say(say: Say, trial: int) -> Say:
    return lambda message: say(f"trial {trial}: {message}")


class CellLoad:
    def __init__(
        self,
        matrix: MatrixFile,
        settings: MatrixSettings,
        engine: Engine,
        cluster: ClusterTarget | None,
    ) -> None:
        self.matrix = matrix
        self.settings = settings
        self.engine = engine
        self.cluster = cluster
        self.api_service = f"{settings.stack_name}_api"
        self.nginx_service = f"{settings.stack_name}_nginx"
        self.locust_master = LocustMaster(settings.locust_url, locust_auth(settings))

    def reference(self, out: Path, say: Say) -> TrialRecord:
        """The cell's knee from an open-model search (host Locust)."""
        search = self.matrix.reference_search
        assert search is not None  # the matrix file's validation requires it
        generator = self.matrix.load_generator.model_copy(update={"where": "host"})
        matrix = self.matrix.model_copy(update={"profile": search, "load_generator": generator})
        say(
            f"reference: open-model search for this cell's knee, "
            f"about {search.expected_seconds():.0f} s"
        )
        return run_trial(self._run(matrix, out / "reference", 0, say))

    def _run(self, matrix: MatrixFile, out: Path, trial: int, say: Say) -> TrialRun:
        cgroup_dirs = partial(self.engine.cgroup_dirs, self.api_service)
        return TrialRun(matrix, self.settings, out, trial, cgroup_dirs, _trial_say(say, trial))

    def _trial(self, out: Path, trial: int, say: Say) -> TrialRecord:
        run = self._run(self.matrix, out, trial, say)
        if self.matrix.load_generator.where == "host":
            return run_trial(run)
        watcher = StepWatcher(out / "steps.jsonl", run.say)
        return run_stack_trial(run, self.engine, self.locust_master, watcher.poll, analyse_trial)

    def run(self, out: Path, record: CellRecord, say: Say) -> None:
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
                say(
                    f"trial {trial}/{self.matrix.trials}: "
                    f"{profile.kind} load, about "
                    f"{profile.expected_seconds():.0f} s ({where})"
                )
                record.trials.append(self._trial(out / f"trial-{trial}", trial, say))
        finally:
            sampler.stop()
            if nodes is not None:
                nodes.stop()
        finished = time.time()
        # The replicas' own figures per step, from the stack's Prometheus (n/a without one); a
        # target's only when it exposes the penguin service's metrics.
        query = stack_client(self.settings).query
        target = self.matrix.target
        if target is not None:
            record.server_metrics = target_metrics_note(query, time.time(), started, target.port)
        if record.server_metrics is None:
            attach_server_figures(record.trials, query, log=say)
        if nodes is not None:
            record.node_cpu_mean_cores = per_node_cores(out / NODE_CPU_FILE, started, finished)
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
