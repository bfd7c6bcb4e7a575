"""CPU counters of containers read straight from their cgroups on the host: CPU time used and
CFS quota throttling (periods, throttled periods, throttled time).

`docker stats` samples CPU every second or two and says nothing of throttling; the cgroup
counters are exact and cumulative, so the difference between two samples covers precisely the
time in between. A replica limited to 0.25 CPU may run only 25 ms of every 100 ms period: a
burst of requests that needs more is paused until the next period, which shows as p95 latency
even at rates the replica sustains on average. These counters make that visible.

Both cgroup layouts are read: v2 (cpu.stat has usage_usec, throttled_usec) and v1 (cpu.stat in
the cpu controller has throttled_time in ns; usage is cpuacct.usage in ns). Where a container's
cgroup lives is the engine client's business (stack.engine.cgroup_candidates).
"""

from __future__ import annotations

import csv
import itertools
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

FIELDS = ("timestamp", "container", "usage_us", "nr_periods", "nr_throttled", "throttled_us")


@dataclass(frozen=True)
class CpuCounters:
    usage_us: int
    nr_periods: int
    nr_throttled: int
    throttled_us: int


def _stat(path: Path) -> dict[str, int]:
    values: dict[str, int] = {}
    for line in path.read_text(encoding="ascii").splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            values[key] = int(value)
    return values


def _usage_file(stat_dir: Path) -> Path:
    """cgroup v1 keeps CPU time in the cpuacct controller: the same folder where cpu and
    cpuacct are mounted together, else the same path under the cpuacct mount."""
    here = stat_dir / "cpuacct.usage"
    if here.is_file():
        return here
    parts = list(stat_dir.parts)
    if "cpu" in parts:
        parts[parts.index("cpu")] = "cpuacct"
    return Path(*parts) / "cpuacct.usage"


def read_counters(stat_dir: Path) -> CpuCounters | None:
    """The counters of the cgroup whose cpu.stat lies in `stat_dir` (Engine.cgroup_dirs finds
    it); None when it is gone (the container stopped)."""
    try:
        stat = _stat(stat_dir / "cpu.stat")
        if "usage_usec" in stat:  # cgroup v2
            return CpuCounters(
                stat["usage_usec"],
                stat.get("nr_periods", 0),
                stat.get("nr_throttled", 0),
                stat.get("throttled_usec", 0),
            )
        usage_ns = int(_usage_file(stat_dir).read_text(encoding="ascii"))
        return CpuCounters(
            usage_ns // 1000,
            stat.get("nr_periods", 0),
            stat.get("nr_throttled", 0),
            stat.get("throttled_time", 0) // 1000,
        )
    except (OSError, ValueError):
        return None


class CgroupSampler(threading.Thread):
    """Writes every container's counters to a CSV every `interval` s until stopped; the
    containers' cgroup folders are asked for again every `refresh` s, so replaced tasks are
    followed."""

    def __init__(
        self,
        cgroup_dirs: Callable[[], Mapping[str, Path]],
        output: Path,
        interval: float = 0.5,
        refresh: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(name="cgroup-sampler", daemon=True)
        self.cgroup_dirs = cgroup_dirs
        self.output = output
        self.interval = interval
        self.refresh = refresh
        # Each sample's timestamp (wall-clock seconds, compared with the steps' times); the
        # tests pass one of their own.
        self.clock = clock
        self.errors: list[str] = []
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)

    def run(self) -> None:
        dirs: Mapping[str, Path] = {}
        listed = 0.0
        with self.output.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(FIELDS)
            while True:
                now = time.monotonic()
                if now - listed >= self.refresh:
                    try:
                        dirs = dict(self.cgroup_dirs())
                    except Exception as error:  # noqa: BLE001 - keep sampling what we had
                        self.errors.append(str(error))
                    listed = now
                stamp = round(self.clock(), 3)
                for container, stat_dir in dirs.items():
                    counters = read_counters(stat_dir)
                    if counters is not None:
                        writer.writerow(
                            (
                                stamp,
                                container,
                                counters.usage_us,
                                counters.nr_periods,
                                counters.nr_throttled,
                                counters.throttled_us,
                            )
                        )
                handle.flush()
                if self._stop_event.wait(self.interval):
                    return


@dataclass(frozen=True)
class WindowCpu:
    """CPU and throttling of all containers over one time window."""

    cpu_cores: float  # CPU time used per second, all containers together
    throttled_share: float | None  # throttled periods / periods, all containers together
    throttled_ms_per_s: float  # throttled time per second, per container
    containers: int


def read_samples(path: Path) -> dict[str, list[tuple[float, CpuCounters]]]:
    """Samples per container, oldest first."""
    samples: dict[str, list[tuple[float, CpuCounters]]] = {}
    if not path.is_file():
        return samples
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            samples.setdefault(row["container"], []).append(
                (
                    float(row["timestamp"]),
                    CpuCounters(
                        int(row["usage_us"]),
                        int(row["nr_periods"]),
                        int(row["nr_throttled"]),
                        int(row["throttled_us"]),
                    ),
                )
            )
    return samples


def interpolate(points: Sequence[tuple[float, float]], at: float) -> float | None:
    """A cumulative counter's value at instant `at`, interpolated linearly between the samples
    (time, value) around it, oldest first; None when `at` lies outside them."""
    for (t0, v0), (t1, v1) in itertools.pairwise(points):
        if t0 <= at <= t1:
            return v1 if t1 <= t0 else v0 + (v1 - v0) * (at - t0) / (t1 - t0)
    return None


def window_usage_us(
    samples: Mapping[str, list[tuple[float, CpuCounters]]], start: float, end: float
) -> tuple[float, int] | None:
    """CPU time (us) every container used over exactly [start, end], and how many containers
    counted: each cumulative counter is interpolated at both ends between the samples around
    them, so the window is the step's own, not the nearest samples'. A container sampled over
    only part of the window (started or replaced meanwhile) counts for the part it covers;
    None when no container has samples around the window."""
    total = 0.0
    counted = 0
    for series in samples.values():
        if len(series) < 2 or series[-1][0] < start or series[0][0] > end:
            continue
        usage = [(t, float(c.usage_us)) for t, c in series]
        first = interpolate(usage, max(start, series[0][0]))
        last = interpolate(usage, min(end, series[-1][0]))
        if first is None or last is None:
            continue
        total += last - first
        counted += 1
    return (total, counted) if counted else None


def window_cpu(
    samples: dict[str, list[tuple[float, CpuCounters]]], start: float, end: float
) -> WindowCpu | None:
    """Counter differences between the first and last sample inside [start, end] per container,
    scaled to that span; None when no container has two samples there."""
    usage = periods = throttled = 0.0
    throttled_time = 0.0
    counted = 0
    for series in samples.values():
        inside = [(t, c) for t, c in series if start <= t <= end]
        if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
            continue
        (t0, first), (t1, last) = inside[0], inside[-1]
        span = t1 - t0
        usage += (last.usage_us - first.usage_us) / 1e6 / span
        periods += last.nr_periods - first.nr_periods
        throttled += last.nr_throttled - first.nr_throttled
        throttled_time += (last.throttled_us - first.throttled_us) / 1000.0 / span
        counted += 1
    if not counted:
        return None
    return WindowCpu(
        cpu_cores=round(usage, 4),
        throttled_share=round(throttled / periods, 4) if periods else None,
        throttled_ms_per_s=round(throttled_time / counted, 2),
        containers=counted,
    )
