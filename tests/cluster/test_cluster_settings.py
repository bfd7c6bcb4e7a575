"""ClusterSettings: defaults, CLUSTER_* and the stack's shared names from the environment, and
ClusterSettingsError naming the variable for a value that cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.settings import ClusterSettings, ClusterSettingsError
from tests.support import unset_settings_env


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    unset_settings_env(monkeypatch, ClusterSettings)


def test_defaults() -> None:
    settings = ClusterSettings()
    assert (settings.nodes, settings.prefix, settings.subnet) == (3, "pclab", "10.213.0.0/16")
    assert settings.run_dir == Path("/run/penguins-cluster")
    assert settings.data_dir == Path("/var/lib/penguins-cluster")
    assert (settings.registry_port, settings.stack_name) == (5000, "penguins")
    assert (settings.image_tag, settings.nginx_port, settings.locust_web_port) == (
        "latest",
        8000,
        8089,
    )


def test_every_documented_variable_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "CLUSTER_NODES": "5",
        "CLUSTER_PREFIX": "lab2",
        "CLUSTER_SUBNET": "10.77.0.0/16",
        "CLUSTER_RUN_DIR": "/run/lab/two",
        "CLUSTER_DATA_DIR": "/var/lib/lab2",
        "CLUSTER_REGISTRY_PORT": "5999",
        "CLUSTER_STACK_NAME": "labstack",
        "IMAGE_TAG": "v2",
        "NGINX_PORT": "8123",
        "LOCUST_WEB_PORT": "8124",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    settings = ClusterSettings()
    assert (settings.nodes, settings.prefix, settings.subnet) == (5, "lab2", "10.77.0.0/16")
    assert settings.run_dir == Path("/run/lab/two")
    assert settings.data_dir == Path("/var/lib/lab2")
    assert (settings.registry_port, settings.stack_name) == (5999, "labstack")
    assert (settings.image_tag, settings.nginx_port, settings.locust_web_port) == ("v2", 8123, 8124)


def test_an_option_overrides_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLUSTER_NODES", "5")
    assert ClusterSettings(nodes=2).nodes == 2


@pytest.mark.parametrize(
    ("name", "value", "fault"),
    [
        ("CLUSTER_NODES", "12", "nodes must be within 1..9"),
        ("CLUSTER_NODES", "three", "valid integer"),
        ("CLUSTER_PREFIX", "Lab", "lower-case"),
        ("CLUSTER_SUBNET", "8.8.0.0/16", "private IPv4 /16"),
        ("CLUSTER_RUN_DIR", "/run", "at least two deep"),
        ("CLUSTER_REGISTRY_PORT", "80", "1024..65535"),
        ("NGINX_PORT", "0", "greater than or equal to 1"),
    ],
)
def test_a_bad_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, fault: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ClusterSettingsError, match=f"bad setting: {name}: .*{fault}"):
        ClusterSettings()
