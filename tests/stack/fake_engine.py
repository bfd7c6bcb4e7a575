"""The one fake of stack.engine.Engine for unit tests: a single-node Swarm in memory with one
stack of an api service and an Nginx, recording what the runner asked of it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from stack.engine import (
    CONTAINER_FIELDS,
    NANO,
    ContainerState,
    ContainerStats,
    DockerError,
    ServiceResources,
    ServiceState,
    TaskPlacement,
)

NODE = (2 * NANO, 8 * 1024**3)


class FakeEngine:
    def __init__(
        self,
        resources: ServiceResources,
        *,
        update_config: Mapping[str, Any],
        stack: str = "t",
        unschedulable_replicas: Sequence[int] = (),
        stats: Sequence[ContainerStats] = (),
        nginx_upstreams: int | None = None,
    ) -> None:
        self.stack = stack
        self.resources = resources
        self.config = dict(update_config)
        # Cells with these replica counts never converge (they do not fit the node).
        self.unschedulable_replicas = set(unschedulable_replicas)
        self.stats = list(stats)
        self.updates: list[ServiceResources] = []
        self.restored_configs: list[dict[str, Any]] = []
        self.tasks = {"task-1"}
        self.container_ids = ["container-1"]
        self.oom = set[str]()
        self.nginx_requests = 100
        self.stats_error: str | None = None
        # None: Nginx balances over every replica.
        self.upstreams = nginx_upstreams
        # Where cgroup_dirs puts each container's directory; a test may point it at tmp_path.
        self.cgroup_root = Path("/sys/fs/cgroup/docker")
        # Node hostnames the replicas are dealt to in turn; one node, as on a single host.
        self.nodes = ["fake-node"]
        # Environment and replicas of the other services (Nginx, Locust workers).
        self.env: dict[str, dict[str, str]] = {}
        self.env_updates: list[tuple[str, dict[str, str | None]]] = []
        self.scaled: dict[str, int] = {}
        # Swarm configs by name, each service's Args and the config mounted per target path.
        self.configs: dict[str, bytes] = {}
        self.args: dict[str, list[str]] = {}
        self.mounts: dict[str, dict[str, str]] = {}
        # The api service's ContainerSpec fields a target replaces, and each update's change.
        self.container: dict[str, Any] = {
            "Image": "penguin-lab/api:latest",
            "Env": ["PENGUIN_DEFAULT_MODEL=lr"],
            "Healthcheck": {"Test": ["CMD", "/usr/local/bin/penguin-healthcheck"]},
        }
        self.container_updates: list[dict[str, Any] | None] = []
        # The other services' ContainerSpec fields (a service not here does not exist).
        self.other_containers: dict[str, dict[str, Any]] = {
            f"{stack}_locust-master": {"Image": "penguin-lab/locust:latest"}
        }
        # Local images, and the plain containers started (the target's smoke container).
        self.images: set[str] = {"penguin-lab/api:latest"}
        self.started: dict[str, tuple[str, dict[str, str]]] = {}
        self.removed: list[str] = []
        # What a started container does: running with this address, or exited with a code.
        self.smoke_state = ContainerState(True, 0, 0, "127.0.0.1")
        self.smoke_logs = ""
        # What service_logs answers, by service.
        self.logs: dict[str, list[str]] = {}

    def serve(self, requests: int, *, replace_task: bool = False, oom_kill: bool = False) -> None:
        """What a load run does to the fake: Nginx counts requests, a task may be replaced and
        its container killed for memory."""
        self.nginx_requests += requests
        if replace_task:
            killed = self.container_ids[-1]
            self.tasks.add(f"task-{len(self.tasks) + 1}")
            self.container_ids.append(f"container-{len(self.container_ids) + 1}")
            if oom_kill:
                self.oom.add(killed)

    def service_resources(self, service: str) -> ServiceResources:
        return self.resources

    def update_config(self, service: str) -> dict[str, Any]:
        return dict(self.config)

    def service_image(self, service: str) -> str | None:
        return f"penguin-lab/{service.rpartition('_')[2]}:latest (id 0123abcd)"

    def set_update_config(self, service: str, config: Mapping[str, Any]) -> None:
        self.config = dict(config)
        self.restored_configs.append(dict(config))

    def update_service(
        self,
        service: str,
        wanted: ServiceResources,
        timeout: float,
        container: Mapping[str, Any] | None = None,
    ) -> None:
        self.updates.append(wanted)
        self.resources = wanted
        self.container_updates.append(None if container is None else dict(container))
        for key in CONTAINER_FIELDS:
            if container is not None and key in container:
                if container[key] is None:
                    self.container.pop(key, None)
                else:
                    self.container[key] = container[key]

    def container_settings(self, service: str) -> dict[str, Any]:
        if service == f"{self.stack}_api":
            return dict(self.container)
        if service not in self.other_containers:
            raise DockerError(f"inspecting service {service} failed: 404 service not found")
        return dict(self.other_containers[service])

    def image_exists(self, image: str) -> bool:
        return image in self.images

    def start_container(self, image: str, env: Mapping[str, str], name: str) -> str:
        container = f"smoke-{len(self.started) + 1}"
        self.started[container] = (image, dict(env))
        return container

    def container_state(self, container: str) -> ContainerState:
        return self.smoke_state

    def container_logs(self, container: str, tail: int) -> str:
        return self.smoke_logs

    def remove_container(self, container: str) -> None:
        self.removed.append(container)

    def node_capacity(self) -> tuple[int, int]:
        return NODE

    def reserved_by_others(self, exclude: str) -> tuple[int, int]:
        return 0, 0

    def _schedulable(self, replicas: int) -> bool:
        return replicas not in self.unschedulable_replicas

    def tasks_converged(self, service: str, replicas: int) -> tuple[bool, str]:
        if not self._schedulable(replicas):
            return False, f"0/{replicas} tasks running"
        return True, f"{replicas}/{replicas} tasks running and healthy"

    def task_ids(self, service: str) -> set[str]:
        return set(self.tasks)

    def task_nodes(self, service: str) -> list[TaskPlacement]:
        return [
            TaskPlacement(f"task-{slot + 1}", self.nodes[slot % len(self.nodes)])
            for slot in range(self.resources.replicas)
        ]

    def containers(self, service: str, *, running_only: bool = True) -> list[str]:
        return self.container_ids[-1:] if running_only else list(self.container_ids)

    def oom_killed(self, container_ids: Sequence[str]) -> list[str]:
        return [c for c in container_ids if c in self.oom]

    def nginx_status(self, service: str) -> dict[str, int] | None:
        return {
            "active": 1,
            "accepts": 10,
            "handled": 10,
            "requests": self.nginx_requests,
            "reading": 0,
            "writing": 1,
            "waiting": 0,
        }

    def container_stats(self, service: str) -> list[ContainerStats]:
        if self.stats_error:
            raise DockerError(self.stats_error)
        return list(self.stats)

    def cgroup_dirs(self, service: str) -> dict[str, Path]:
        return {c: self.cgroup_root / c for c in self.containers(service)}

    def stack_services(self, stack: str) -> list[ServiceState]:
        if stack != self.stack:
            return []
        replicas = self.resources.replicas
        api = (
            ServiceState(f"{stack}_api", replicas, replicas, "completed", ())
            if self._schedulable(replicas)
            else ServiceState(
                f"{stack}_api",
                0,
                replicas,
                "updating",
                (f"{stack}_api.1 pending no suitable node",),
            )
        )
        return [api, ServiceState(f"{stack}_nginx", 1, 1, None, ())]

    def nginx_upstreams(self, service: str) -> int | None:
        return self.resources.replicas if self.upstreams is None else self.upstreams

    def service_env(self, service: str) -> dict[str, str]:
        return dict(self.env.get(service, {}))

    def set_service_env(
        self, service: str, changes: Mapping[str, str | None], timeout: float
    ) -> None:
        env = self.env.setdefault(service, {})
        for key, value in changes.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        self.env_updates.append((service, dict(changes)))

    def scale_service(self, service: str, replicas: int, timeout: float) -> None:
        self.scaled[service] = replicas

    def service_logs(self, service: str, since: float) -> list[str]:
        return list(self.logs.get(service, []))

    def create_config(self, name: str, data: bytes, stack: str) -> None:
        self.configs.setdefault(name, data)

    def remove_config(self, name: str) -> None:
        self.configs.pop(name, None)

    def service_args(self, service: str) -> list[str]:
        return list(self.args.get(service, []))

    def set_service_file(
        self, service: str, args: Sequence[str], target: str, config: str | None, timeout: float
    ) -> None:
        if config is not None and config not in self.configs:
            raise DockerError(f"no Swarm config named {config}")
        self.args[service] = list(args)
        mounts = self.mounts.setdefault(service, {})
        mounts.pop(target, None)
        if config is not None:
            mounts[target] = config
