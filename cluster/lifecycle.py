"""Bringing the local cluster up and down, and losing or restoring one node.

Every step checks before it acts, so `up` after `up` changes nothing and `up` after a crash
half-way finishes the job; `down` finds what to remove from the names and folders of the plan
(cluster/topology.py), not from a record `up` might not have written.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from cluster import route_guard, system
from cluster.settings import MAX_NODES
from cluster.system import ClusterError, run
from cluster.topology import (
    HUB_BRIDGE,
    HUB_UPLINK,
    NODE_INTERFACE,
    Node,
    Topology,
    daemon_config,
    dockerd_command,
    env_file_text,
    node_labels,
    plan,
    registry_config_text,
    shim_socket,
    swarm_init_args,
    swarm_join_args,
)

IMAGES = ("api", "nginx", "locust", "prometheus", "autoscaler")
ENGINE_START_TIMEOUT = 60


def log(message: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] cluster: {message}\n")
    sys.stderr.flush()


def docker(node: Node, *args: str, timeout: float = 120, check: bool = True) -> str:
    return run(["docker", "--host", node.docker_host, *args], timeout=timeout, check=check).stdout


# --- network ---------------------------------------------------------------------------------


def make_network(topology: Topology) -> None:
    hub = topology.hub_netns
    prefix = topology.link_prefix_length
    system.ensure_netns(hub)
    if not system.link_exists(HUB_BRIDGE, hub):
        system.ip(hub, "link", "add", HUB_BRIDGE, "type", "bridge")
        system.ip(hub, "addr", "add", f"{topology.hub_address}/{prefix}", "dev", HUB_BRIDGE)
    system.ip(hub, "link", "set", HUB_BRIDGE, "up")
    if not system.link_exists(topology.host_interface):
        system.ip(
            None,
            "link",
            "add",
            topology.host_interface,
            "type",
            "veth",
            "peer",
            "name",
            HUB_UPLINK,
            "netns",
            hub,
        )
        system.ip(
            None,
            "addr",
            "add",
            f"{topology.host_address}/{prefix}",
            "dev",
            topology.host_interface,
        )
    system.ip(None, "link", "set", topology.host_interface, "up")
    system.ip(hub, "link", "set", HUB_UPLINK, "master", HUB_BRIDGE, "up")
    for node in topology.nodes:
        system.ensure_netns(node.netns)
        if not system.link_exists(node.hub_port, hub):
            # A stale half of an earlier pair would block the name: start from a clean pair.
            system.ip(node.netns, "link", "delete", NODE_INTERFACE, check=False)
            system.ip(
                hub,
                "link",
                "add",
                node.hub_port,
                "type",
                "veth",
                "peer",
                "name",
                NODE_INTERFACE,
                "netns",
                node.netns,
            )
            system.ip(node.netns, "addr", "add", f"{node.address}/{prefix}", "dev", NODE_INTERFACE)
        system.ip(node.netns, "link", "set", NODE_INTERFACE, "up")
        system.ip(hub, "link", "set", node.hub_port, "master", HUB_BRIDGE, "up")


# --- registry --------------------------------------------------------------------------------


def registry_up(topology: Topology) -> bool:
    # Without our link the registry's address is not on this machine: never send there then.
    if not system.link_exists(topology.host_interface):
        return False
    try:
        run(
            [
                "python3",
                "-c",
                "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)",
                f"http://{topology.registry}/v2/",
            ],
            timeout=10,
        )
    except ClusterError:
        return False
    return True


def start_registry(topology: Topology, binary: str) -> None:
    if registry_up(topology):
        return
    system.kill_cgroup(topology.registry_cgroup)
    topology.registry_dir.mkdir(parents=True, exist_ok=True)
    topology.registry_config.parent.mkdir(parents=True, exist_ok=True)
    topology.registry_config.write_text(registry_config_text(topology))
    log(f"starting the registry at {topology.registry}")
    system.spawn(
        [binary, "serve", str(topology.registry_config)],
        netns=topology.hub_netns,
        cgroup=topology.registry_cgroup,
        leaf="registry",
        log_path=topology.settings.data_dir / "registry.log",
    )
    system.wait_until("the registry", lambda: registry_up(topology), timeout=30)


# --- engines ---------------------------------------------------------------------------------


def engine_up(node: Node) -> bool:
    if not node.socket.exists():
        return False
    return (
        run(
            ["docker", "--host", node.docker_host, "version", "--format", "{{.Server.Version}}"],
            timeout=15,
            check=False,
        ).returncode
        == 0
    )


def remove_shim_sockets(node: Node) -> None:
    """Sockets of the node's killed shims (they would stay in containerd's shared folder)."""
    if not node.containers_dir.is_dir():
        return
    for container in node.containers_dir.iterdir():
        shim_socket(node, container.name).unlink(missing_ok=True)


def reset_runtime(node: Node) -> None:
    """What a reboot does to a node: no process left, /run empty, disks (data root) kept."""
    system.kill_cgroup(node.cgroup)
    remove_shim_sockets(node)
    system.unmount_all([node.run_dir, node.data_root])
    shutil.rmtree(node.run_dir, ignore_errors=True)


def start_engine(topology: Topology, node: Node) -> None:
    if engine_up(node):
        return
    reset_runtime(node)
    node.run_dir.mkdir(parents=True, exist_ok=True)
    node.data_root.mkdir(parents=True, exist_ok=True)
    node.config_file.write_text(json.dumps(daemon_config(topology), indent=2) + "\n")
    log(f"starting the engine of {node.name} ({node.address})")
    process = system.spawn(
        dockerd_command(node),
        netns=node.netns,
        cgroup=node.cgroup,
        leaf="engine",
        log_path=node.log_file,
        hostname=node.name,
    )

    def ready() -> bool:
        if process.poll() is not None:
            tail = node.log_file.read_text(errors="replace")[-2000:]
            raise ClusterError(f"the engine of {node.name} exited ({process.returncode}):\n{tail}")
        return engine_up(node)

    system.wait_until(f"the engine of {node.name}", ready, timeout=ENGINE_START_TIMEOUT)


def swarm_state(node: Node) -> str:
    return docker(node, "info", "--format", "{{.Swarm.LocalNodeState}}").strip()


def form_swarm(topology: Topology) -> None:
    manager = topology.manager
    if swarm_state(manager) != "active":
        log(f"initialising the Swarm on {manager.name}")
        docker(manager, *swarm_init_args(topology))
    token = docker(manager, "swarm", "join-token", "--quiet", "worker").strip()
    for node in topology.nodes[1:]:
        if swarm_state(node) != "active":
            log(f"{node.name} joins the Swarm")
            docker(node, *swarm_join_args(topology, node, token))
    for node in topology.nodes:
        node_id = docker(node, "info", "--format", "{{.Swarm.NodeID}}").strip()
        labels = [
            arg
            for key, value in node_labels(node).items()
            for arg in ("--label-add", f"{key}={value}")
        ]
        docker(manager, "node", "update", *labels, node_id)
    system.wait_until(
        "every node to be Ready", lambda: ready_nodes(topology) == len(topology.nodes), timeout=60
    )


def ready_nodes(topology: Topology) -> int:
    out = docker(topology.manager, "node", "ls", "--format", "{{.Status}}", check=False)
    return sum(1 for status in out.split() if status == "Ready")


# --- images ----------------------------------------------------------------------------------


def image_id(docker_host: str | None, name: str) -> str:
    where = ["--host", docker_host] if docker_host else []
    result = run(["docker", *where, "image", "inspect", "--format", "{{.Id}}", name], check=False)
    return result.stdout.strip() if result.returncode == 0 else ""


def push_images(topology: Topology, tag: str) -> None:
    """The stack's images, as every node pulls them from the cluster's registry."""
    names = [f"penguin-lab/{image}:{tag}" for image in IMAGES]
    load_images(topology.manager.docker_host, topology.image_prefix, names)


def load_images(manager_host: str, prefix: str, names: Sequence[str]) -> list[str]:
    """Host engine -> manager engine (docker save | load, only what differs) -> the registry
    every node pulls from; the names the nodes pull (`prefix` + name). Also how the matrix
    brings a target's image to the cluster (matrix/measure/target_build.py)."""
    to_load = []
    for name in names:
        host_id = image_id(None, name)
        if not host_id:
            raise ClusterError(f"the host engine has no image {name}: run scripts/build_images.sh")
        if image_id(manager_host, name) != host_id:
            to_load.append(name)
    if to_load:
        log(f"copying {', '.join(to_load)} from the host engine into the manager's")
        copy_to_engine(to_load, manager_host)
    pushed = []
    for name in names:
        target = f"{prefix}{name}"
        run(["docker", "--host", manager_host, "tag", name, target])
        log(f"pushing {target}")
        run(["docker", "--host", manager_host, "push", "--quiet", target], timeout=600)
        pushed.append(target)
    return pushed


def copy_to_engine(names: Sequence[str], docker_host: str) -> None:
    """docker save on the host engine | docker load on `docker_host`."""
    save = subprocess.Popen(["docker", "save", *names], stdout=subprocess.PIPE)
    assert save.stdout is not None
    load = subprocess.run(
        ["docker", "--host", docker_host, "load", "--quiet"],
        stdin=save.stdout,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    save.stdout.close()
    if save.wait(timeout=60) != 0 or load.returncode != 0:
        raise ClusterError(f"docker save | docker load failed: {load.stderr.strip()}")


# --- the stack and the env file --------------------------------------------------------------


def cluster_env(topology: Topology, nginx_port: int, locust_port: int) -> dict[str, str]:
    """What other tools need to target the cluster (written to the env file, printed by `up`)."""
    edge = topology.manager.address
    return {
        "DOCKER_HOST": topology.manager.docker_host,
        "IMAGE_PREFIX": topology.image_prefix,
        "STACK_NAME": topology.settings.stack_name,
        "CLUSTER_NODES": str(len(topology.nodes)),
        "CLUSTER_EDGE_ADDRESS": edge,
        "CLUSTER_NGINX_URL": f"http://{edge}:{nginx_port}",
        "CLUSTER_LOCUST_URL": f"http://{edge}:{locust_port}",
    }


def write_env(topology: Topology, values: dict[str, str]) -> None:
    topology.env_file.parent.mkdir(parents=True, exist_ok=True)
    topology.env_file.write_text(
        "# The local Swarm cluster made by scripts/cluster_up.sh; `set -a; . THIS_FILE; set +a`\n"
        + env_file_text(values)
    )


def deploy(topology: Topology, stack_up: Path, tag: str, timeout: int) -> None:
    env = {
        **os.environ,
        "DOCKER_HOST": topology.manager.docker_host,
        "IMAGE_PREFIX": topology.image_prefix,
        "IMAGE_TAG": tag,
        "STACK_NAME": topology.settings.stack_name,
    }
    args = [
        str(stack_up),
        "--no-build",
        "--with-registry-auth",
        "--timeout",
        str(timeout),
        "--public-host",
        topology.manager.address,
    ]
    log(f"deploying the stack {topology.settings.stack_name} on the cluster")
    result = subprocess.run(args, env=env, timeout=timeout + 120, check=False)
    if result.returncode != 0:
        raise ClusterError(f"scripts/stack_up.sh failed ({result.returncode}) on the cluster")


# --- the whole cluster -----------------------------------------------------------------------


def up(topology: Topology, registry_binary: str, tag: str) -> None:
    started = time.monotonic()
    existing = [node.index for node in _existing_nodes(topology)]
    if existing and max(existing) > len(topology.nodes):
        raise ClusterError(
            f"a cluster with nodes {existing} exists; remove it (scripts/cluster_down.sh) "
            f"before making one of {len(topology.nodes)}"
        )
    # Before the link exists: no moment in which the subnet could leave by the default route.
    route_guard.add(topology.settings.subnet, topology.host_interface)
    make_network(topology)
    start_registry(topology, registry_binary)
    for node in topology.nodes:
        start_engine(topology, node)
    form_swarm(topology)
    push_images(topology, tag)
    log(
        f"{len(topology.nodes)} engines, Swarm and registry ready in "
        f"{time.monotonic() - started:.0f}s"
    )


def leftovers(topology: Topology) -> list[str]:
    """What of ours is still on the machine (empty after a complete `down`)."""
    prefix = topology.settings.prefix
    found = [f"netns {name}" for name in system.netns_list() if name.startswith(f"{prefix}-")]
    if system.link_exists(topology.host_interface):
        found.append(f"link {topology.host_interface}")
    if route_guard.present(topology.settings.subnet):
        found.append(f"route unreachable {topology.settings.subnet}")
    found += [
        f"mount {point}"
        for point in system.mounts_under([topology.settings.run_dir, topology.settings.data_dir])
    ]
    found += [f"process {pid}" for name in topology.cgroups for pid in system.cgroup_pids(name)]
    found += [
        f"cgroup {path}"
        for path in system.cgroup_dirs(
            [name for name in _our_cgroups(prefix)], system.cgroup_mounts()
        )
    ]
    found += [
        f"folder {path}"
        for path in (topology.settings.run_dir, topology.settings.data_dir)
        if path.exists()
    ]
    return found


def _existing_nodes(topology: Topology) -> list[Node]:
    """The nodes with a data root, also those of a larger cluster made by an earlier `up`."""
    data_dir = topology.settings.data_dir
    if not data_dir.is_dir():
        return []
    indexes = sorted(
        int(path.name[4:]) for path in data_dir.glob("node*") if path.name[4:].isdigit()
    )
    return [
        node
        for node in plan(topology.settings.model_copy(update={"nodes": MAX_NODES})).nodes
        if node.index in indexes
    ]


def _our_cgroups(prefix: str) -> set[str]:
    names: set[str] = set()
    for mount in system.cgroup_mounts():
        if mount.is_dir():
            names.update(
                path.name
                for path in mount.iterdir()
                if path.is_dir() and path.name.startswith(f"{prefix}-")
            )
    return names


def down(topology: Topology) -> None:
    """Removes every process, mount, namespace, link, cgroup and folder of the cluster."""
    prefix = topology.settings.prefix
    for name in sorted(_our_cgroups(prefix)):
        killed = system.kill_cgroup(name)
        if killed:
            log(f"killed {killed} processes of {name}")
    for node in _existing_nodes(topology):
        remove_shim_sockets(node)
    system.unmount_all([topology.settings.run_dir, topology.settings.data_dir])
    for name in system.netns_list():
        if name.startswith(f"{prefix}-"):
            system.delete_netns(name)
    if system.link_exists(topology.host_interface):
        system.ip(None, "link", "delete", topology.host_interface)
    system.remove_cgroups(prefix)
    for path in (topology.settings.run_dir, topology.settings.data_dir):
        shutil.rmtree(path, ignore_errors=True)
    # Last: until everything of the cluster is gone, its subnet stays closed to the outside.
    route_guard.remove(topology.settings.subnet)
    left = leftovers(topology)
    if left:
        raise ClusterError(f"left behind: {'; '.join(left)}")


def kill_node(topology: Topology, node: Node) -> int:
    """The machine dies: its link goes dark, then every process of the node gets SIGKILL.

    Link first: a dead machine sends nothing, so the connections to it are not reset by its
    kernel closing the killed processes' sockets; they just stop answering, as on a power loss.
    """
    system.ip(topology.hub_netns, "link", "set", node.hub_port, "down")
    return system.kill_cgroup(node.cgroup)


def restore_node(topology: Topology, node: Node) -> None:
    """The machine boots again: link up, a fresh /run, the engine restarts and rejoins."""
    system.ip(topology.hub_netns, "link", "set", node.hub_port, "up")
    start_engine(topology, node)
