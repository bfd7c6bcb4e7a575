"""A cell's load: its trials (host Locust or the stack's), with the api tasks' docker stats and,
on a cluster, each node's CPU sampled meanwhile; then what happened to the service over all of
them (restarts, OOM kills, Nginx's counters, the replicas' own figures from Prometheus)."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from matrix.analyse.analysis import docker_stats_summary
from matrix.analyse.capacity_model import demand_model, demand_points, predict, step_shape
from matrix.analyse.confidence import TRIALS_BUDGET, TRIALS_CONVERGED, TRIALS_MAX, converged
from matrix.analyse.records import CellRecord, TrialRecord
from matrix.analyse.soak import soak_summary
from matrix.config import (
    MatrixFile,
    MatrixSettings,
    SearchProfile,
    SoakProfile,
    StaircaseProfile,
)
from matrix.measure.cgroups import CgroupSampler, read_samples, window_cpu
from matrix.measure.cluster_target import ClusterTarget
from matrix.measure.drain_probe import DrainProbe, QuietReference, nginx_busy
from matrix.measure.idle import IDLE_SECONDS, measure_idle
from matrix.measure.loadgen import TrialRun
from matrix.measure.prometheus import attach_server_figures, stack_client, target_metrics_note
from matrix.measure.stack_locust import LocustMaster, run_stack_trial
from matrix.measure.trial import StepWatcher, analyse_trial, run_trial
from stack.credentials import lab_ui_credentials
from stack.docker_stats import DockerStatsSampler
from stack.engine import Engine

NODE_CPU_FILE = "node_cpu.csv"
CLOSED_LOOP_DIR = "closed-loop"
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


def trials_ended(
    record: CellRecord, ci_target: float, elapsed_with_next: float, budget: float | None
) -> str:
    """Why no further trial should run ("" to run one): the knee's interval is narrow enough,
    or another trial (as long as the latest) would end past the cell's budget."""
    if converged(record.knees, ci_target, record.knee_resolution):
        return TRIALS_CONVERGED
    if budget is not None and elapsed_with_next > budget:
        return TRIALS_BUDGET
    return ""


def search_limit(trial: TrialRecord) -> float | None:
    """The offered rate a trial's short search steps bracketed: the highest passing one below
    every failing one. Holds are left out: a rate the 3 s steps pass can fail held (at 0.05 CPU
    the held knee lies 15-25 % lower), and a later search converges where its short steps do."""
    short = [
        s
        for s in trial.steps
        if not s.confirmation and not s.generator_limited and s.offered_rps is not None
    ]
    lowest_fail = min((s.offered_rps or 0.0 for s in short if not s.passed), default=math.inf)
    passing = [
        s.offered_rps or 0.0 for s in short if s.passed and (s.offered_rps or 0.0) < lowest_fail
    ]
    return max(passing, default=None)


def _bracketing(matrix: MatrixFile, profile: SearchProfile, limit: float) -> MatrixFile:
    """A search that brackets `limit`: from `later_start_share` of it (within the ceiling),
    moving by `later_growth`."""
    start = round(profile.later_start_share * limit, 1)
    if profile.ceiling is not None:
        start = min(start, profile.ceiling)
    later = {"start_rate": start, "growth": profile.later_growth}
    return matrix.model_copy(update={"profile": profile.model_copy(update=later)})


def held_rate(trial: TrialRecord) -> float | None:
    """The offered rate of a trial's knee when a hold confirmed it, else None."""
    knee = trial.knee
    if knee is None or not knee.confirmation or not knee.passed:
        return None
    return knee.offered_rps


def later_start(matrix: MatrixFile, record: CellRecord) -> MatrixFile:
    """A later trial starts from what the earlier ones measured instead of climbing from the
    file's start_rate again. With confirmation holds: holds only (HoldSearch), from the
    median rate the earlier trials held, each hold `precision` above or below the last. Its
    knee stays its own measurement: the first hold may fail and the trial then goes down.
    Without holds, or before any held: a search from `later_start_share` of the median rate
    the earlier trials' short steps converged on (search_limit), moving by `later_growth`, up
    while steps pass and down while they fail, then bisecting to the same precision. Measured
    limits, not the capacity model's prediction: the model can be far off where its demand
    figures are (a cell dominated by its idle cost, a shared host)."""
    profile = matrix.profile
    if not isinstance(profile, SearchProfile):
        return matrix
    held = [rate for trial in record.trials if (rate := held_rate(trial))]
    if profile.confirm_seconds > 0 and held:
        hold = {"start_rate": round(statistics.median(held), 1), "holds_only": True}
        return matrix.model_copy(update={"profile": profile.model_copy(update=hold)})
    limits = [limit for trial in record.trials if (limit := search_limit(trial))]
    if not limits:
        return matrix
    return _bracketing(matrix, profile, statistics.median(limits))


def predicted_start(
    matrix: MatrixFile, record: CellRecord, earlier: Sequence[CellRecord]
) -> tuple[MatrixFile, float | None]:
    """A cell's first search starts near its limit when earlier cells of the run measured
    demand: at `later_start_share` of the knee the capacity model predicts for this cell from
    their demand figures (matrix/analyse/capacity_model.py), moving by `later_growth` and then
    bisecting, as a later trial without holds does. Returns the file to run and the predicted
    offered knee (None: no prediction, the file's own start_rate). The search still finds its
    own knee: a first step that fails sends it down, and nothing caps it near the prediction."""
    profile = matrix.profile
    if not isinstance(profile, SearchProfile):
        return matrix, None
    points = [p for cell in earlier for p in demand_points(cell.trials, cell.total_cpus)]
    model = demand_model(points)
    if model is None:
        return matrix, None
    try:
        prediction = predict(
            model, record.replicas, record.cpus, step_shape(profile, matrix.objective)
        )
    except ValueError:
        return matrix, None
    return _bracketing(matrix, profile, prediction.knee_offered_rps), prediction.knee_offered_rps


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
        # The cell's rest (measure_idle), which the drain probe of each trial waits for.
        self.quiet: QuietReference | None = None

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

    def measure_idle(self, record: CellRecord, say: Say) -> None:
        """The api containers' CPU with no load, before the cell's first step; from then on
        every trial's master waits for the cell to be back at that rest before each step."""
        say(f"idle baseline: the api containers' CPU over {IDLE_SECONDS:g} s with no load")
        cgroup_dirs = partial(self.engine.cgroup_dirs, self.api_service)
        baseline = measure_idle(cgroup_dirs, record.total_cpus, self._nginx_busy)
        if baseline is None:
            say("idle baseline: no api cgroup readable here; steps follow without a drain probe")
            self.quiet = None
            return
        record.idle_cpu_cores = baseline.cpu_cores
        record.idle_throttled_per_s = baseline.throttled_per_s
        self.quiet = QuietReference(
            baseline.cpu_cores,
            baseline.throttled_per_s,
            record.total_cpus,
            record.replicas,
            baseline.nginx_busy,
        )
        say(
            f"idle baseline: {baseline.cpu_cores:.4f} cores, {baseline.throttled_per_s:g} "
            f"throttled periods/s (after {baseline.settle_s:g} s for the warm-up to drain)"
        )

    def _nginx_busy(self) -> int | None:
        return nginx_busy(self.engine.nginx_status(self.nginx_service))

    def _run(self, matrix: MatrixFile, out: Path, trial: int, say: Say) -> TrialRun:
        cgroup_dirs = partial(self.engine.cgroup_dirs, self.api_service)
        probe = (
            DrainProbe(self.quiet, cgroup_dirs, self._nginx_busy)
            if self.quiet is not None
            else None
        )
        return TrialRun(
            matrix,
            self.settings,
            out,
            trial,
            cgroup_dirs,
            _trial_say(say, trial),
            partial(self.engine.cgroup_dirs, self.nginx_service),
            probe,
        )

    def _trial(self, matrix: MatrixFile, out: Path, trial: int, say: Say) -> TrialRecord:
        run = self._run(matrix, out, trial, say)
        if matrix.load_generator.where == "host":
            return run_trial(run)
        watcher = StepWatcher(out / "steps.jsonl", run.say)
        return run_stack_trial(run, self.engine, self.locust_master, watcher.poll, analyse_trial)

    def _trials(
        self, out: Path, record: CellRecord, say: Say, earlier: Sequence[CellRecord]
    ) -> None:
        """At least `trials`; with adaptive trials, more until the knee's interval is within
        +-ci_target of the median, max_trials ran, or another would overrun the budget."""
        matrix, profile = self.matrix, self.matrix.profile
        generator = matrix.load_generator
        where = (
            f"{generator.workers} Locust workers of the stack"
            if generator.where == "stack"
            else f"{generator.processes} Locust processes"
        )
        most = (matrix.max_trials or matrix.trials) if matrix.adaptive else matrix.trials
        started = time.monotonic()
        last = 0.0  # the latest trial's duration: later ones start near the knee, so are shorter
        for trial in range(1, most + 1):
            if trial > matrix.trials:
                ended = trials_ended(
                    record,
                    matrix.ci_target,
                    time.monotonic() - started + last,
                    matrix.cell_budget_seconds,
                )
                if ended:
                    record.trials_ended = ended
                    say(f"no further trial: {ended}")
                    return
            predicted = None
            if record.trials:
                run_matrix = later_start(matrix, record)
            else:
                run_matrix, predicted = predicted_start(matrix, record, earlier)
            start = run_matrix.profile
            first_step = ""
            if isinstance(start, SearchProfile) and start != profile:
                first = "holds only, the first" if start.holds_only else "first step"
                first_step = f", {first} at {start.start_rate:g} req/s"
            if predicted is not None:
                first_step += (
                    f", below the knee the capacity model predicts from the earlier cells' "
                    f"demand ({predicted:.0f} req/s offered)"
                )
            count = f"{matrix.trials}-{most}" if most > matrix.trials else f"{most}"
            say(
                f"trial {trial} of {count}: {profile.kind} load, about "
                f"{start.expected_seconds():.0f} s ({where}){first_step}"
            )
            began = time.monotonic()
            done = self._trial(run_matrix, out / f"trial-{trial}", trial, say)
            record.trials.append(done)
            last = time.monotonic() - began
            holds = sum(step.confirmation for step in done.steps)
            say(
                f"trial {trial} took {last:.0f} s: {len(done.steps) - holds} search step(s), "
                f"{holds} confirmation hold(s)"
            )
        if matrix.adaptive:
            record.trials_ended = (
                TRIALS_CONVERGED
                if converged(record.knees, matrix.ci_target, record.knee_resolution)
                else TRIALS_MAX
            )

    def _closed_loop(self, out: Path, say: Say) -> TrialRecord:
        """The closed-loop run against the same cell (host Locust, no think time)."""
        closed = self.matrix.closed_loop
        profile = self.matrix.profile
        assert isinstance(profile, SearchProfile | StaircaseProfile)  # the file's validation
        generator = self.matrix.load_generator.model_copy(update={"where": "host"})
        matrix = self.matrix.model_copy(
            update={
                "profile": closed.profile(profile.request_timeout_seconds),
                "load_generator": generator,
            }
        )
        say(
            f"closed loop: {closed.users} users without think time for {closed.seconds:g} s, "
            "for the comparison with the open-model knee"
        )
        return run_trial(self._run(matrix, out, 0, say))

    def run(
        self, out: Path, record: CellRecord, say: Say, earlier: Sequence[CellRecord] = ()
    ) -> None:
        """Runs every trial of the cell; restarts, OOM kills and Nginx counters over all.
        `earlier`: the cells this run measured before, whose demand places the first search."""
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
            self._trials(out, record, say, earlier)
            if self.matrix.closed_loop.enabled:
                record.closed_loop = self._closed_loop(out / CLOSED_LOOP_DIR, say)
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
