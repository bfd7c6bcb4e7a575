"""stack/service_spec.py: a change goes out on the spec as read, at the version read."""

from __future__ import annotations

from typing import Any

import docker.errors
import pytest

from stack import service_spec
from tests.support import FakeServiceApi


def test_the_change_is_sent_on_the_spec_as_read_at_the_version_read() -> None:
    stored = {"Name": "s_api", "TaskTemplate": {"ContainerSpec": {"Image": "api"}}, "Labels": {}}
    api = FakeServiceApi("s_api", stored)

    def label(spec: dict[str, Any]) -> None:
        spec["Labels"]["lab"] = "1"

    service_spec.update(api, "s_api", label)
    # No engine default in the task template, and the version read guards the update.
    assert api.updates == [
        {
            "url": "/services/svc-id/update",
            "params": {"version": 7},
            "spec": {**stored, "Labels": {"lab": "1"}},
        }
    ]


def test_a_missing_service_is_docker_s_error_and_sends_nothing() -> None:
    api = FakeServiceApi("s_api", {"Name": "s_api"})
    with pytest.raises(docker.errors.NotFound, match="service nope not found"):
        service_spec.update(api, "nope", lambda spec: None)
    assert api.updates == []
