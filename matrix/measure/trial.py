"""One trial of one cell: a Locust run of the matrix's profile against the deployed cell, with
the load generator's CPU and the api containers' cgroup counters sampled alongside, turned into
a typed TrialRecord. Every raw file stays in the trial's folder, so the record can be rebuilt."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from matrix.analyse.records import StepRecord, TrialRecord
from matrix.config import OPEN_PROFILE_TYPES, MatrixFile
from matrix.measure.cgroups import CgroupSampler, read_samples
from matrix.measure.loadgen import (
    CSV_PREFIX,
    LOADGEN_CPU_FILE,
    STEP_LOG,
    TrialRun,
    locust_command,
    profile_arguments,
    run_locust,
    target_arguments,
)
from matrix.measure.measurements import (
    HostWindows,
    closed_step,
    open_objective,
    open_steps,
    read_cpu_samples,
    read_history,
    read_request_counts,
    read_step_events,
    workshop_trial,
)

CGROUP_FILE = "cgroup_cpu.csv"
CGROUP_SAMPLE_INTERVAL_S = 0.5


class TrialError(RuntimeError):
    """A trial that produced nothing to analyse."""


class StepWatcher:
    """Prints each step as the Locust master logs it: progress on a long search."""

    def __init__(self, path: Path, say: Callable[[str], None]) -> None:
        self.path = path
        self.say = say
        self.offset = 0  # bytes already read: the log only grows

    def poll(self) -> None:
        if not self.path.is_file():
            return
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a last line still being written waits
        self.offset += len(complete)
        for line in complete.decode("utf-8").splitlines():
            event = json.loads(line)
            if event.get("event") == "step" and "histogram" in event:
                verdict = "pass" if event.get("passed") else "; ".join(event.get("reasons", []))
                self.say(
                    f"step {event['index']}: offered {event['rate']:g} req/s, served "
                    f"{event['throughput_rps']:.0f}, p95 {event.get('p95')} ms: {verdict}"
                )
            elif event.get("event") == "end" and "outcome" in event:
                self.say(f"search over ({event['outcome']})")


def run_trial(run: TrialRun) -> TrialRecord:
    """One trial from the host virtualenv's Locust against Nginx (the settings' base URL)."""
    matrix, out = run.matrix, run.out
    out.mkdir(parents=True, exist_ok=True)
    profile = matrix.profile
    command = locust_command(
        run.settings.base_url,
        out,
        profile_arguments(matrix) + target_arguments(matrix, out),
        matrix.load_generator,
        profile.duration_seconds(),
    )
    (out / "locust_command.txt").write_text(" ".join(command) + "\n", encoding="utf-8")
    sampler = CgroupSampler(run.cgroup_dirs, out / CGROUP_FILE, CGROUP_SAMPLE_INTERVAL_S)
    watcher = StepWatcher(out / STEP_LOG, run.say)
    sampler.start()
    try:
        exit_code = run_locust(
            command,
            out,
            profile.duration_seconds(),
            run.settings.loadgen_sample_interval,
            on_tick=watcher.poll,
        )
    finally:
        sampler.stop()
    watcher.poll()
    return analyse_trial(matrix, out, run.trial, exit_code)


def analyse_trial(matrix: MatrixFile, out: Path, trial: int, exit_code: int | None) -> TrialRecord:
    """The trial's record from its raw files."""
    generator = matrix.load_generator
    processes = generator.workers if generator.where == "stack" else generator.processes
    host = HostWindows(
        read_cpu_samples(out / LOADGEN_CPU_FILE),
        read_samples(out / CGROUP_FILE),
        float(min(processes, os.cpu_count() or 1)),
        generator.saturation,
    )
    events = read_step_events(out / STEP_LOG)
    stats_path = out / f"{CSV_PREFIX}_stats.csv"
    counts = read_request_counts(stats_path) if stats_path.is_file() else {}
    requests, failures = counts.get("Aggregated", (0, 0))
    objective = open_objective(matrix)

    def record(model: str, outcome: str, steps: list[StepRecord], **extra: Any) -> TrialRecord:
        return TrialRecord(
            trial=trial,
            model=model,
            outcome=outcome,
            steps=steps,
            locust_exit_code=exit_code,
            requests=requests,
            failures=failures,
            **extra,
        )

    if isinstance(matrix.profile, OPEN_PROFILE_TYPES):
        steps, outcome, knee = open_steps(events, objective, host)
        if not steps:
            raise TrialError(f"locust recorded no step; see {out / 'locust.log'}")
        return record("open", outcome, steps, knee_index=knee)
    workshop = workshop_trial(events, objective, host)
    if workshop is not None:
        step = workshop.step
        return record(
            "closed",
            "held" if workshop.ramp_complete else "ramp incomplete",
            [step],
            knee_index=0 if step.passed else None,
            timeline=workshop.timeline,
            where=generator.where,
        )
    history_path = out / f"{CSV_PREFIX}_stats_history.csv"
    closed = closed_step(
        read_history(history_path) if history_path.is_file() else [], events, objective, host
    )
    if closed is None:
        raise TrialError(f"locust wrote no statistics; see {out / 'locust.log'}")
    return record(
        "closed",
        "held",
        [closed],
        knee_index=0 if closed.passed else None,
        where=generator.where,
    )
