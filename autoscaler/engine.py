"""The one thing the autoscaler asks of Docker: read and set a service's replica count.

Through the Engine API (the Docker SDK for Python), so through the Docker socket: see
autoscaler/README.md for what that grants and why only this service gets it.
"""

from __future__ import annotations

from typing import Any, Protocol

import docker
import docker.errors
import requests

from stack import service_spec

API_TIMEOUT_S = 30.0


class EngineError(RuntimeError):
    pass


class Scaler(Protocol):
    def replicas(self, service: str) -> int: ...

    def scale(self, service: str, replicas: int) -> None: ...


class SwarmScaler:
    """Replicas of a replicated Swarm service. `scale` returns once Swarm accepted the spec; it
    does not wait for the tasks (the loop goes on observing meanwhile)."""

    def __init__(self, client: docker.DockerClient) -> None:
        self._api = client.api

    @classmethod
    def from_env(cls) -> SwarmScaler:
        return cls(docker.from_env(timeout=int(API_TIMEOUT_S)))

    def _inspect(self, service: str) -> dict[str, Any]:
        try:
            found: dict[str, Any] = self._api.inspect_service(service)
        except (docker.errors.DockerException, requests.RequestException) as error:
            raise EngineError(f"inspecting service {service}: {error}") from None
        return found

    def replicas(self, service: str) -> int:
        replicated = (self._inspect(service)["Spec"].get("Mode") or {}).get("Replicated")
        if replicated is None:
            raise EngineError(f"service {service} is not in replicated mode")
        return int(replicated.get("Replicas", 1))

    def scale(self, service: str, replicas: int) -> None:
        if replicas < 1:
            raise EngineError(f"refusing to scale {service} to {replicas}: never below one")

        def set_replicas(spec: dict[str, Any]) -> None:
            # Only the mode changes, so Swarm adds or removes tasks and leaves the running ones
            # alone (stack/service_spec.py: why not docker-py's update_service).
            spec["Mode"] = {"Replicated": {"Replicas": replicas}}

        try:
            service_spec.update(self._api, service, set_replicas)
        except (docker.errors.DockerException, requests.RequestException) as error:
            raise EngineError(f"scaling {service} to {replicas}: {error}") from None
