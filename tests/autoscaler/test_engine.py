"""SwarmScaler against a fake low-level Docker API: what it reads and what update it sends."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import docker.errors
import pytest

from autoscaler.engine import EngineError, SwarmScaler

TEMPLATE = {"ContainerSpec": {"Image": "penguin-lab/api:latest"}}


class FakeApi:
    def __init__(self, mode: dict[str, Any]) -> None:
        self.mode = mode
        self.updates: list[dict[str, Any]] = []

    def inspect_service(self, service: str, insert_defaults: bool | None = None) -> dict[str, Any]:
        if service != "t_api":
            raise docker.errors.NotFound(f"service {service} not found")
        spec: dict[str, Any] = {"Name": service, "Mode": self.mode, "TaskTemplate": TEMPLATE}
        if insert_defaults:
            # What the engine adds when asked: sent back, it changes the task template.
            spec["TaskTemplate"] = {**TEMPLATE, "RestartPolicy": {"Condition": "any"}}
        return {"ID": "abc", "Version": {"Index": 41}, "Spec": spec}

    # The low-level calls stack/service_spec.py makes.
    def _url(self, pattern: str, *args: str) -> str:
        return pattern.format(*args)

    def _post_json(self, url: str, data: dict[str, Any], params: dict[str, Any]) -> str:
        self.updates.append({"url": url, "params": params, "spec": data})
        return "response"

    def _raise_for_status(self, response: str) -> None:
        assert response == "response"


def scaler(api: FakeApi) -> SwarmScaler:
    return SwarmScaler(SimpleNamespace(api=api))  # type: ignore[arg-type]


def test_reads_the_replicas_and_sends_the_spec_as_read_but_the_mode_at_the_read_version() -> None:
    api = FakeApi({"Replicated": {"Replicas": 2}})
    assert scaler(api).replicas("t_api") == 2
    scaler(api).scale("t_api", 3)
    # The task template exactly as read (no engine defaults): Swarm replaces no running task.
    assert api.updates == [
        {
            "url": "/services/abc/update",
            "params": {"version": 41},
            "spec": {
                "Name": "t_api",
                "Mode": {"Replicated": {"Replicas": 3}},
                "TaskTemplate": TEMPLATE,
            },
        }
    ]


def test_never_scales_to_zero() -> None:
    api = FakeApi({"Replicated": {"Replicas": 2}})
    with pytest.raises(EngineError, match="never below one"):
        scaler(api).scale("t_api", 0)
    assert api.updates == []


def test_a_missing_or_global_service_is_a_clear_error() -> None:
    with pytest.raises(EngineError, match="inspecting service nope"):
        scaler(FakeApi({"Replicated": {"Replicas": 1}})).replicas("nope")
    with pytest.raises(EngineError, match="not in replicated mode"):
        scaler(FakeApi({"Global": {}})).replicas("t_api")
