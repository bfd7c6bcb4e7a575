"""Unit tests of the local cluster's plan, settings and OS helpers (no root, no Docker)."""

from __future__ import annotations

import hashlib
import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest

from cluster import lifecycle, system
from cluster.settings import ClusterSettings, ClusterSettingsError
from cluster.topology import (
    daemon_config,
    dockerd_command,
    env_file_text,
    node_labels,
    plan,
    read_env_file,
    registry_config_text,
    shim_socket,
    swarm_init_args,
    swarm_join_args,
)
from tests.support import PROJECT_ROOT

HOST_DOCKER_PATHS = ("/var/lib/docker", "/var/run/docker", "/run/docker", "/run/containerd")


def settings(**overrides: object) -> ClusterSettings:
    values: dict[str, object] = {
        "nodes": 3,
        "prefix": "pclab",
        "subnet": "10.213.0.0/16",
        "run_dir": Path("/run/penguins-cluster"),
        "data_dir": Path("/var/lib/penguins-cluster"),
    }
    values.update(overrides)
    return ClusterSettings(**values)  # type: ignore[arg-type]


def test_every_address_is_in_the_subnet_and_unique() -> None:
    topology = plan(settings(nodes=9))
    subnet = ipaddress.ip_network("10.213.0.0/16")
    links = ipaddress.ip_network("10.213.0.0/24")
    addresses = [topology.host_address, topology.hub_address, *(n.address for n in topology.nodes)]
    assert len(set(addresses)) == len(addresses) == 11
    for address in addresses:
        assert ipaddress.ip_address(address) in links
    gwbridge = ipaddress.ip_network(topology.gwbridge_pool)
    overlays = ipaddress.ip_network(topology.overlay_pool)
    # Node links, each node's docker_gwbridge and the overlays never overlap, all in our range.
    for network in (gwbridge, overlays):
        assert network.subnet_of(subnet)  # type: ignore[arg-type]
        assert not network.overlaps(links)
    assert not gwbridge.overlaps(overlays)


def test_interface_and_namespace_names_fit_and_carry_the_prefix() -> None:
    topology = plan(settings(nodes=9, prefix="abcdefgh"))
    # The kernel limits interface names to 15 bytes.
    interfaces = [topology.host_interface, *(node.hub_port for node in topology.nodes)]
    assert all(len(name) <= 15 for name in interfaces)
    assert len(set(interfaces)) == len(interfaces)
    for names in (topology.netns_names, topology.cgroups):
        assert len(set(names)) == len(names) == 10
        # cluster_down removes exactly the namespaces and cgroups that carry the prefix.
        assert all(name.startswith("abcdefgh-") for name in names)


def test_each_engine_has_its_own_paths_and_never_the_hosts() -> None:
    topology = plan(settings())
    commands = [dockerd_command(node) for node in topology.nodes]
    for node, command in zip(topology.nodes, commands, strict=True):
        for flag in ("--data-root", "--exec-root", "--pidfile", "--config-file", "--host"):
            assert flag in command
        joined = " ".join(command)
        assert str(node.data_root) in joined and str(node.exec_root) in joined
        assert f"--cgroup-parent /{node.cgroup}" in joined
        # No --containerd: dockerd starts its own below the exec root, not the host's.
        assert "--containerd" not in joined
        assert not any(path in joined for path in HOST_DOCKER_PATHS)
    flat = [" ".join(command) for command in commands]
    assert len(set(flat)) == len(flat)


def test_only_cluster_engines_trust_the_registry() -> None:
    topology = plan(settings())
    config = daemon_config(topology)
    assert config["insecure-registries"] == ["10.213.0.2:5000"]
    assert config["iptables"] is False and config["bridge"] == "none"
    assert topology.image_prefix == "10.213.0.2:5000/"
    registry = registry_config_text(topology)
    assert '"addr": "10.213.0.2:5000"' in registry
    assert str(topology.registry_dir) in registry


def test_swarm_is_formed_on_the_node_links() -> None:
    topology = plan(settings())
    init = swarm_init_args(topology)
    assert init[init.index("--advertise-addr") + 1] == "10.213.0.11"
    assert init[init.index("--default-addr-pool") + 1] == topology.overlay_pool
    join = swarm_join_args(topology, topology.nodes[2], "TOKEN")
    assert join[-1] == "10.213.0.11:2377"
    assert join[join.index("--advertise-addr") + 1] == "10.213.0.13"


def test_node_one_is_the_edge_and_the_rest_are_workers() -> None:
    topology = plan(settings(nodes=3))
    labels = [node_labels(node) for node in topology.nodes]
    assert [label["penguins.role"] for label in labels] == ["edge", "worker", "worker"]
    assert len({label["penguins.zone"] for label in labels}) == 3
    with pytest.raises(ValueError, match="nodes 1..3"):
        topology.node(4)


def test_env_file_round_trips_and_refuses_unsafe_values() -> None:
    values = {"DOCKER_HOST": "unix:///run/x/docker.sock", "CLUSTER_NGINX_URL": "http://a:8000"}
    text = env_file_text(values)
    assert read_env_file("# comment\n" + text) == values
    # The file is also `source`d by shells: it must mean the same there.
    shell = subprocess.run(
        ["bash", "-c", f"{text}\nprintf '%s' \"$DOCKER_HOST\""], capture_output=True, text=True
    )
    assert shell.stdout == values["DOCKER_HOST"]
    with pytest.raises(ValueError):
        env_file_text({"X": "it's"})
    with pytest.raises(ValueError):
        env_file_text({"NOT-A-NAME": "x"})


@pytest.mark.parametrize(
    "overrides",
    [
        {"nodes": 0},
        {"nodes": 10},
        {"prefix": "Bad-Name"},
        {"prefix": "muchtoolong"},
        {"subnet": "10.213.0.0/24"},
        {"subnet": "8.8.0.0/16"},
        {"subnet": "nonsense"},
        {"run_dir": Path("/run")},
        {"data_dir": Path("relative/dir")},
    ],
)
def test_settings_refuse_what_cannot_work(overrides: dict[str, object]) -> None:
    with pytest.raises(ClusterSettingsError):
        settings(**overrides)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLUSTER_NODES", "4")
    monkeypatch.setenv("CLUSTER_SUBNET", "10.77.0.0/16")
    topology = plan(ClusterSettings())
    assert len(topology.nodes) == 4
    assert topology.manager.address == "10.77.0.11"


MOUNTINFO = """\
22 1 8:1 / / rw - ext4 /dev/vda rw
30 22 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw
31 30 0:27 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
32 30 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
33 30 0:29 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
40 22 0:40 / /var/lib/docker/overlay2/abc/merged rw - overlay overlay rw
41 22 0:41 / /var/lib/penguins-cluster/node1/overlay2/abc/merged rw - overlay overlay rw
42 22 0:42 / /run/penguins-cluster/node1/exec/netns/1-x rw - nsfs nsfs rw
43 22 0:43 / /var/lib/penguins-cluster-other/x rw - ext4 /dev/vdb rw
44 22 0:44 / /run/penguins-cluster/node1/with\\040space rw - tmpfs tmpfs rw
45 22 0:45 / /var/lib/penguins-cluster rw - tmpfs tmpfs rw
"""


def test_unmount_order_takes_only_our_folders_deepest_first() -> None:
    points = system.mounts_under(
        [Path("/run/penguins-cluster"), Path("/var/lib/penguins-cluster")], MOUNTINFO
    )
    assert points == [
        Path("/var/lib/penguins-cluster/node1/overlay2/abc/merged"),
        Path("/run/penguins-cluster/node1/exec/netns/1-x"),
        Path("/run/penguins-cluster/node1/with space"),
        Path("/var/lib/penguins-cluster"),
    ]


def test_cgroup_hierarchies_and_the_one_that_tracks_processes() -> None:
    assert system.cgroup_mounts(MOUNTINFO) == [
        Path("/sys/fs/cgroup/pids"),
        Path("/sys/fs/cgroup/memory"),
        Path("/sys/fs/cgroup/unified"),
    ]
    assert system.tracking_hierarchy(MOUNTINFO) == Path("/sys/fs/cgroup/pids")
    only_v2 = "30 22 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    assert system.tracking_hierarchy(only_v2) == Path("/sys/fs/cgroup")
    with pytest.raises(system.ClusterError):
        system.tracking_hierarchy("22 1 8:1 / / rw - ext4 /dev/vda rw\n")


def test_cgroup_folders_are_removed_leaves_first_and_only_ours(tmp_path: Path) -> None:
    for hierarchy in ("pids", "memory"):
        (tmp_path / hierarchy / "pclab-node1" / "engine").mkdir(parents=True)
        (tmp_path / hierarchy / "pclab-node1" / "abc123").mkdir(parents=True)
        (tmp_path / hierarchy / "docker" / "xyz").mkdir(parents=True)
    mounts = [tmp_path / "pids", tmp_path / "memory"]
    dirs = system.cgroup_dirs(["pclab-node1"], mounts)
    assert len(dirs) == 6
    assert all("docker" not in path.parts for path in dirs)
    for path in dirs:  # rmdir in this order works only when every child comes first
        path.rmdir()
    assert (tmp_path / "pids" / "docker" / "xyz").is_dir()


def test_cli_refuses_a_bad_node_count_with_a_clear_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cluster", "up", "--nodes", "0"],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=30,
    )
    assert result.returncode == 2
    assert "nodes must be within 1..9" in result.stderr


@pytest.mark.parametrize("script", ["cluster_up.sh", "cluster_down.sh"])
def test_cluster_scripts_have_help_and_reject_unknown_options(script: str) -> None:
    path = PROJECT_ROOT / "scripts" / script
    helped = subprocess.run([str(path), "--help"], capture_output=True, text=True, timeout=30)
    assert helped.returncode == 0 and "Usage:" in helped.stdout
    bad = subprocess.run([str(path), "--bogus"], capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0 and "unknown option: --bogus" in bad.stderr


def test_shim_sockets_are_named_by_the_nodes_own_containerd() -> None:
    topology = plan(settings())
    node1, node2 = topology.nodes[:2]
    # containerd 1.6: sha256 of "<containerd socket>/<namespace>/<container id>".
    expected = hashlib.sha256(
        b"/run/penguins-cluster/node1/exec/containerd/containerd.sock/moby/abc"
    ).hexdigest()
    assert shim_socket(node1, "abc") == Path("/run/containerd/s") / expected
    assert shim_socket(node1, "abc") != shim_socket(node2, "abc")
    assert shim_socket(node1, "abc") != shim_socket(node1, "abd")


def test_up_refuses_to_shrink_a_cluster_before_touching_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def touched(*_: object) -> None:
        raise AssertionError("up went on to make the network")

    monkeypatch.setattr(lifecycle, "make_network", touched)
    data_dir = tmp_path / "data"
    for index in (1, 2, 3):
        (data_dir / f"node{index}").mkdir(parents=True)
    small = plan(settings(nodes=2, data_dir=data_dir, run_dir=tmp_path / "run"))
    with pytest.raises(system.ClusterError, match=r"nodes \[1, 2, 3\] exists"):
        lifecycle.up(small, registry_binary="unused", tag="latest")
    assert not (tmp_path / "run").exists()
