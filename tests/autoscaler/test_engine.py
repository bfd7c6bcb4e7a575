"""SwarmScaler against a fake low-level Docker API: what it reads and what update it sends."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import docker.errors
import pytest

from autoscaler.engine import EngineError, SwarmScaler


class FakeApi:
    def __init__(self, mode: dict[str, Any]) -> None:
        self.mode = mode
        self.updates: list[dict[str, Any]] = []

    def inspect_service(self, service: str) -> dict[str, Any]:
        if service != "t_api":
            raise docker.errors.NotFound(f"service {service} not found")
        return {"ID": "abc", "Version": {"Index": 41}, "Spec": {"Name": service, "Mode": self.mode}}

    def update_service(self, service_id: str, version: int, **changes: Any) -> None:
        self.updates.append({"id": service_id, "version": version, **changes})


def scaler(api: FakeApi) -> SwarmScaler:
    return SwarmScaler(SimpleNamespace(api=api))  # type: ignore[arg-type]


def test_reads_the_replicas_and_sends_only_the_mode_at_the_read_version() -> None:
    api = FakeApi({"Replicated": {"Replicas": 2}})
    assert scaler(api).replicas("t_api") == 2
    scaler(api).scale("t_api", 3)
    assert api.updates == [
        {
            "id": "abc",
            "version": 41,
            "mode": {"Replicated": {"Replicas": 3}},
            "fetch_current_spec": True,
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
