"""A cell's idle baseline: what its api containers use with no load at all, measured after the
warm-up has drained and before the cell's first step.

An idle replica is not free (Prometheus scrapes it, the health probe execs in it): at a small
CPU limit that is a visible share of the quota. The report shows it apart from the demand per
request (which includes it), and the drain probe (matrix/measure/drain_probe.py) takes it as
the state a cell must be back in before the next step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from matrix.measure.cgroups import read_counters

# How long the baseline is measured; long enough to hold a few Prometheus scrapes and a health
# probe, short next to a trial.
IDLE_SECONDS = 5.0
# Before it: wait at most this long for the warm-up's last requests to finish, judged by the
# CPU over each half second falling below half the cell's limit.
SETTLE_TIMEOUT_S = 10.0
SETTLE_SHARE = 0.5
SETTLE_SLICE_S = 0.5


@dataclass(frozen=True)
class IdleBaseline:
    cpu_cores: float  # every api container together
    throttled_per_s: float  # throttled CFS periods per second, every api container together
    seconds: float
    containers: int
    settle_s: float  # how long the warm-up took to drain before the measurement
    nginx_busy: int | None  # Nginx's reading + writing connections at rest (its probe's own)


def _usage(dirs: Mapping[str, Path]) -> tuple[int, int, int]:
    """(CPU us, throttled periods, containers read) summed over the containers."""
    usage = throttled = read = 0
    for stat_dir in dirs.values():
        counters = read_counters(stat_dir)
        if counters is not None:
            usage += counters.usage_us
            throttled += counters.nr_throttled
            read += 1
    return usage, throttled, read


def measure_idle(
    cgroup_dirs: Callable[[], Mapping[str, Path]],
    limit_cores: float,
    nginx_busy: Callable[[], int | None],
    seconds: float = IDLE_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> IdleBaseline | None:
    """The api containers' CPU over `seconds` with no load; None when no cgroup is readable
    (e.g. the replicas run on other nodes)."""
    dirs = dict(cgroup_dirs())
    if not dirs or not _usage(dirs)[2]:
        return None
    began = clock()
    while clock() - began < SETTLE_TIMEOUT_S:
        (u0, _, _), t0 = _usage(dirs), clock()
        sleep(SETTLE_SLICE_S)
        (u1, _, _), t1 = _usage(dirs), clock()
        if (u1 - u0) / 1e6 / max(t1 - t0, 1e-6) <= SETTLE_SHARE * limit_cores:
            break
    settled = clock() - began
    (u0, th0, n0), t0 = _usage(dirs), clock()
    sleep(seconds)
    (u1, th1, n1), t1 = _usage(dirs), clock()
    if not n0 or n0 != n1:
        return None
    span = max(t1 - t0, 1e-6)
    return IdleBaseline(
        cpu_cores=round((u1 - u0) / 1e6 / span, 4),
        throttled_per_s=round((th1 - th0) / span, 2),
        seconds=round(span, 2),
        containers=n1,
        settle_s=round(settled, 2),
        nginx_busy=nginx_busy(),
    )
