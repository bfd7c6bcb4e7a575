"""Everything the matrix asks of Docker, behind one seam: `Engine` says what is asked,
`DockerEngine` answers it through the Docker SDK for Python (the Engine API, no CLI output to
parse), and the tests pass a fake with the same methods."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import docker
import docker.errors
import requests

from stack import service_spec
from stack.waits import WaitTimeout, wait_until

NANO = 1_000_000_000
NGINX_STATUS_URL = "http://127.0.0.1:8081/nginx_status"
SERVICE_LABEL = "com.docker.swarm.service.name"
STACK_LABEL = "com.docker.stack.namespace"
# The image ID stack_up.sh puts on each service's containers (a rebuilt local image rolls them).
IMAGE_ID_LABEL = "com.penguin-lab.image-id"
# Written by nginx/entrypoint.sh: one `server ... max_fails=...;` line per api replica.
NGINX_UPSTREAMS_FILE = "/run/penguin-nginx/upstream-servers.conf"
CGROUP_ROOT = Path("/sys/fs/cgroup")
# Seconds any single Engine API call may take; `docker stats` style samples take one or two.
API_TIMEOUT_S = 60.0
UPDATE_POLL_INTERVAL_S = 1.0
# While measuring, replace tasks all at once without a monitor period: the stack's careful
# rolling update (start-first, one at a time, 15 s monitor) would cost a minute per cell, and a
# gap in capacity while reconfiguring does not matter because the matrix waits for convergence.
FAST_UPDATE_CONFIG: dict[str, Any] = {
    "Parallelism": 0,
    "Delay": 0,
    "Order": "stop-first",
    "Monitor": NANO,
    "FailureAction": "pause",
}
# UpdateStatus states after which Swarm will not go on by itself (the CLI's --detach=false
# reports them as errors too).
_STUCK_UPDATE_STATES = ("paused", "rollback_paused", "rollback_completed")


class DockerError(RuntimeError):
    pass


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


@dataclass(frozen=True)
class ContainerStats:
    """One `docker stats`-like sample of a container: CPU in % of one core, memory in bytes."""

    container: str  # short id, as `docker stats` prints it
    name: str
    cpu_percent: float
    mem_bytes: int
    mem_limit_bytes: int


@dataclass(frozen=True)
class ServiceState:
    """Where one service of a stack stands: running against desired tasks, the update in flight
    (None when there was none) and the tasks that should run but do not."""

    name: str
    running: int
    desired: int
    update_state: str | None
    pending_tasks: tuple[str, ...]


@dataclass(frozen=True)
class ContainerState:
    """A plain container's state (the target's smoke container): running or exited with its
    code, its main process on the host, and its address on the default bridge."""

    running: bool
    exit_code: int
    pid: int
    address: str


# The ContainerSpec fields a target (matrix/config.py TargetSpec) replaces on the api service.
CONTAINER_FIELDS = ("Image", "Env", "Healthcheck")


@dataclass(frozen=True)
class TaskPlacement:
    """Where one running task of a service is: its Swarm task id and its node's hostname."""

    task: str
    node: str


ENDED_TASKS_SHOWN = 3


def _task_line(service: str, task: Mapping[str, Any]) -> str:
    status = task["Status"]
    return f"{service}.{task.get('Slot', '')} {status['State']} {status.get('Err', '')}".rstrip()


def pending_task_lines(
    service: str, tasks: Sequence[Mapping[str, Any]], desired: int
) -> tuple[str, ...]:
    """Why a service runs fewer tasks than it should: its wanted tasks that do not run and, when
    replicas are missing, its latest ended ones with their errors. A task that failed is shut
    down at once and its replacement waits out the restart delay, so between the two no wanted
    task explains the gap: the failed one does (`stack_up.sh` listed nothing there before)."""
    wanted = [t for t in tasks if t.get("DesiredState") == "running"]
    lines = [_task_line(service, t) for t in wanted if t["Status"]["State"] != "running"]
    running = len(wanted) - len(lines)
    if running < desired:
        ended = [t for t in tasks if t.get("DesiredState") != "running"]
        ended.sort(key=lambda t: str(t.get("UpdatedAt", "")), reverse=True)
        lines += [f"{_task_line(service, t)} (ended)" for t in ended[:ENDED_TASKS_SHOWN]]
    return tuple(lines)


class Engine(Protocol):
    """The engine calls the matrix makes; `DockerEngine` is the real one."""

    def service_resources(self, service: str) -> ServiceResources:
        """Replicas, limits and reservations; DockerError when the service cannot be read."""

    def update_config(self, service: str) -> dict[str, Any]:
        """The service's UpdateConfig, to put back after the matrix changed it."""

    def service_image(self, service: str) -> str | None:
        """The image the service's tasks run, with its ID where the stack labelled it
        (stack_up.sh's com.penguin-lab.image-id); None when the service is not there."""

    def set_update_config(self, service: str, config: Mapping[str, Any]) -> None:
        """Puts an UpdateConfig back (changes no task)."""

    def update_service(
        self,
        service: str,
        wanted: ServiceResources,
        timeout: float,
        container: Mapping[str, Any] | None = None,
    ) -> None:
        """Applies replicas, limits and reservations with the fast update policy and waits until
        every replica runs the new spec; DockerError when Swarm paused or rolled it back.
        `container` replaces those CONTAINER_FIELDS of the ContainerSpec in the same update (a
        None value removes the field)."""

    def container_settings(self, service: str) -> dict[str, Any]:
        """The service's CONTAINER_FIELDS as its spec sets them (unset ones left out)."""

    def image_exists(self, image: str) -> bool:
        """Whether this engine has the image locally."""

    def start_container(self, image: str, env: Mapping[str, str], name: str) -> str:
        """Starts a plain container of `image` on the default bridge; its id."""

    def container_state(self, container: str) -> ContainerState:
        """Where a plain container stands (DockerError when it is gone)."""

    def container_logs(self, container: str, tail: int) -> str:
        """The last `tail` lines of a container's output."""

    def remove_container(self, container: str) -> None:
        """Stops and removes a container; nothing when it is gone already."""

    def node_capacity(self) -> tuple[int, int]:
        """(NanoCPUs, MemoryBytes) of this Swarm node."""

    def reserved_by_others(self, exclude: str) -> tuple[int, int]:
        """(NanoCPUs, MemoryBytes) reserved by every other service's replicas."""

    def tasks_converged(self, service: str, replicas: int) -> tuple[bool, str]:
        """Whether exactly `replicas` tasks run and none of their containers is still unhealthy,
        with a short description of the state."""

    def task_ids(self, service: str) -> set[str]:
        """Every task Swarm keeps for the service (a new id means a task was replaced)."""

    def task_nodes(self, service: str) -> list[TaskPlacement]:
        """Each running task of the service with the hostname of the node it runs on."""

    def containers(self, service: str, *, running_only: bool = True) -> list[str]:
        """Full ids of the service's containers on this node."""

    def oom_killed(self, container_ids: Sequence[str]) -> list[str]:
        """The ids among `container_ids` whose container the kernel killed for memory."""

    def nginx_status(self, service: str) -> dict[str, int] | None:
        """Nginx's stub_status counters from inside its container; None when unreadable."""

    def container_stats(self, service: str) -> list[ContainerStats]:
        """One CPU / memory sample of each running container of the service."""

    def cgroup_dirs(self, service: str) -> dict[str, Path]:
        """Host cgroup directory (the one whose cpu.stat counts CPU throttling) of each running
        container of the service, by full container id; containers without one are left out.
        cpu.stat has nr_periods and nr_throttled in both cgroup versions, and the throttled time
        as throttled_usec (v2) or throttled_time in nanoseconds (v1)."""

    def stack_services(self, stack: str) -> list[ServiceState]:
        """The state of every service of a stack, by name; empty when it is not deployed."""

    def nginx_upstreams(self, service: str) -> int | None:
        """How many api servers the local Nginx container balances over; None when there is no
        Nginx container on this node or it cannot be asked."""

    def service_env(self, service: str) -> dict[str, str]:
        """The environment of the service's containers as its spec sets it."""

    def set_service_env(
        self, service: str, changes: Mapping[str, str | None], timeout: float
    ) -> None:
        """Sets (adds or replaces) environment variables, removes those given None, and waits
        until every replica runs the new spec."""

    def scale_service(self, service: str, replicas: int, timeout: float) -> None:
        """Sets the replica count and waits until that many tasks run."""

    def service_logs(self, service: str, since: float) -> list[str]:
        """The lines every task of the service logged since `since` (epoch seconds)."""

    def create_config(self, name: str, data: bytes, stack: str) -> None:
        """A Swarm config `name` holding `data`, labelled as the stack's (so removing the stack
        removes it too); one that exists already is kept (names carry a content hash)."""

    def remove_config(self, name: str) -> None:
        """Removes the Swarm config `name`, if it exists."""

    def service_args(self, service: str) -> list[str]:
        """The arguments the service's containers are started with (its spec's Args)."""

    def set_service_file(
        self, service: str, args: Sequence[str], target: str, config: str | None, timeout: float
    ) -> None:
        """Starts the service's containers with `args` and the Swarm config `config` mounted at
        `target` (None: nothing mounted there), and waits until every replica runs that spec."""


def parse_stub_status(text: str) -> dict[str, int]:
    """Nginx stub_status text -> counters (active, accepts, handled, requests, reading, ...)."""
    numbers = [int(n) for n in re.findall(r"\d+", text)]
    if len(numbers) < 7 or "Active connections" not in text:
        raise ValueError(f"not an nginx stub_status page: {text[:120]!r}")
    keys = ("active", "accepts", "handled", "requests", "reading", "writing", "waiting")
    return dict(zip(keys, numbers[:7], strict=True))


def cpu_percent(stats: Mapping[str, Any]) -> float:
    """CPU of one container in % of one core between the two samples of an Engine API stats
    answer, computed as `docker stats` does."""
    cpu, previous = stats.get("cpu_stats") or {}, stats.get("precpu_stats") or {}
    cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (
        previous.get("cpu_usage") or {}
    ).get("total_usage", 0)
    system_delta = cpu.get("system_cpu_usage", 0) - previous.get("system_cpu_usage", 0)
    online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or [])
    if system_delta <= 0 or cpu_delta <= 0:
        return 0.0
    return round(float(cpu_delta / system_delta * online * 100.0), 2)


def memory_used(stats: Mapping[str, Any]) -> int:
    """Memory of one container without its inactive page cache, as `docker stats` shows it."""
    memory = stats.get("memory_stats") or {}
    usage = int(memory.get("usage", 0))
    detail = memory.get("stats") or {}
    # cgroup v1 reports total_inactive_file, v2 inactive_file.
    inactive = detail.get("total_inactive_file", detail.get("inactive_file", 0))
    return usage - int(inactive) if inactive < usage else usage


def cgroup_candidates(
    container_id: str, driver: str, version: str, root: Path = CGROUP_ROOT
) -> list[Path]:
    """Where Docker puts a container's cgroup, most likely first. cgroup v2 has one tree; v1
    has one per controller, and the CPU throttling counters live in the cpu controller's."""
    systemd = f"system.slice/docker-{container_id}.scope"
    cgroupfs = f"docker/{container_id}"
    relative = [systemd, cgroupfs] if driver == "systemd" else [cgroupfs, systemd]
    if version == "2":
        return [root / path for path in relative]
    return [root / controller / path for controller in ("cpu,cpuacct", "cpu") for path in relative]


@contextmanager
def _engine_errors(what: str) -> Iterator[None]:
    """Turns the SDK's and the HTTP layer's exceptions into DockerError naming the request."""
    try:
        yield
    except (docker.errors.DockerException, requests.RequestException) as error:
        raise DockerError(f"{what} failed: {error}") from None


class DockerEngine:
    """The Engine through the Docker SDK for Python, on DOCKER_HOST or the local socket."""

    def __init__(self, client: docker.DockerClient) -> None:
        self._api = client.api

    @classmethod
    def from_env(cls, docker_host: str | None = None) -> DockerEngine:
        """The engine of DOCKER_HOST (or the local socket), or of `docker_host` when given (the
        local cluster's manager), without changing the process environment."""
        with _engine_errors("connecting to the Docker engine"):
            if docker_host is not None:
                return cls(docker.DockerClient(base_url=docker_host, timeout=int(API_TIMEOUT_S)))
            return cls(docker.from_env(timeout=int(API_TIMEOUT_S)))

    def _service(self, service: str) -> dict[str, Any]:
        with _engine_errors(f"inspecting service {service}"):
            found: dict[str, Any] = self._api.inspect_service(service)
        return found

    def _tasks(self, service: str, **filters: str) -> list[dict[str, Any]]:
        with _engine_errors(f"listing the tasks of {service}"):
            tasks: list[dict[str, Any]] = self._api.tasks(filters={"service": service, **filters})
        return tasks

    def _container_list(self, service: str, running_only: bool) -> list[dict[str, Any]]:
        with _engine_errors(f"listing the containers of {service}"):
            found: list[dict[str, Any]] = self._api.containers(
                all=not running_only, filters={"label": f"{SERVICE_LABEL}={service}"}
            )
        return found

    def _update(self, service: str, change: Callable[[dict[str, Any]], None]) -> None:
        """Applies `change` to the current spec and sends it back as one update."""
        with _engine_errors(f"updating service {service}"):
            service_spec.update(self._api, service, change)

    def service_resources(self, service: str) -> ServiceResources:
        spec = self._service(service)["Spec"]
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

    def update_config(self, service: str) -> dict[str, Any]:
        return dict(self._service(service)["Spec"].get("UpdateConfig") or {})

    def service_image(self, service: str) -> str | None:
        try:
            spec = self._service(service)["Spec"]
        except DockerError:
            return None
        container = (spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}
        image = str(container.get("Image", ""))
        image_id = (container.get("Labels") or {}).get(IMAGE_ID_LABEL)
        return f"{image} (id {image_id[:19]})" if image_id else image or None

    def set_update_config(self, service: str, config: Mapping[str, Any]) -> None:
        def change(spec: dict[str, Any]) -> None:
            spec["UpdateConfig"] = dict(config)

        self._update(service, change)

    def update_service(
        self,
        service: str,
        wanted: ServiceResources,
        timeout: float,
        container: Mapping[str, Any] | None = None,
    ) -> None:
        # Zero means "no limit" for Swarm, which is also what restoring an unlimited service needs.
        def change(spec: dict[str, Any]) -> None:
            if container is not None:
                container_spec = spec["TaskTemplate"].setdefault("ContainerSpec", {})
                for key in CONTAINER_FIELDS:
                    if key in container and container[key] is None:
                        container_spec.pop(key, None)
                    elif key in container:
                        container_spec[key] = container[key]
            spec["Mode"] = {"Replicated": {"Replicas": wanted.replicas}}
            resources = spec["TaskTemplate"].setdefault("Resources", {})
            resources.setdefault("Limits", {}).update(
                NanoCPUs=wanted.limit_nano_cpus, MemoryBytes=wanted.limit_memory_bytes
            )
            resources.setdefault("Reservations", {}).update(
                NanoCPUs=wanted.reserve_nano_cpus, MemoryBytes=wanted.reserve_memory_bytes
            )
            spec["UpdateConfig"] = {**(spec.get("UpdateConfig") or {}), **FAST_UPDATE_CONFIG}

        self._update(service, change)
        self._wait_for_update(service, wanted.replicas, timeout)
        applied = self.service_resources(service)
        if applied != wanted:
            raise DockerError(
                f"{service} did not take the new settings (Swarm rolled back?): "
                f"wanted {wanted.as_dict()}, has {applied.as_dict()}"
            )

    def container_settings(self, service: str) -> dict[str, Any]:
        spec = self._service(service)["Spec"]
        container = spec["TaskTemplate"].get("ContainerSpec") or {}
        return {key: container[key] for key in CONTAINER_FIELDS if key in container}

    def image_exists(self, image: str) -> bool:
        try:
            self._api.inspect_image(image)
        except docker.errors.ImageNotFound:
            return False
        except (docker.errors.DockerException, requests.RequestException) as error:
            raise DockerError(f"inspecting image {image} failed: {error}") from None
        return True

    def start_container(self, image: str, env: Mapping[str, str], name: str) -> str:
        with _engine_errors(f"starting a container of {image}"):
            created = self._api.create_container(
                image, environment=dict(env), name=name, labels={"com.penguin-lab.smoke": "1"}
            )
            self._api.start(created["Id"])
        return str(created["Id"])

    def container_state(self, container: str) -> ContainerState:
        with _engine_errors(f"inspecting container {container[:12]}"):
            found = self._api.inspect_container(container)
        state = found.get("State") or {}
        address = str((found.get("NetworkSettings") or {}).get("IPAddress") or "")
        return ContainerState(
            running=bool(state.get("Running")),
            exit_code=int(state.get("ExitCode") or 0),
            pid=int(state.get("Pid") or 0),
            address=address,
        )

    def container_logs(self, container: str, tail: int) -> str:
        with _engine_errors(f"reading the log of {container[:12]}"):
            output: bytes = self._api.logs(container, tail=tail)
        return output.decode("utf-8", "replace")

    def remove_container(self, container: str) -> None:
        try:
            self._api.remove_container(container, force=True)
        except docker.errors.NotFound:
            return
        except (docker.errors.DockerException, requests.RequestException) as error:
            raise DockerError(f"removing container {container[:12]} failed: {error}") from None

    def service_env(self, service: str) -> dict[str, str]:
        spec = self._service(service)["Spec"]
        env = (spec["TaskTemplate"].get("ContainerSpec") or {}).get("Env") or []
        return dict(item.partition("=")[::2] for item in env)

    def _replicas(self, service: str) -> int:
        return self.service_resources(service).replicas

    def set_service_env(
        self, service: str, changes: Mapping[str, str | None], timeout: float
    ) -> None:
        def change(spec: dict[str, Any]) -> None:
            container = spec["TaskTemplate"].setdefault("ContainerSpec", {})
            env = dict(item.partition("=")[::2] for item in container.get("Env") or [])
            for key, value in changes.items():
                if value is None:
                    env.pop(key, None)
                else:
                    env[key] = value
            container["Env"] = [f"{key}={value}" for key, value in env.items()]

        self._update(service, change)
        self._wait_for_update(service, self._replicas(service), timeout)

    def scale_service(self, service: str, replicas: int, timeout: float) -> None:
        def change(spec: dict[str, Any]) -> None:
            spec["Mode"] = {"Replicated": {"Replicas": replicas}}

        self._update(service, change)
        self._wait_for_update(service, replicas, timeout)

    def service_logs(self, service: str, since: float) -> list[str]:
        with _engine_errors(f"reading the logs of {service}"):
            raw = self._api.service_logs(service, stdout=True, stderr=True, since=int(since))
            # The SDK joins the lines into one bytes object unless asked to follow.
            data = raw if isinstance(raw, bytes) else b"".join(raw)
            text = data.decode("utf-8", "replace")
        return text.splitlines()

    def create_config(self, name: str, data: bytes, stack: str) -> None:
        with _engine_errors(f"creating config {name}"):
            if any(c["Spec"]["Name"] == name for c in self._api.configs(filters={"name": name})):
                return
            self._api.create_config(name, data, labels={STACK_LABEL: stack})

    def remove_config(self, name: str) -> None:
        with _engine_errors(f"removing config {name}"):
            for found in self._api.configs(filters={"name": name}):
                if found["Spec"]["Name"] == name:
                    self._api.remove_config(found["ID"])

    def service_args(self, service: str) -> list[str]:
        spec = self._service(service)["Spec"]
        return list((spec["TaskTemplate"].get("ContainerSpec") or {}).get("Args") or [])

    def set_service_file(
        self, service: str, args: Sequence[str], target: str, config: str | None, timeout: float
    ) -> None:
        mount = None
        if config is not None:
            with _engine_errors(f"finding config {config}"):
                found = self._api.configs(filters={"name": config})
            ids = [c["ID"] for c in found if c["Spec"]["Name"] == config]
            if not ids:
                raise DockerError(f"no Swarm config named {config}")
            # Readable by any user: the images run as users of their own.
            mount = {
                "File": {"Name": target, "UID": "0", "GID": "0", "Mode": 0o444},
                "ConfigID": ids[0],
                "ConfigName": config,
            }

        def change(spec: dict[str, Any]) -> None:
            container = spec["TaskTemplate"].setdefault("ContainerSpec", {})
            container["Args"] = list(args)
            configs = [
                c
                for c in container.get("Configs") or []
                if (c.get("File") or {}).get("Name") != target
            ]
            container["Configs"] = configs + ([mount] if mount is not None else [])

        self._update(service, change)
        self._wait_for_update(service, self._replicas(service), timeout)

    def _wait_for_update(self, service: str, replicas: int, timeout: float) -> None:
        """Until every replica runs a task of the current spec (what `docker service update
        --detach=false` waits for). Swarm clears UpdateStatus when it accepts a new spec."""

        def check() -> tuple[bool, str]:
            status = self._service(service).get("UpdateStatus") or {}
            state = status.get("State")
            if state in _STUCK_UPDATE_STATES:
                raise DockerError(f"update of {service} ended {state}: {status.get('Message')}")
            running = [
                t
                for t in self._tasks(service, **{"_up-to-date": "true", "desired-state": "running"})
                if t["Status"]["State"] == "running"
            ]
            return (
                state in (None, "completed") and len(running) == replicas,
                f"{len(running)}/{replicas} tasks of the new spec running, "
                f"update state {state or 'not started'}",
            )

        try:
            wait_until(check, timeout, UPDATE_POLL_INTERVAL_S)
        except WaitTimeout as timeout_error:
            raise DockerError(
                f"update of {service} did not finish within {timeout:g} s: {timeout_error}"
            ) from None

    def _node_id(self) -> str:
        with _engine_errors("reading this engine's Swarm node"):
            node_id: str = self._api.info()["Swarm"]["NodeID"]
        return node_id

    def node_capacity(self) -> tuple[int, int]:
        node_id = self._node_id()
        with _engine_errors("inspecting this Swarm node"):
            resources = self._api.inspect_node(node_id)["Description"]["Resources"]
        return int(resources["NanoCPUs"]), int(resources["MemoryBytes"])

    def reserved_by_others(self, exclude: str) -> tuple[int, int]:
        with _engine_errors("listing the services"):
            services: list[dict[str, Any]] = self._api.services()
        cpus = memory = 0
        for service in services:
            spec = service["Spec"]
            if spec["Name"] == exclude:
                continue
            replicated = (spec.get("Mode") or {}).get("Replicated") or {}
            count = int(replicated.get("Replicas", 1))
            reservations = ((spec.get("TaskTemplate") or {}).get("Resources") or {}).get(
                "Reservations"
            ) or {}
            cpus += count * int(reservations.get("NanoCPUs", 0))
            memory += count * int(reservations.get("MemoryBytes", 0))
        return cpus, memory

    def tasks_converged(self, service: str, replicas: int) -> tuple[bool, str]:
        tasks = self._tasks(service, **{"desired-state": "running"})
        running = [t for t in tasks if t["Status"]["State"] == "running"]
        if len(running) != replicas or len(tasks) != replicas:
            return False, f"{len(running)}/{replicas} tasks running"
        # Only this node's containers can be asked for their health; on other nodes Swarm
        # reports a task running once its container's health check passed.
        here = [t for t in running if t.get("NodeID") == self._node_id()]
        statuses = [c["Status"] for c in self._container_list(service, running_only=True)]
        waiting = [s for s in statuses if "health: starting" in s or "unhealthy" in s]
        if waiting or len(statuses) != len(here):
            return False, (
                f"{len(statuses) - len(waiting)}/{len(here)} containers on this node healthy"
            )
        return True, f"{replicas}/{replicas} tasks running and healthy"

    def task_ids(self, service: str) -> set[str]:
        return {t["ID"] for t in self._tasks(service)}

    def task_nodes(self, service: str) -> list[TaskPlacement]:
        tasks = [
            t
            for t in self._tasks(service, **{"desired-state": "running"})
            if t["Status"]["State"] == "running"
        ]
        hostnames: dict[str, str] = {}
        for node_id in {str(t.get("NodeID", "")) for t in tasks} - {""}:
            with _engine_errors(f"inspecting node {node_id}"):
                node: dict[str, Any] = self._api.inspect_node(node_id)
            hostnames[node_id] = str((node.get("Description") or {}).get("Hostname") or node_id)
        return sorted(
            (
                TaskPlacement(str(t["ID"]), hostnames.get(str(t.get("NodeID", "")), "?"))
                for t in tasks
            ),
            key=lambda placement: (placement.node, placement.task),
        )

    def containers(self, service: str, *, running_only: bool = True) -> list[str]:
        return [c["Id"] for c in self._container_list(service, running_only)]

    def oom_killed(self, container_ids: Sequence[str]) -> list[str]:
        killed = []
        for container in container_ids:
            try:
                state = self._api.inspect_container(container)["State"]
            except docker.errors.NotFound:
                continue  # removed meanwhile: nothing to say about it
            except (docker.errors.DockerException, requests.RequestException):
                continue  # as before: an unreadable container counts as not killed
            if state.get("OOMKilled"):
                killed.append(container)
        return killed

    def _run_in(self, service: str, command: list[str]) -> str | None:
        """Standard output of `command` in the service's first running container here; None
        when there is none or the command cannot be run."""
        ids = self.containers(service)
        if not ids:
            return None
        try:
            with _engine_errors(f"running {command[0]} in {service}"):
                execution = self._api.exec_create(ids[0], command, stderr=False)
                output: bytes = self._api.exec_start(execution["Id"])
        except DockerError:
            return None
        return output.decode("utf-8", "replace")

    def nginx_status(self, service: str) -> dict[str, int] | None:
        text = self._run_in(service, ["curl", "-s", "--max-time", "5", NGINX_STATUS_URL])
        try:
            return None if text is None else parse_stub_status(text)
        except ValueError:
            return None

    def nginx_upstreams(self, service: str) -> int | None:
        text = self._run_in(service, ["grep", "-c", "max_fails", NGINX_UPSTREAMS_FILE])
        return int(text) if text is not None and text.strip().isdigit() else None

    def stack_services(self, stack: str) -> list[ServiceState]:
        with _engine_errors(f"listing the services of stack {stack}"):
            services: list[dict[str, Any]] = self._api.services(
                filters={"label": f"{STACK_LABEL}={stack}"}
            )
        states = []
        for service in services:
            spec = service["Spec"]
            tasks = self._tasks(spec["Name"])
            wanted = [t for t in tasks if t.get("DesiredState") == "running"]
            running = sum(1 for t in wanted if t["Status"]["State"] == "running")
            replicated = (spec.get("Mode") or {}).get("Replicated")
            desired = int(replicated.get("Replicas", 1)) if replicated else len(wanted)
            states.append(
                ServiceState(
                    name=spec["Name"],
                    running=running,
                    desired=desired,
                    update_state=(service.get("UpdateStatus") or {}).get("State"),
                    pending_tasks=pending_task_lines(spec["Name"], tasks, desired),
                )
            )
        return sorted(states, key=lambda state: state.name)

    def _stats(self, container: str) -> ContainerStats:
        with _engine_errors(f"reading the stats of {container[:12]}"):
            # stream=False waits for a second sample, so the CPU delta is real.
            stats: dict[str, Any] = self._api.stats(container, stream=False)
        memory = stats.get("memory_stats") or {}
        return ContainerStats(
            container=container[:12],
            name=str(stats.get("name", "")).lstrip("/"),
            cpu_percent=cpu_percent(stats),
            mem_bytes=memory_used(stats),
            mem_limit_bytes=int(memory.get("limit", 0)),
        )

    def container_stats(self, service: str) -> list[ContainerStats]:
        ids = self.containers(service)
        if not ids:
            return []
        # Each answer takes a second or two; in parallel, as `docker stats` asks them.
        with ThreadPoolExecutor(max_workers=len(ids)) as pool:
            return list(pool.map(self._stats, ids))

    def cgroup_dirs(self, service: str) -> dict[str, Path]:
        with _engine_errors("reading the engine's cgroup driver"):
            info = self._api.info()
        driver, version = str(info.get("CgroupDriver", "")), str(info.get("CgroupVersion", "1"))
        found = {}
        for container in self.containers(service):
            existing = [
                path
                for path in cgroup_candidates(container, driver, version)
                if (path / "cpu.stat").is_file()
            ]
            if existing:
                found[container] = existing[0]
        return found
