"""Proof that a step's backlog is gone, for the Locust master to ask before its next step.

An overloaded step leaves work behind: requests queued in Gunicorn's backlog and in Nginx,
also those whose clients gave up, which the replicas still serve. A step started on top of it
measures the backlog, not its own rate (after one overloaded step, rates that passed before
fail). So the master waits until this probe, run by the matrix beside each trial, says the cell
is back at rest, measured against the cell's own idle baseline (matrix/measure/idle.py):

- the api containers' CPU (their cgroups, over the last second) is at most halfway between
  their idle CPU and their limit: a replica working off a backlog runs at its quota;
- the api containers' throttled periods per second are at most the idle rate plus a fifth of
  the periods: a backlog throttles every period;
- Nginx's requests in progress (stub_status reading + writing, which counts the requests waiting
  for a replica) are back at their idle level.

The replicas' own in-flight gauge is not asked: Prometheus scrapes it once a second or less, so
it lags the cgroups, which count every request a replica works on, whether its client is still
waiting or not. The probe answers GET /quiet on loopback with JSON (quiet, the figures and the
reasons); loadtest/drain.py is the master's side.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from matrix.measure.cgroups import CpuCounters, read_counters

# The CPU threshold: this share of the way from the idle CPU to the limit.
QUIET_CPU_SHARE = 0.5
# Throttled periods per second allowed above the idle rate, as a share of all periods
# (10 per second per replica at the default 100 ms CFS period).
QUIET_THROTTLED_SHARE = 0.2
CFS_PERIODS_PER_S = 10.0
# The CPU is judged over the last second, from samples this far apart.
WINDOW_S = 1.0
SAMPLE_INTERVAL_S = 0.25
KEPT_SAMPLES = 16


@dataclass(frozen=True)
class QuietReference:
    """What rest looks like for one cell: its idle baseline and its limit."""

    idle_cpu_cores: float
    idle_throttled_per_s: float
    limit_cores: float  # replicas x CPU limit
    replicas: int
    nginx_idle_busy: int | None  # stub_status reading + writing with no load (the probe's own)

    @property
    def max_cpu_cores(self) -> float:
        return self.idle_cpu_cores + QUIET_CPU_SHARE * max(
            0.0, self.limit_cores - self.idle_cpu_cores
        )

    @property
    def max_throttled_per_s(self) -> float:
        return self.idle_throttled_per_s + QUIET_THROTTLED_SHARE * CFS_PERIODS_PER_S * self.replicas


@dataclass(frozen=True)
class Quietness:
    quiet: bool
    api_cpu_cores: float | None
    throttled_per_s: float | None
    nginx_busy: int | None
    reasons: list[str] = field(default_factory=list)


def judge_quiet(
    reference: QuietReference,
    cpu_cores: float | None,
    throttled_per_s: float | None,
    nginx_busy: int | None,
) -> Quietness:
    """Whether the figures show the cell at rest, and if not, why."""
    reasons = []
    if cpu_cores is None:
        reasons.append("no api CPU counters yet")
    elif cpu_cores > reference.max_cpu_cores:
        reasons.append(f"api CPU {cpu_cores:.3f} cores > {reference.max_cpu_cores:.3f}")
    if throttled_per_s is not None and throttled_per_s > reference.max_throttled_per_s:
        reasons.append(
            f"throttled {throttled_per_s:.1f} periods/s > {reference.max_throttled_per_s:.1f}"
        )
    if (
        nginx_busy is not None
        and reference.nginx_idle_busy is not None
        and nginx_busy > reference.nginx_idle_busy
    ):
        reasons.append(f"Nginx has {nginx_busy - reference.nginx_idle_busy} requests in progress")
    return Quietness(not reasons, cpu_cores, throttled_per_s, nginx_busy, reasons)


def nginx_busy(status: Mapping[str, int] | None) -> int | None:
    """Requests Nginx is working on from a stub_status (reading + writing; the status request
    itself counts as one writing)."""
    return None if status is None else status["reading"] + status["writing"]


def _totals(dirs: Mapping[str, Path]) -> CpuCounters | None:
    counters = [c for c in (read_counters(d) for d in dirs.values()) if c is not None]
    if not counters:
        return None
    return CpuCounters(
        sum(c.usage_us for c in counters),
        sum(c.nr_periods for c in counters),
        sum(c.nr_throttled for c in counters),
        sum(c.throttled_us for c in counters),
    )


class DrainProbe:
    """Samples the api containers' counters every SAMPLE_INTERVAL_S and answers GET /quiet on a
    free loopback port while a trial runs (`url` once started)."""

    def __init__(
        self,
        reference: QuietReference,
        cgroup_dirs: Callable[[], Mapping[str, Path]],
        nginx_busy: Callable[[], int | None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reference = reference
        self.clock = clock  # the tests pass their own
        self.cgroup_dirs = cgroup_dirs
        self.nginx_busy = nginx_busy
        # The last few seconds of samples: more than the window needs.
        self._samples: collections.deque[tuple[float, CpuCounters]] = collections.deque(
            maxlen=KEPT_SAMPLES
        )
        self._dirs: Mapping[str, Path] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        assert self._server is not None, "the probe is not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/quiet"

    def sample(self) -> None:
        """Reads the api containers' counters once (the sampler thread's work)."""
        if not self._dirs:
            try:
                self._dirs = dict(self.cgroup_dirs())
            except Exception:  # noqa: BLE001 - an engine hiccup: ask again next time
                self._dirs = {}
        totals = _totals(self._dirs) if self._dirs else None
        if totals is None:
            self._dirs = {}  # the containers changed: find them again
            return
        with self._lock:
            self._samples.append((self.clock(), totals))

    def _sample_loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(SAMPLE_INTERVAL_S)

    def current(self) -> Quietness:
        """The cell's state over the last second (the counters), and Nginx's right now, which is
        asked only when the counters already show rest (it costs a `docker exec`)."""
        with self._lock:
            samples = list(self._samples)
        cpu = throttled = None
        if len(samples) >= 2:
            now, last = samples[-1]
            older = [s for s in samples if now - s[0] >= WINDOW_S - SAMPLE_INTERVAL_S / 2]
            then, first = older[-1] if older else samples[0]
            span = max(now - then, 1e-6)
            cpu = round((last.usage_us - first.usage_us) / 1e6 / span, 4)
            throttled = round((last.nr_throttled - first.nr_throttled) / span, 2)
        state = judge_quiet(self.reference, cpu, throttled, None)
        if not state.quiet:
            return state
        return judge_quiet(self.reference, cpu, throttled, self.nginx_busy())

    def start(self) -> DrainProbe:
        probe = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                if self.path.split("?")[0] != "/quiet":
                    self.send_error(404)
                    return
                body = json.dumps(asdict(probe.current())).encode("utf-8")
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return  # one request a second while a step drains: not worth a log line

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._threads = [
            threading.Thread(target=self._sample_loop, name="drain-sampler", daemon=True),
            threading.Thread(target=self._server.serve_forever, name="drain-probe", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
