"""How many CPUs this process may use, from the cgroup CPU quota (v1 and v2).

os.cpu_count() reports the host's cores, which overstates what a container limited with
`--cpus` / Swarm `limits.cpus` can use; too many workers then fight over the quota and add
latency. Pure functions over a root path so tests can fake /sys/fs/cgroup.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
# cgroup v1 mounts the cpu controller under one of these names depending on the distribution.
_V1_CPU_DIRS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _ratio(quota: str, period: str) -> float | None:
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:
        return None
    if quota_us <= 0 or period_us <= 0:  # -1 (v1) means no quota
        return None
    return quota_us / period_us


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs allowed by the cgroup quota, e.g. 1.5; None when there is no quota."""
    # v2: "<quota> <period>" or "max <period>".
    cpu_max = _read(root / "cpu.max")
    if cpu_max is not None:
        parts = cpu_max.split()
        if len(parts) == 2 and parts[0] != "max":
            return _ratio(parts[0], parts[1])
        return None
    # v1: the quota may sit in the root (inside a container) or under the controller folder.
    for folder in (root, *(root / name for name in _V1_CPU_DIRS)):
        quota = _read(folder / "cpu.cfs_quota_us")
        period = _read(folder / "cpu.cfs_period_us")
        if quota is not None and period is not None:
            return _ratio(quota, period)
    return None


def available_cpus() -> int:
    """CPUs this process may be scheduled on (affinity / cpuset), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_worker_count(root: Path = CGROUP_ROOT, cpus: int | None = None) -> int:
    """One worker per whole CPU the quota allows; one when the quota is below one CPU."""
    visible = cpus if cpus is not None else available_cpus()
    limit = cgroup_cpu_limit(root)
    if limit is None:
        return max(1, visible)
    # Rounded down: a worker on a fractional CPU only adds throttling and context switches.
    return max(1, min(visible, math.floor(limit)))
