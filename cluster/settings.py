"""Local cluster configuration: one pydantic-settings object from CLUSTER_* (cluster/README.md
lists the variables); the command-line options override it."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings

from stack.env import component_config, env_error_text

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "CLUSTER_"
# Interface names are at most 15 bytes; "<prefix>-node9" must fit, and so must the host end.
MAX_PREFIX_LENGTH = 8
MAX_NODES = 9


class ClusterSettingsError(ValueError):
    """A setting that cannot work; the message says which and why."""


class ClusterSettings(BaseSettings):
    """Everything `python -m cluster` depends on. Its own variables carry the CLUSTER_ prefix;
    the stack's (IMAGE_TAG, NGINX_PORT, LOCUST_WEB_PORT) keep the names scripts/stack_up.sh uses.
    A value that cannot work raises ClusterSettingsError naming the variable."""

    model_config = component_config(ENV_PREFIX)

    nodes: int = 3
    # Names every namespace, veth, cgroup and Swarm label value this tool makes, so that
    # cluster_down removes exactly those and nothing of the host's.
    prefix: str = "pclab"
    # Used only inside the namespaces this tool creates and on the one host end of their veth:
    # node links in its first /24, each node's docker_gwbridge in the second, overlays in the
    # upper half (see cluster/topology.py).
    subnet: str = "10.213.0.0/16"
    run_dir: Path = Path("/run/penguins-cluster")
    data_dir: Path = Path("/var/lib/penguins-cluster")
    registry_port: int = 5000
    stack_name: str = "penguins"
    # The images `up` pushes to the cluster's registry.
    image_tag: str = Field("latest", validation_alias="IMAGE_TAG")
    # The stack's published ports, which the env file's URLs name on the edge node.
    nginx_port: int = Field(8000, ge=1, le=65535, validation_alias="NGINX_PORT")
    locust_web_port: int = Field(8089, ge=1, le=65535, validation_alias="LOCUST_WEB_PORT")

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as error:
            raise ClusterSettingsError(env_error_text(error, ClusterSettings)) from None

    @field_validator("nodes")
    @classmethod
    def _nodes(cls, value: int) -> int:
        if not 1 <= value <= MAX_NODES:
            raise ValueError(f"nodes must be within 1..{MAX_NODES}, got {value}")
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not (value.isascii() and value.isalnum() and value.islower()):
            raise ValueError(f"prefix must be lower-case letters/digits: {value!r}")
        if not 1 <= len(value) <= MAX_PREFIX_LENGTH:
            raise ValueError(
                f"prefix must be 1..{MAX_PREFIX_LENGTH} characters (interface names are short)"
            )
        return value

    @field_validator("subnet")
    @classmethod
    def _subnet(cls, value: str) -> str:
        try:
            network = ipaddress.ip_network(value)
        except ValueError as error:
            raise ValueError(f"subnet {value!r}: {error}") from error
        if network.version != 4 or network.prefixlen != 16 or not network.is_private:
            raise ValueError(f"subnet must be a private IPv4 /16, got {value}")
        return value

    @field_validator("run_dir", "data_dir")
    @classmethod
    def _deletable(cls, path: Path) -> Path:
        # cluster_down deletes these folders whole: never let them be a system folder.
        if not path.is_absolute() or len(path.parts) < 3:
            raise ValueError(f"{path} must be an absolute path at least two deep")
        return path

    @field_validator("registry_port")
    @classmethod
    def _registry_port(cls, value: int) -> int:
        if not 1024 <= value <= 65535:
            raise ValueError(f"registry port must be 1024..65535: {value}")
        return value
