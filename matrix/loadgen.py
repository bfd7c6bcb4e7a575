"""Runs the distributed Locust test headless (a master forking --processes workers over ZeroMQ)
from the host virtualenv and samples the load generator's own CPU with psutil."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from matrix.config import PROJECT_ROOT, LoadGenerator, PlainProfile, StaircaseProfile
from matrix.config import WorkshopProfile as WorkshopProfileModel

LOCUSTFILE = PROJECT_ROOT / "locust" / "locustfile.py"
CSV_PREFIX = "locust"
STEP_LOG = "steps.jsonl"
LOADGEN_CPU_FILE = "loadgen_cpu.csv"
# Locust itself needs a few seconds to start workers and to write its final CSVs.
STARTUP_GRACE_S = 30.0


def locust_executable() -> str:
    candidate = Path(sys.executable).with_name("locust")
    return str(candidate) if candidate.exists() else "locust"


# The load test stops on a throughput shortfall only well below the objective's ratio: its
# counts lag a report behind, and the matrix's own verdict from the history is the one that counts.
STOP_THROUGHPUT_MARGIN = 0.9


def profile_arguments(profile: StaircaseProfile | PlainProfile | WorkshopProfileModel,
                      stop_p95_ms: float, stop_failure_ratio: float,
                      stop_throughput_ratio: float = 0.0) -> list[str]:
    """The locustfile options for one matrix profile."""
    args = ["--user-rate", f"{profile.user_rate:g}"]
    if isinstance(profile, StaircaseProfile):
        args += ["--load-profile", "staircase", "--start-rate", f"{profile.start_rate:g}",
                 "--step-rate", f"{profile.step_rate:g}", "--step-seconds",
                 f"{profile.step_seconds:g}", "--max-rate", f"{profile.max_rate:g}"]
        if profile.stop_on_breach:
            args += ["--stop-p95-ms", f"{stop_p95_ms:g}",
                     "--stop-failure-ratio", f"{max(stop_failure_ratio, 1e-9):g}",
                     "--stop-min-throughput-ratio",
                     f"{stop_throughput_ratio * STOP_THROUGHPUT_MARGIN:g}"]
    elif isinstance(profile, WorkshopProfileModel):
        args += ["--load-profile", "workshop", "--workshop-users", str(profile.users),
                 "--workshop-spawn-rate", f"{profile.spawn_rate:g}",
                 "--hold-seconds", f"{profile.hold_seconds:g}"]
    else:
        args += ["--load-profile", "plain", "-u", str(profile.users), "-r",
                 f"{profile.spawn_rate:g}", "-t", f"{int(profile.duration_seconds())}s"]
    return args


def locust_command(host: str, output_dir: Path, profile_args: list[str],
                   generator: LoadGenerator, run_seconds: float) -> list[str]:
    command = [
        locust_executable(), "-f", str(LOCUSTFILE), "--headless", "--host", host,
        "--csv", str(output_dir / CSV_PREFIX), "--csv-full-history",
        "--step-log", str(output_dir / STEP_LOG),
        "--model-mix", generator.model_mix, "--batch-weight", str(generator.batch_weight),
        "--only-summary", "--loglevel", "INFO",
        # A safety net only: the shape ends the test; -t stops a shape that never does.
        "--run-time", f"{int(run_seconds + 10)}s", "--stop-timeout", "5",
    ]
    if generator.processes > 1:
        command += ["--processes", str(generator.processes)]
    return command + profile_args


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
            writer.writerow(("timestamp", "total_percent", "max_process_percent", "host_percent",
                             "processes"))
            while not self._stop_event.wait(self.interval):
                percents = []
                for proc in self._tree():
                    try:
                        percents.append(proc.cpu_percent(None))
                    except psutil.Error:
                        continue
                if not percents:
                    continue
                writer.writerow((round(time.time(), 3), round(sum(percents), 2),
                                 round(max(percents), 2), psutil.cpu_percent(None), len(percents)))
                handle.flush()


def run_locust(command: list[str], output_dir: Path, timeout: float,
               sample_interval: float) -> int:
    """Runs Locust to completion, output in locust.log; kills the whole group on interrupt."""
    log_path = output_dir / "locust.log"
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   cwd=PROJECT_ROOT, start_new_session=True)
        sampler = CpuSampler(process.pid, output_dir / LOADGEN_CPU_FILE, sample_interval)
        sampler.start()
        try:
            return process.wait(timeout=timeout + STARTUP_GRACE_S)
        except subprocess.TimeoutExpired:
            _stop_group(process)
            raise TimeoutError(f"locust did not finish within {timeout + STARTUP_GRACE_S:.0f} s;"
                               f" see {log_path}") from None
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
