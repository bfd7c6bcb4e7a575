"""Everything the matrix asks of Docker: the api service's limits and replicas, convergence,
per-task CPU / memory samples, restarts, OOM kills and Nginx's stub_status."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

NANO = 1_000_000_000
NGINX_STATUS_URL = "http://127.0.0.1:8081/nginx_status"
_SIZE_UNITS = {"b": 1, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
               "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4}


class DockerError(RuntimeError):
    pass


def docker(*args: str, timeout: float = 60.0, check: bool = True) -> str:
    """Runs `docker args...` and returns stdout; raises DockerError with docker's own message."""
    try:
        result = subprocess.run(["docker", *args], capture_output=True, text=True,
                                timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        command = " ".join(args)
        raise DockerError(f"`docker {command}` did not finish within {timeout:g} s") from None
    except FileNotFoundError:
        raise DockerError("the docker command is not installed") from None
    if check and result.returncode != 0:
        message = (result.stderr or result.stdout).strip()
        raise DockerError(f"`docker {' '.join(args)}` failed: {message}")
    return result.stdout


@dataclass(frozen=True)
class ServiceResources:
    """What the matrix changes on the api service, recorded to put it back afterwards."""

    replicas: int
    limit_nano_cpus: int
    limit_memory_bytes: int
    reserve_nano_cpus: int
    reserve_memory_bytes: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def service_resources(service: str) -> ServiceResources:
    spec = json.loads(docker("service", "inspect", service, "--format", "{{json .Spec}}"))
    resources = (spec.get("TaskTemplate") or {}).get("Resources") or {}
    limits = resources.get("Limits") or {}
    reservations = resources.get("Reservations") or {}
    replicated = (spec.get("Mode") or {}).get("Replicated")
    if replicated is None:
        raise DockerError(f"service {service} is not in replicated mode")
    return ServiceResources(
        replicas=int(replicated.get("Replicas", 1)),
        limit_nano_cpus=int(limits.get("NanoCPUs", 0)),
        limit_memory_bytes=int(limits.get("MemoryBytes", 0)),
        reserve_nano_cpus=int(reservations.get("NanoCPUs", 0)),
        reserve_memory_bytes=int(reservations.get("MemoryBytes", 0)),
    )


# While measuring, replace tasks all at once without a monitor period: the stack's careful
# rolling update (start-first, one at a time, 15 s monitor) would cost a minute per cell, and a
# gap in capacity while reconfiguring does not matter because the matrix waits for convergence.
FAST_UPDATE_FLAGS = ("--update-parallelism", "0", "--update-delay", "0s", "--update-order",
                     "stop-first", "--update-monitor", "1s", "--update-failure-action", "pause")


def update_config(service: str) -> dict[str, object]:
    """The service's UpdateConfig, to put back after the matrix changed it."""
    spec = json.loads(docker("service", "inspect", service, "--format", "{{json .Spec}}"))
    return dict(spec.get("UpdateConfig") or {})


def update_config_flags(config: dict[str, object]) -> list[str]:
    """`docker service update` flags that reproduce an UpdateConfig from `service inspect`."""
    flags = ["--update-parallelism", str(config.get("Parallelism", 1)),
             "--update-delay", f"{int(config.get('Delay', 0)) // 1_000_000}ms",  # type: ignore[call-overload]
             "--update-monitor", f"{int(config.get('Monitor', 5 * NANO)) // 1_000_000}ms",  # type: ignore[call-overload]
             "--update-order", str(config.get("Order", "stop-first")),
             "--update-failure-action", str(config.get("FailureAction", "pause")),
             "--update-max-failure-ratio", str(config.get("MaxFailureRatio", 0))]
    return flags


def set_update_config(service: str, config: dict[str, object], timeout: float = 60.0) -> None:
    docker("service", "update", "--detach=true", "--quiet", *update_config_flags(config), service,
           timeout=timeout)


def update_service(service: str, wanted: ServiceResources, timeout: float) -> None:
    """Applies replicas, limits and reservations and waits (--detach=false) for convergence.

    Zero means "no limit" for docker, which is also what restoring an unlimited service needs.
    Raises DockerError when Swarm rolled the change back instead of applying it.
    """
    docker(
        "service", "update", "--detach=false", "--quiet", *FAST_UPDATE_FLAGS,
        "--replicas", str(wanted.replicas),
        "--limit-cpu", f"{wanted.limit_nano_cpus / NANO:.9f}".rstrip("0").rstrip("."),
        "--limit-memory", str(wanted.limit_memory_bytes),
        "--reserve-cpu", f"{wanted.reserve_nano_cpus / NANO:.9f}".rstrip("0").rstrip("."),
        "--reserve-memory", str(wanted.reserve_memory_bytes),
        service,
        timeout=timeout,
    )
    applied = service_resources(service)
    if applied != wanted:
        raise DockerError(f"{service} did not take the new settings (Swarm rolled back?): "
                          f"wanted {wanted.as_dict()}, has {applied.as_dict()}")


def node_capacity() -> tuple[int, int]:
    """(NanoCPUs, MemoryBytes) of this Swarm node."""
    info = json.loads(docker("node", "inspect", "self", "--format",
                             "{{json .Description.Resources}}"))
    return int(info["NanoCPUs"]), int(info["MemoryBytes"])


def reserved_by_others(exclude: str) -> tuple[int, int]:
    """(NanoCPUs, MemoryBytes) reserved by every other service's running tasks."""
    ids = docker("service", "ls", "-q").split()
    if not ids:
        return 0, 0
    cpus = memory = 0
    for spec in json.loads(docker("service", "inspect", *ids)):
        if spec["Spec"]["Name"] == exclude:
            continue
        replicated = (spec["Spec"].get("Mode") or {}).get("Replicated") or {}
        count = int(replicated.get("Replicas", 1))
        reservations = ((spec["Spec"].get("TaskTemplate") or {}).get("Resources") or {}).get(
            "Reservations") or {}
        cpus += count * int(reservations.get("NanoCPUs", 0))
        memory += count * int(reservations.get("MemoryBytes", 0))
    return cpus, memory


def running_containers(service: str) -> list[str]:
    out = docker("ps", "-q", "--no-trunc", "--filter",
                 f"label=com.docker.swarm.service.name={service}")
    return out.split()


def all_containers(service: str) -> list[str]:
    out = docker("ps", "-aq", "--no-trunc", "--filter",
                 f"label=com.docker.swarm.service.name={service}")
    return out.split()


def tasks_converged(service: str, replicas: int) -> tuple[bool, str]:
    """Whether exactly `replicas` tasks run and none of their containers is still unhealthy."""
    states = docker("service", "ps", service, "--filter", "desired-state=running",
                    "--format", "{{.CurrentState}}").splitlines()
    running = [s for s in states if s.startswith("Running")]
    if len(running) != replicas or len(states) != replicas:
        return False, f"{len(running)}/{replicas} tasks running"
    statuses = docker("ps", "--filter", f"label=com.docker.swarm.service.name={service}",
                      "--format", "{{.Status}}").splitlines()
    waiting = [s for s in statuses if "health: starting" in s or "unhealthy" in s]
    if waiting or len(statuses) != replicas:
        return False, f"{len(statuses) - len(waiting)}/{replicas} containers healthy"
    return True, f"{replicas}/{replicas} tasks running and healthy"


def task_ids(service: str) -> set[str]:
    return set(docker("service", "ps", service, "-q", "--no-trunc").split())


def oom_killed(container_ids: list[str]) -> list[str]:
    if not container_ids:
        return []
    out = docker("inspect", "--format", "{{.Id}} {{.State.OOMKilled}}", *container_ids, check=False)
    return [line.split()[0] for line in out.splitlines() if line.endswith(" true")]


def container_for_service(service: str) -> str | None:
    ids = running_containers(service)
    return ids[0] if ids else None


def parse_stub_status(text: str) -> dict[str, int]:
    """Nginx stub_status text -> counters (active, accepts, handled, requests, reading, ...)."""
    numbers = [int(n) for n in re.findall(r"\d+", text)]
    if len(numbers) < 7 or "Active connections" not in text:
        raise ValueError(f"not an nginx stub_status page: {text[:120]!r}")
    keys = ("active", "accepts", "handled", "requests", "reading", "writing", "waiting")
    return dict(zip(keys, numbers[:7], strict=True))


def nginx_status(service: str) -> dict[str, int] | None:
    """Nginx's counters from inside its container; None when they cannot be read."""
    container = container_for_service(service)
    if container is None:
        return None
    try:
        text = docker("exec", container, "curl", "-s", "--max-time", "5", NGINX_STATUS_URL,
                      timeout=15)
        return parse_stub_status(text)
    except (DockerError, ValueError):
        return None


def parse_size(text: str) -> int:
    """'12.5MiB' -> bytes, as docker stats prints sizes."""
    match = re.match(r"^\s*([\d.]+)\s*([a-zA-Z]*)\s*$", text)
    if not match:
        raise ValueError(f"not a size: {text!r}")
    return int(float(match.group(1)) * _SIZE_UNITS.get(match.group(2).lower() or "b", 1))


class DockerStatsSampler(threading.Thread):
    """Polls `docker stats --no-stream` for the service's running tasks into a CSV until stopped.

    Each poll takes about a second or two on its own, which is the sampling resolution."""

    FIELDS = ("timestamp", "container", "name", "cpu_percent", "mem_bytes", "mem_limit_bytes")

    def __init__(self, service: str, output: Path, interval: float) -> None:
        super().__init__(name=f"docker-stats-{service}", daemon=True)
        self.service = service
        self.output = output
        self.interval = interval
        self._stop_event = threading.Event()
        self.errors: list[str] = []

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=30)

    def run(self) -> None:
        with self.output.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(self.FIELDS)
            while not self._stop_event.is_set():
                started = time.monotonic()
                try:
                    for row in self._sample():
                        writer.writerow(row)
                    handle.flush()
                except (DockerError, ValueError) as error:
                    self.errors.append(str(error))
                self._stop_event.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def _sample(self) -> list[tuple[object, ...]]:
        ids = running_containers(self.service)
        if not ids:
            return []
        out = docker("stats", "--no-stream", "--format", "{{json .}}", *ids, timeout=30)
        now = time.time()
        rows = []
        for line in out.splitlines():
            record = json.loads(line)
            used, _, limit = record["MemUsage"].partition("/")
            rows.append((round(now, 3), record["ID"], record["Name"],
                         float(record["CPUPerc"].rstrip("%") or 0), parse_size(used),
                         parse_size(limit)))
        return rows
