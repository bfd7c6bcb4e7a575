"""Runs one trial on the stack's own Locust (load_generator.where: stack): scales the
locust-worker service, starts the profile through the master's HTTP API (the same POST /swarm
the web UI sends, so the run shows live at :8089), follows it, and collects into the trial's
folder what a host run leaves there: the step log, Locust's CSV statistics, a per-second
history, and the generators' CPU (the workers report their own to the master)."""

from __future__ import annotations

import base64
import csv
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import psutil

from matrix.analyse.records import TrialRecord
from matrix.config import MatrixFile, WorkshopProfile
from matrix.measure.cgroups import CgroupSampler
from matrix.measure.loadgen import (
    CSV_PREFIX,
    LOADGEN_CPU_FILE,
    STARTUP_GRACE_S,
    STEP_LOG,
    TrialRun,
)
from stack.engine import Engine
from stack.waits import WaitTimeout, wait_until

HTTP_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 1.0
WORKERS_TIMEOUT_S = 90.0
# After the shape ends, the workers send their last per-second windows.
FINAL_WINDOWS_S = 3.0
HISTORY_FIELDS = (
    "Timestamp",
    "User Count",
    "Type",
    "Name",
    "Requests/s",
    "Failures/s",
    "50%",
    "95%",
    "Total Request Count",
    "Total Failure Count",
)
STOPPED_STATES = ("stopped", "ready")


class StackLocustError(RuntimeError):
    pass


class LocustMaster:
    """The master's HTTP API (what the web UI calls), with the stack's login when it has one."""

    def __init__(self, url: str, auth: tuple[str, str] | None = None) -> None:
        self.url = url.rstrip("/")
        self.headers: dict[str, str] = {}
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
            self.headers["Authorization"] = f"Basic {token}"

    def _open(self, path: str, form: Mapping[str, str] | None = None) -> tuple[bytes, Any]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(self.url + path, data=data, headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
                return response.read(), response.headers
        except urllib.error.HTTPError as error:
            hint = " (the stack's Locust login: see stack/README.md)" if error.code == 401 else ""
            raise StackLocustError(
                f"Locust master {self.url}{path}: HTTP {error.code}{hint}"
            ) from None
        except OSError as error:
            raise StackLocustError(f"Locust master {self.url}{path}: {error}") from None

    def stats(self) -> dict[str, Any]:
        body, _ = self._open("/stats/requests")
        data: dict[str, Any] = json.loads(body)
        return data

    def text(self, path: str) -> str:
        return self._open(path)[0].decode("utf-8")

    def steps(self, offset: int) -> tuple[list[str], int]:
        body, headers = self._open(f"/penguin/steps?offset={offset}")
        lines = [line for line in body.decode("utf-8").splitlines() if line.strip()]
        return lines, int(headers.get("X-Step-Log-Next-Offset", offset + len(lines)))

    def start(self, form: Mapping[str, str]) -> None:
        body, _ = self._open("/swarm", form)
        answer = json.loads(body)
        if not answer.get("success", False):
            raise StackLocustError(f"Locust master refused the run: {answer.get('message')}")

    def reset(self) -> None:
        self._open("/stats/reset", {})

    def stop(self) -> None:
        self._open("/stop", {})


def swarm_form(matrix: MatrixFile, target_url: str) -> dict[str, str]:
    """The POST /swarm form of a matrix's closed-model profile: Locust's fields plus the
    locustfile's own options (the names its web UI form uses)."""
    profile = matrix.profile
    generator = matrix.load_generator
    if not isinstance(profile, WorkshopProfile):
        raise StackLocustError(
            f"the stack's Locust runs the workshop profile here, not {profile.kind}"
        )
    return {
        "user_count": str(profile.users),
        "spawn_rate": f"{profile.spawn_rate:g}",
        "host": target_url,
        "load_profile": "workshop",
        "workshop_users": str(profile.users),
        "workshop_spawn_rate": f"{profile.spawn_rate:g}",
        "hold_seconds": f"{profile.hold_seconds:g}",
        "think_min": f"{profile.think_time[0]:g}",
        "think_max": f"{profile.think_time[1]:g}",
        "request_timeout": f"{profile.request_timeout_seconds:g}",
        "model_mix": generator.model_mix,
        "body": generator.body,
        "batch_weight": str(generator.batch_weight),
        # A user's own locustfile (load_generator.locustfile): spawn its users, not ours.
        "external_users": "true" if generator.locustfile is not None else "false",
    }


def _wait_for_workers(master: LocustMaster, workers: int) -> None:
    def check() -> tuple[bool, str]:
        try:
            stats = master.stats()
        except StackLocustError as error:
            return False, str(error)
        count = int(stats.get("worker_count", 0))
        state = str(stats.get("state"))
        return (
            count == workers and state in ("ready", "stopped"),
            f"{count}/{workers} workers connected, master {state}",
        )

    try:
        wait_until(check, WORKERS_TIMEOUT_S, POLL_INTERVAL_S)
    except WaitTimeout as error:
        raise StackLocustError(
            f"the stack's Locust master did not get {workers} idle workers "
            f"within {WORKERS_TIMEOUT_S:g} s ({error})"
        ) from None


class _Follower:
    """Appends the master's step log and one history / CPU row per poll to the trial folder."""

    def __init__(self, master: LocustMaster, out: Path) -> None:
        self.master = master
        self.offset = 0
        self.ended = False
        self.state = "?"
        self.steps = (out / STEP_LOG).open("a", encoding="utf-8")
        self.history = (out / f"{CSV_PREFIX}_stats_history.csv").open(
            "w", newline="", encoding="utf-8"
        )
        self.history_writer = csv.writer(self.history)
        self.history_writer.writerow(HISTORY_FIELDS)
        self.cpu = (out / LOADGEN_CPU_FILE).open("w", newline="", encoding="utf-8")
        self.cpu_writer = csv.writer(self.cpu)
        self.cpu_writer.writerow(
            ("timestamp", "total_percent", "max_process_percent", "host_percent", "processes")
        )
        psutil.cpu_percent(None)

    def poll(self) -> None:
        lines, self.offset = self.master.steps(self.offset)
        for line in lines:
            self.steps.write(line + "\n")
            if json.loads(line).get("event") == "end":
                self.ended = True
        self.steps.flush()
        stats = self.master.stats()
        self.state = str(stats.get("state"))
        now = round(time.time(), 3)
        total: dict[str, Any] = next(
            (s for s in stats.get("stats", []) if s.get("name") == "Aggregated"), {}
        )
        percentiles = stats.get("current_response_time_percentiles") or {}
        self.history_writer.writerow(
            (
                int(now),
                stats.get("user_count", 0),
                "",
                "Aggregated",
                total.get("current_rps", 0.0),
                total.get("current_fail_per_sec", 0.0),
                percentiles.get("response_time_percentile_0.5") or "N/A",
                percentiles.get("response_time_percentile_0.95") or "N/A",
                total.get("num_requests", 0),
                total.get("num_failures", 0),
            )
        )
        self.history.flush()
        usage = [float(w.get("cpu_usage", 0.0)) for w in stats.get("workers", [])]
        if usage:
            self.cpu_writer.writerow(
                (
                    now,
                    round(sum(usage), 2),
                    round(max(usage), 2),
                    psutil.cpu_percent(None),
                    len(usage),
                )
            )
            self.cpu.flush()

    def close(self) -> None:
        for handle in (self.steps, self.history, self.cpu):
            handle.close()


def run_stack_trial(
    run: TrialRun,
    engine: Engine,
    master: LocustMaster,
    on_tick: Callable[[], None],
    analyse: Callable[[MatrixFile, Path, int, int | None], TrialRecord],
) -> TrialRecord:
    """One trial on the stack's Locust; `analyse` turns the folder into the record (the same
    analysis as a host run's)."""
    from matrix.measure.trial import CGROUP_FILE, CGROUP_SAMPLE_INTERVAL_S

    matrix, settings, out, say = run.matrix, run.settings, run.out, run.say
    out.mkdir(parents=True, exist_ok=True)
    generator = matrix.load_generator
    workers_service = f"{settings.stack_name}_locust-worker"
    say(f"scaling {workers_service} to {generator.workers}")
    engine.scale_service(workers_service, generator.workers, matrix.converge_timeout_seconds)
    _wait_for_workers(master, generator.workers)
    form = swarm_form(matrix, settings.stack_target_url)
    (out / "locust_command.txt").write_text(
        f"POST {master.url}/swarm {json.dumps(form, sort_keys=True)}\n", encoding="utf-8"
    )
    sampler = CgroupSampler(run.cgroup_dirs, out / CGROUP_FILE, CGROUP_SAMPLE_INTERVAL_S)
    follower = _Follower(master, out)
    deadline = time.monotonic() + matrix.profile.duration_seconds() + STARTUP_GRACE_S
    sampler.start()
    finished = False
    try:
        master.reset()
        master.start(form)
        say(
            f"started on the stack's Locust ({generator.workers} workers): watch it live at "
            f"{master.url}"
        )
        while True:
            time.sleep(POLL_INTERVAL_S)
            follower.poll()
            on_tick()
            if follower.ended or (
                follower.state in STOPPED_STATES and time.monotonic() > deadline - STARTUP_GRACE_S
            ):
                break
            if time.monotonic() > deadline:
                raise StackLocustError(
                    f"the stack's Locust run did not end within "
                    f"{matrix.profile.duration_seconds() + STARTUP_GRACE_S:.0f}"
                    " s"
                )
        time.sleep(FINAL_WINDOWS_S)
        follower.poll()
        finished = True
    finally:
        if not finished:
            try:
                master.stop()
            except StackLocustError as error:
                say(f"could not stop the stack's Locust run: {error}")
        sampler.stop()
        follower.close()
    (out / f"{CSV_PREFIX}_stats.csv").write_text(
        master.text("/stats/requests/csv"), encoding="utf-8"
    )
    (out / f"{CSV_PREFIX}_failures.csv").write_text(
        master.text("/stats/failures/csv"), encoding="utf-8"
    )
    return analyse(matrix, out, run.trial, None)
