"""Local cluster configuration: environment defaults that the command-line options override."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "CLUSTER_"
# Interface names are at most 15 bytes; "<prefix>-node9" must fit, and so must the host end.
MAX_PREFIX_LENGTH = 8
MAX_NODES = 9


def _env(name: str, default: str) -> str:
    return os.environ.get(ENV_PREFIX + name, default)


class ClusterSettingsError(ValueError):
    """A setting that cannot work; the message says which and why."""


@dataclass(frozen=True)
class ClusterSettings:
    """Everything `python -m cluster` depends on.

    Environment: CLUSTER_NODES, CLUSTER_PREFIX, CLUSTER_SUBNET, CLUSTER_RUN_DIR, CLUSTER_DATA_DIR,
    CLUSTER_REGISTRY_PORT, CLUSTER_STACK_NAME.
    """

    nodes: int = field(default_factory=lambda: int(_env("NODES", "3")))
    # Names every namespace, veth, cgroup and Swarm label value this tool makes, so that
    # cluster_down removes exactly those and nothing of the host's.
    prefix: str = field(default_factory=lambda: _env("PREFIX", "pclab"))
    # Used only inside the namespaces this tool creates and on the one host end of their veth:
    # node links in its first /24, each node's docker_gwbridge in the second, overlays in the
    # upper half (see cluster/topology.py).
    subnet: str = field(default_factory=lambda: _env("SUBNET", "10.213.0.0/16"))
    run_dir: Path = field(default_factory=lambda: Path(_env("RUN_DIR", "/run/penguins-cluster")))
    data_dir: Path = field(
        default_factory=lambda: Path(_env("DATA_DIR", "/var/lib/penguins-cluster"))
    )
    registry_port: int = field(default_factory=lambda: int(_env("REGISTRY_PORT", "5000")))
    stack_name: str = field(default_factory=lambda: _env("STACK_NAME", "penguins"))

    def __post_init__(self) -> None:
        if not 1 <= self.nodes <= MAX_NODES:
            raise ClusterSettingsError(f"nodes must be within 1..{MAX_NODES}, got {self.nodes}")
        if not (self.prefix.isascii() and self.prefix.isalnum() and self.prefix.islower()):
            raise ClusterSettingsError(f"prefix must be lower-case letters/digits: {self.prefix!r}")
        if not 1 <= len(self.prefix) <= MAX_PREFIX_LENGTH:
            raise ClusterSettingsError(
                f"prefix must be 1..{MAX_PREFIX_LENGTH} characters (interface names are short)"
            )
        try:
            network = ipaddress.ip_network(self.subnet)
        except ValueError as error:
            raise ClusterSettingsError(f"subnet {self.subnet!r}: {error}") from error
        if network.version != 4 or network.prefixlen != 16 or not network.is_private:
            raise ClusterSettingsError(f"subnet must be a private IPv4 /16, got {self.subnet}")
        for path in (self.run_dir, self.data_dir):
            # cluster_down deletes these folders whole: never let them be a system folder.
            if not path.is_absolute() or len(path.parts) < 3:
                raise ClusterSettingsError(f"{path} must be an absolute path at least two deep")
        if not 1024 <= self.registry_port <= 65535:
            raise ClusterSettingsError(f"registry port must be 1024..65535: {self.registry_port}")
