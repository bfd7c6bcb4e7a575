"""What a reader needs to reproduce a run, or to tell why theirs differs: the images measured,
the kernel, the cgroup version and CFS period, the CPU, the Python and library versions, the
cores each part could use, and a host speed index measured at the start and at the end of the
run (matrix/README.md, "Reproducibility").

The speed index is the CPU one request costs the bare ASGI app of service/ceiling.py (the
server stack without the model: Gunicorn, one Uvicorn worker), pinned to one core, under a
short fixed paced load from service/benchmark.py (fixed seed, rate and length, the lowest of a
few rounds). A host that
got slower between the start and the end of a run (another tenant, thermal limits, a busy
neighbour on a shared machine) shows as a drift of the index; more than SPEED_DRIFT_LIMIT is
flagged in the report.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from matrix.config import PROJECT_ROOT
from service.benchmark import Target, paced
from stack.engine import DockerError, Engine

# The libraries whose versions the report lists (as installed in the host virtualenv; the
# images install the same pins from requirements/constraints.txt).
LIBRARIES = ("locust", "uvicorn", "gunicorn", "numpy", "scikit-learn")
# The speed index's fixed load: arrivals (Poisson, this seed) at this rate, for this long, over
# a few kept-alive connections, repeated; the index is the lowest round's figure, the one the
# rest of a shared machine disturbed least. (On the 2-core lab machine, busy with other work,
# single 1 s rounds at 1000 req/s gave 57-82 us and their minimum 57.5-58.7 us in two runs; at
# 200 req/s the rounds spread over 93-166 us and their minimum over 93-112.)
SPEED_RATE = 1000.0
SPEED_SECONDS = 1.0
SPEED_ROUNDS = 5
SPEED_CONNECTIONS = 4
SPEED_SEED = 18
SPEED_START_TIMEOUT_S = 30.0
# A run whose index moved more than this share between start and end is flagged.
SPEED_DRIFT_LIMIT = 0.10


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except OSError:
        return None


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    text = _read(cpuinfo) or ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Processor"):
            return value.strip()
    return None


def cgroup_version(root: Path = Path("/sys/fs/cgroup")) -> str:
    return "2" if (root / "cgroup.controllers").is_file() else "1"


def cfs_period_us(stat_dir: Path) -> int | None:
    """The CFS period of the cgroup whose cpu.stat lies in `stat_dir`: cpu.max's second field
    (v2) or cpu.cfs_period_us (v1)."""
    limit = _read(stat_dir / "cpu.max")
    if limit is not None and len(limit.split()) == 2:
        return int(limit.split()[1])
    period = _read(stat_dir / "cpu.cfs_period_us")
    return int(period) if period is not None and period.isdigit() else None


def cpuset(stat_dir: Path) -> str | None:
    """The cores a container's processes may run on: cpuset.cpus.effective in its cgroup (v2),
    or the same path under the cpuset controller (v1)."""
    found = _read(stat_dir / "cpuset.cpus.effective")
    if found is None:
        parts = list(stat_dir.parts)
        for controller in ("cpu,cpuacct", "cpu"):
            if controller in parts:
                parts[parts.index(controller)] = "cpuset"
                found = _read(Path(*parts) / "cpuset.effective_cpus") or _read(
                    Path(*parts) / "cpuset.cpus"
                )
                break
    return found or None


def cores_text(cores: set[int] | list[int]) -> str:
    """0,1,2,5 -> '0-2,5', as cpuset files write them."""
    ranges: list[list[int]] = []
    for core in sorted(cores):
        if ranges and core == ranges[-1][1] + 1:
            ranges[-1][1] = core
        else:
            ranges.append([core, core])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _first_cgroup(engine: Engine, service: str) -> Path | None:
    """One container's cgroup folder of the service; None when there is none on this host or
    the engine cannot say (the facts are a record, never a reason to stop the run)."""
    try:
        return next(iter(engine.cgroup_dirs(service).values()), None)
    except DockerError:
        return None


def host_facts(engine: Engine, stack: str) -> dict[str, Any]:
    """The facts of this host and stack as the run starts; any that cannot be read stay
    None."""
    api, nginx = f"{stack}_api", f"{stack}_nginx"
    api_dir, nginx_dir = _first_cgroup(engine, api), _first_cgroup(engine, nginx)
    return {
        "images": {name: engine.service_image(f"{stack}_{name}") for name in ("api", "nginx")},
        "kernel": platform.release(),
        "cgroup_version": cgroup_version(),
        "cpu_model": cpu_model(),
        "host_cores": os.cpu_count(),
        "cfs_period_us": cfs_period_us(api_dir) if api_dir else None,
        "versions": library_versions(),
        "cores": {
            "api": cpuset(api_dir) if api_dir else None,
            "nginx": cpuset(nginx_dir) if nginx_dir else None,
            "generator": cores_text(os.sched_getaffinity(0)),
        },
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def speed_index_us() -> float | None:
    """CPU-us per request of the bare ASGI app on one core under the fixed paced load; None
    when the server could not be started (the report then says so)."""
    port = _free_port()
    core = max(os.sched_getaffinity(0))
    env = {
        **os.environ,
        "PENGUIN_WORKERS": "1",
        "PENGUIN_BIND": f"127.0.0.1:{port}",
        "PENGUIN_ACCESS_LOG": "false",
    }
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    server = subprocess.Popen(
        [gunicorn, "-c", "service/gunicorn_conf.py", "service.ceiling:app"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: os.sched_setaffinity(0, {core}),  # noqa: PLW1509 - no threads yet
    )
    try:
        deadline = time.monotonic() + SPEED_START_TIMEOUT_S
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    return None
                time.sleep(0.2)
        target = Target("ceiling", server.pid, port, "/")
        rounds = [
            asyncio.run(
                paced(target, SPEED_RATE, SPEED_SECONDS, SPEED_CONNECTIONS, b"{}", SPEED_SEED)
            )
            for _ in range(SPEED_ROUNDS)
        ]
        figures = [w.cpu_ns / w.requests / 1000.0 for w in rounds if w.requests]
        return round(min(figures), 1) if figures else None
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def speed_drift(start: float | None, end: float | None) -> float | None:
    """How far the index moved over the run, as a share of the start's (positive: slower)."""
    if not start or end is None:
        return None
    return round((end - start) / start, 4)
