"""cluster/lifecycle.py load_images: what goes from the host's engine to the manager's and the
cluster's registry, with `docker` replaced by a fake that knows each engine's image IDs."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

import pytest

from cluster import lifecycle
from cluster.system import ClusterError

MANAGER = "tcp://10.213.0.2:2375"
PREFIX = "10.213.0.2:5000/"


class FakeDocker:
    def __init__(self, host: dict[str, str], manager: dict[str, str]) -> None:
        self.ids = {None: host, MANAGER: manager}
        self.calls: list[list[str]] = []
        self.copied: list[tuple[list[str], str]] = []

    def run(self, args: Sequence[str], **_kwargs: object) -> subprocess.CompletedProcess[str]:
        args = list(args)
        where = args[2] if args[1] == "--host" else None
        rest = args[3:] if where else args[1:]
        if rest[:2] == ["image", "inspect"]:
            image_id = self.ids[where].get(rest[-1], "")
            return subprocess.CompletedProcess(args, 0 if image_id else 1, image_id + "\n", "")
        self.calls.append(rest)
        return subprocess.CompletedProcess(args, 0, "", "")

    def copy(self, names: Sequence[str], docker_host: str) -> None:
        self.copied.append((list(names), docker_host))


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeDocker:
    docker = FakeDocker({"my-api:1": "sha256:a", "other:2": "sha256:b"}, {"other:2": "sha256:b"})
    monkeypatch.setattr(lifecycle, "run", docker.run)
    monkeypatch.setattr(lifecycle, "copy_to_engine", docker.copy)
    return docker


def test_an_image_only_the_host_has_is_copied_tagged_and_pushed(fake: FakeDocker) -> None:
    assert lifecycle.load_images(MANAGER, PREFIX, ["my-api:1"]) == [f"{PREFIX}my-api:1"]
    assert fake.copied == [(["my-api:1"], MANAGER)]
    assert fake.calls == [
        ["tag", "my-api:1", f"{PREFIX}my-api:1"],
        ["push", "--quiet", f"{PREFIX}my-api:1"],
    ]


def test_an_image_the_manager_has_the_same_is_not_copied_again(fake: FakeDocker) -> None:
    assert lifecycle.load_images(MANAGER, PREFIX, ["other:2"]) == [f"{PREFIX}other:2"]
    assert fake.copied == []
    assert ["push", "--quiet", f"{PREFIX}other:2"] in fake.calls


def test_an_image_the_host_lacks_is_refused_before_anything_moves(fake: FakeDocker) -> None:
    with pytest.raises(ClusterError, match="the host engine has no image nope:1"):
        lifecycle.load_images(MANAGER, PREFIX, ["other:2", "nope:1"])
    assert fake.copied == [] and fake.calls == []
