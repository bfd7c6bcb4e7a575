"""What the local cluster is made of: names, addresses, folders and each engine's command line.

Pure functions of ClusterSettings, so the same plan serves `up`, `down` and the tests, and
`down` can find everything `up` made even when `up` died half-way.

Layout (prefix `pclab`, subnet 10.213.0.0/16):

    host ── pclab0 10.213.0.1 ──veth── [netns pclab-hub] bridge br0 10.213.0.2 (registry :5000)
                                          ├─ n1 ──veth── [netns pclab-node1] eth0 10.213.0.11
                                          ├─ n2 ──veth── [netns pclab-node2] eth0 10.213.0.12
                                          └─ ...

The bridge lives in a namespace of its own, so the host's firewall (Docker's FORWARD policy is
DROP) never sees traffic between nodes, and the host reaches the nodes through its one veth end.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path

from cluster.settings import ClusterSettings

HUB_BRIDGE = "br0"
HUB_UPLINK = "uplink"
NODE_INTERFACE = "eth0"
SWARM_PORT = 2377
# Every node gets this label; the stack file's placement reads it (see stack/README.md).
ROLE_LABEL = "penguins.role"
ZONE_LABEL = "penguins.zone"
# containerd (1.6) puts every shim's socket here, named by a hash (see shim_socket).
SHIM_SOCKET_DIR = Path("/run/containerd/s")


@dataclass(frozen=True)
class Node:
    """One Docker engine of the cluster, in its own network namespace."""

    index: int
    name: str
    netns: str
    address: str
    hub_port: str
    run_dir: Path
    data_root: Path
    cgroup: str

    @property
    def exec_root(self) -> Path:
        return self.run_dir / "exec"

    @property
    def socket(self) -> Path:
        return self.run_dir / "docker.sock"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "docker.pid"

    @property
    def config_file(self) -> Path:
        return self.run_dir / "daemon.json"

    @property
    def log_file(self) -> Path:
        return self.data_root.parent / f"{self.name}.log"

    @property
    def containerd_socket(self) -> Path:
        # Where dockerd starts its own containerd when --containerd is not given.
        return self.exec_root / "containerd" / "containerd.sock"

    @property
    def containers_dir(self) -> Path:
        return self.data_root / "containers"

    @property
    def is_manager(self) -> bool:
        return self.index == 1

    @property
    def role(self) -> str:
        # The manager is the edge: Nginx and the Locust master run there, the rest on workers.
        return "edge" if self.is_manager else "worker"


@dataclass(frozen=True)
class Topology:
    settings: ClusterSettings
    host_interface: str
    host_address: str
    hub_netns: str
    hub_address: str
    link_prefix_length: int
    gwbridge_pool: str
    overlay_pool: str
    nodes: tuple[Node, ...]

    @property
    def manager(self) -> Node:
        return self.nodes[0]

    @property
    def registry(self) -> str:
        """host:port of the registry, as image names and insecure-registries spell it."""
        return f"{self.hub_address}:{self.settings.registry_port}"

    @property
    def image_prefix(self) -> str:
        return f"{self.registry}/"

    @property
    def registry_dir(self) -> Path:
        return self.settings.data_dir / "registry"

    @property
    def registry_config(self) -> Path:
        return self.settings.run_dir / "registry.yml"

    @property
    def registry_cgroup(self) -> str:
        return f"{self.settings.prefix}-registry"

    @property
    def env_file(self) -> Path:
        return self.settings.run_dir / "env"

    @property
    def cgroups(self) -> list[str]:
        return [self.registry_cgroup, *(node.cgroup for node in self.nodes)]

    @property
    def netns_names(self) -> list[str]:
        return [self.hub_netns, *(node.netns for node in self.nodes)]

    def node(self, index: int) -> Node:
        if not 1 <= index <= len(self.nodes):
            raise ValueError(f"no node {index}: the cluster has nodes 1..{len(self.nodes)}")
        return self.nodes[index - 1]


def plan(settings: ClusterSettings) -> Topology:
    subnet = ipaddress.IPv4Network(settings.subnet)  # settings accept IPv4 only
    links, gwbridges = list(subnet.subnets(new_prefix=24))[:2]
    overlays = list(subnet.subnets(new_prefix=17))[1]
    hosts = list(links.hosts())
    prefix = settings.prefix
    nodes = tuple(
        Node(
            index=index,
            name=f"{prefix}-node{index}",
            netns=f"{prefix}-node{index}",
            address=str(hosts[9 + index]),
            hub_port=f"n{index}",
            run_dir=settings.run_dir / f"node{index}",
            data_root=settings.data_dir / f"node{index}",
            cgroup=f"{prefix}-node{index}",
        )
        for index in range(1, settings.nodes + 1)
    )
    return Topology(
        settings=settings,
        host_interface=f"{prefix}0",
        host_address=str(hosts[0]),
        hub_netns=f"{prefix}-hub",
        hub_address=str(hosts[1]),
        link_prefix_length=links.prefixlen,
        gwbridge_pool=str(gwbridges),
        overlay_pool=str(overlays),
        nodes=nodes,
    )


def daemon_config(topology: Topology) -> dict[str, object]:
    """The engine's own daemon.json: never the host's /etc/docker/daemon.json."""
    return {
        # Only the cluster's engines trust the plain-HTTP registry; the host engine is untouched.
        "insecure-registries": [topology.registry],
        # docker_gwbridge (needed by host-mode ports) inside the node's namespace, in our range.
        "default-address-pools": [{"base": topology.gwbridge_pool, "size": 24}],
        # No docker0 and no iptables rules: the namespace is the node's whole network.
        "bridge": "none",
        "iptables": False,
        "ip-masq": False,
        "log-driver": "json-file",
        "log-opts": {"max-size": "5m", "max-file": "2"},
    }


def dockerd_command(node: Node) -> list[str]:
    """The engine's command line, run inside the node's network namespace.

    Every path is the node's own, so the engine shares nothing with the host's: its containerd is
    the one dockerd starts under --exec-root (no --containerd), its containers live in the
    node's cgroup parent, and its socket is the node's.
    """
    return [
        "dockerd",
        "--config-file",
        str(node.config_file),
        "--data-root",
        str(node.data_root),
        "--exec-root",
        str(node.exec_root),
        "--pidfile",
        str(node.pidfile),
        "--host",
        node.docker_host,
        "--cgroup-parent",
        f"/{node.cgroup}",
    ]


def swarm_init_args(topology: Topology) -> list[str]:
    manager = topology.manager
    return [
        "swarm",
        "init",
        "--advertise-addr",
        manager.address,
        "--listen-addr",
        f"{manager.address}:{SWARM_PORT}",
        "--default-addr-pool",
        topology.overlay_pool,
        "--default-addr-pool-mask-length",
        "24",
    ]


def swarm_join_args(topology: Topology, node: Node, token: str) -> list[str]:
    return [
        "swarm",
        "join",
        "--token",
        token,
        "--advertise-addr",
        node.address,
        "--listen-addr",
        f"{node.address}:{SWARM_PORT}",
        f"{topology.manager.address}:{SWARM_PORT}",
    ]


def shim_socket(node: Node, container_id: str) -> Path:
    """The socket the containerd shim of one of the node's containers listens on.

    containerd names it sha256(<containerd socket>/<namespace>/<container id>) in a folder every
    containerd shares; the node's own containerd socket path is in the hash, so this can only
    ever name a socket of the node's containers, never one of the host engine's.
    """
    key = f"{node.containerd_socket}/moby/{container_id}"
    return SHIM_SOCKET_DIR / hashlib.sha256(key.encode()).hexdigest()


def node_labels(node: Node) -> dict[str, str]:
    # One zone per node here; on real machines a zone is a rack or an availability zone.
    return {ROLE_LABEL: node.role, ZONE_LABEL: node.name}


def registry_config_text(topology: Topology) -> str:
    """The registry's configuration (JSON is YAML): filesystem storage, our address only."""
    config = {
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {
            "filesystem": {"rootdirectory": str(topology.registry_dir)},
            "delete": {"enabled": True},
        },
        "http": {"addr": topology.registry},
    }
    return json.dumps(config, indent=2) + "\n"


def env_file_text(values: dict[str, str]) -> str:
    """KEY=value lines that both `source` (shell) and read_env_file understand."""
    lines = []
    for key, value in values.items():
        if not key.isidentifier() or any(char in value for char in "'\n\\"):
            raise ValueError(f"cannot write {key}={value!r} to an env file")
        lines.append(f"{key}='{value}'")
    return "\n".join(lines) + "\n"


def read_env_file(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip("'")
    return values
