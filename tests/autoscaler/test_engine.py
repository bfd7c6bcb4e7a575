"""SwarmScaler against a fake low-level Docker API: what it reads and what update it sends."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from autoscaler.engine import EngineError, SwarmScaler
from tests.support import FakeServiceApi

TEMPLATE = {"ContainerSpec": {"Image": "penguin-lab/api:latest"}}


def fake_api(mode: dict[str, Any]) -> FakeServiceApi:
    return FakeServiceApi("t_api", {"Name": "t_api", "Mode": mode, "TaskTemplate": TEMPLATE})


def scaler(api: FakeServiceApi) -> SwarmScaler:
    return SwarmScaler(SimpleNamespace(api=api))  # type: ignore[arg-type]


def test_reads_the_replicas_and_sends_the_spec_as_read_but_the_mode_at_the_read_version() -> None:
    api = fake_api({"Replicated": {"Replicas": 2}})
    assert scaler(api).replicas("t_api") == 2
    scaler(api).scale("t_api", 3)
    # The task template exactly as read (no engine defaults): Swarm replaces no running task.
    assert api.updates == [
        {
            "url": "/services/svc-id/update",
            "params": {"version": 7},
            "spec": {
                "Name": "t_api",
                "Mode": {"Replicated": {"Replicas": 3}},
                "TaskTemplate": TEMPLATE,
            },
        }
    ]


def test_never_scales_to_zero() -> None:
    api = fake_api({"Replicated": {"Replicas": 2}})
    with pytest.raises(EngineError, match="never below one"):
        scaler(api).scale("t_api", 0)
    assert api.updates == []


def test_a_missing_or_global_service_is_a_clear_error() -> None:
    with pytest.raises(EngineError, match="inspecting service nope"):
        scaler(fake_api({"Replicated": {"Replicas": 1}})).replicas("nope")
    with pytest.raises(EngineError, match="not in replicated mode"):
        scaler(fake_api({"Global": {}})).replicas("t_api")
