"""Runs the distributed Locust test headless (a master forking --processes workers over ZeroMQ)
from the host virtualenv and samples the load generator's own CPU with psutil."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

from matrix.config import (
    OPEN_PROFILE_TYPES,
    PROJECT_ROOT,
    LoadGenerator,
    MatrixFile,
    MatrixSettings,
    SearchProfile,
    SoakProfile,
    SpikeProfile,
    StaircaseProfile,
)
from matrix.config import WorkshopProfile as WorkshopProfileModel
from matrix.measure.drain_probe import DrainProbe

LOCUSTFILE = PROJECT_ROOT / "locust" / "locustfile.py"
CSV_PREFIX = "locust"
STEP_LOG = "steps.jsonl"
LOADGEN_CPU_FILE = "loadgen_cpu.csv"
# A target's requests as the locustfile reads them (--target-requests), in the trial's folder.
TARGET_REQUESTS_FILE = "target_requests.json"
# Locust itself needs a few seconds to start workers and to write its final CSVs.
STARTUP_GRACE_S = 30.0


@dataclass(frozen=True)
class TrialRun:
    """What one trial needs wherever its Locust runs (the host or the stack): the matrix, the
    settings, its folder and number, the api tasks' cgroups to sample, and where to report."""

    matrix: MatrixFile
    settings: MatrixSettings
    out: Path
    trial: int
    cgroup_dirs: Callable[[], Mapping[str, Path]]
    say: Callable[[str], None]
    # The Nginx container's cgroup (its CPU per request); None: not sampled.
    nginx_cgroup_dirs: Callable[[], Mapping[str, Path]] | None = None
    # Asked by the Locust master before each step (matrix/measure/drain_probe.py); None: the
    # master pauses after a failing step for a time it estimates instead.
    drain_probe: DrainProbe | None = None


def locust_executable() -> str:
    candidate = Path(sys.executable).with_name("locust")
    return str(candidate) if candidate.exists() else "locust"


def _first_rate(profile: SearchProfile | StaircaseProfile | SoakProfile | SpikeProfile) -> float:
    """--start-rate: where the profile's rates start (a soak's held rate, a spike's base)."""
    if isinstance(profile, SoakProfile):
        return profile.held_rate
    if isinstance(profile, SpikeProfile):
        return profile.base_rate
    return profile.start_rate


def profile_arguments(matrix: MatrixFile) -> list[str]:
    """The locustfile options for a matrix's profile, objective and load generator."""
    profile = matrix.profile
    if isinstance(profile, OPEN_PROFILE_TYPES):
        objective, generator = matrix.objective, matrix.load_generator
        args = [
            "--load-profile",
            profile.kind,
            "--start-rate",
            f"{_first_rate(profile):g}",
            "--step-seconds",
            f"{profile.step_seconds:g}",
            "--settle-seconds",
            f"{profile.settle_seconds:g}",
            "--arrival",
            profile.arrival,
            "--request-timeout",
            f"{profile.request_timeout_seconds:g}",
            "--p95-ms",
            f"{objective.p95_ms:g}",
            "--p99-ms",
            f"{objective.p99_ms or 0:g}",
            "--max-failure-ratio",
            f"{objective.max_failure_ratio:g}",
            "--min-completion-ratio",
            f"{objective.min_completion_ratio:g}",
            "--late-ms",
            f"{generator.late_ms:g}",
            "--max-late-ratio",
            f"{generator.max_late_ratio:g}",
            "--max-in-flight",
            str(generator.max_in_flight),
        ]
        if isinstance(profile, SearchProfile):
            args += [
                "--growth",
                f"{profile.growth:g}",
                "--precision",
                f"{profile.precision:g}",
                "--ceiling",
                f"{profile.ceiling or 0:g}",
                "--max-steps",
                str(profile.max_steps),
                "--confirm-seconds",
                f"{profile.confirm_seconds:g}",
            ]
            if profile.holds_only:
                args.append("--holds-only")
        elif isinstance(profile, SoakProfile):
            args += ["--soak-steps", str(profile.steps())]
        elif isinstance(profile, SpikeProfile):
            counts = ",".join(str(n) for n in profile.step_counts())
            args += ["--spike-rate", f"{profile.peak_rate:g}", "--spike-steps", counts]
        else:
            args += ["--step-rate", f"{profile.step_rate:g}", "--max-rate", f"{profile.max_rate:g}"]
        return args
    if isinstance(profile, WorkshopProfileModel):
        return [
            "--load-profile",
            "workshop",
            "--workshop-users",
            str(profile.users),
            "--workshop-spawn-rate",
            f"{profile.spawn_rate:g}",
            "--hold-seconds",
            f"{profile.hold_seconds:g}",
            "--think-min",
            f"{profile.think_time[0]:g}",
            "--think-max",
            f"{profile.think_time[1]:g}",
            "--request-timeout",
            f"{profile.request_timeout_seconds:g}",
        ]
    return [
        "--user-rate",
        f"{profile.user_rate:g}",
        "--load-profile",
        "plain",
        "-u",
        str(profile.users),
        "-r",
        f"{profile.spawn_rate:g}",
        "-t",
        f"{int(profile.duration_seconds())}s",
    ]


def target_arguments(matrix: MatrixFile, output_dir: Path) -> list[str]:
    """With a target: its requests written to the trial's folder and the option that sends
    them instead of the penguin bodies; without one, nothing."""
    if matrix.target is None:
        return []
    path = output_dir / TARGET_REQUESTS_FILE
    path.write_text(json.dumps(matrix.target.requests_document(), indent=2), encoding="utf-8")
    return ["--target-requests", str(path)]


def locust_command(
    host: str,
    output_dir: Path,
    profile_args: list[str],
    generator: LoadGenerator,
    run_seconds: float,
) -> list[str]:
    command = [
        locust_executable(),
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        host,
        "--csv",
        str(output_dir / CSV_PREFIX),
        "--csv-full-history",
        "--step-log",
        str(output_dir / STEP_LOG),
        "--model-mix",
        generator.model_mix,
        "--batch-weight",
        str(generator.batch_weight),
        "--body",
        generator.body,
        "--only-summary",
        "--loglevel",
        "INFO",
        # A safety net only: the shape ends the test; -t stops a shape that never does.
        "--run-time",
        f"{int(run_seconds + 10)}s",
        "--stop-timeout",
        "5",
    ]
    if generator.processes > 1:
        # Its own master port on loopback: two runs on one host (or a test beside a run) must
        # never share Locust's default 5557, or their workers join each other's master.
        # The forked workers connect to --master-host/--master-port, the master binds the other.
        port = str(free_port())
        command += [
            "--processes",
            str(generator.processes),
            "--master-bind-host",
            "127.0.0.1",
            "--master-bind-port",
            port,
            "--master-host",
            "127.0.0.1",
            "--master-port",
            port,
        ]
    return command + profile_args


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class CpuSampler(threading.Thread):
    """Samples CPU of a process and its children (the forked workers) and of the host."""

    def __init__(self, pid: int, output: Path, interval: float) -> None:
        super().__init__(name="loadgen-cpu", daemon=True)
        self.pid = pid
        self.output = output
        self.interval = interval
        self._stop_event = threading.Event()
        self._processes: dict[int, psutil.Process] = {}

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)

    def _tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.pid)
            members = [root, *root.children(recursive=True)]
        except psutil.Error:
            return []
        for proc in members:
            if proc.pid not in self._processes:
                proc.cpu_percent(None)  # the first call only primes the counter
                self._processes[proc.pid] = proc
        return [self._processes[p.pid] for p in members]

    def run(self) -> None:
        psutil.cpu_percent(None)
        self._tree()
        with self.output.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(
                (
                    "timestamp",
                    "total_percent",
                    "max_process_percent",
                    "host_percent",
                    "processes",
                    "cpu_seconds",
                )
            )
            while not self._stop_event.wait(self.interval):
                percents = []
                # Cumulative CPU time of the live processes: cut at a step's exact boundaries
                # for the generator's CPU per request (percentages average whole samples).
                seconds = 0.0
                for proc in self._tree():
                    try:
                        percents.append(proc.cpu_percent(None))
                        times = proc.cpu_times()
                        seconds += times.user + times.system
                    except psutil.Error:
                        continue
                if not percents:
                    continue
                writer.writerow(
                    (
                        round(time.time(), 3),
                        round(sum(percents), 2),
                        round(max(percents), 2),
                        psutil.cpu_percent(None),
                        len(percents),
                        round(seconds, 4),
                    )
                )
                handle.flush()


def run_locust(
    command: list[str],
    output_dir: Path,
    timeout: float,
    sample_interval: float,
    on_tick: Callable[[], None] | None = None,
) -> int:
    """Runs Locust to completion, output in locust.log; kills the whole group on interrupt.
    `on_tick` is called about once a second meanwhile (progress)."""
    log_path = output_dir / "locust.log"
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT, start_new_session=True
        )
        sampler = CpuSampler(process.pid, output_dir / LOADGEN_CPU_FILE, sample_interval)
        sampler.start()
        deadline = time.monotonic() + timeout + STARTUP_GRACE_S
        try:
            while True:
                try:
                    return process.wait(timeout=1.0)
                except subprocess.TimeoutExpired:
                    if time.monotonic() > deadline:
                        _stop_group(process)
                        raise TimeoutError(
                            f"locust did not finish within {timeout + STARTUP_GRACE_S:.0f} s; "
                            f"see {log_path}"
                        ) from None
                    if on_tick is not None:
                        on_tick()
        finally:
            if process.poll() is None:
                _stop_group(process)
            sampler.stop()


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGINT first so Locust writes its CSVs, then SIGKILL the group if it lingers."""
    for sig, wait in ((signal.SIGINT, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
