"""python -m cluster: the logic behind scripts/cluster_up.sh and scripts/cluster_down.sh."""

from __future__ import annotations

import argparse
import sys
import time

from cluster import lifecycle
from cluster.settings import PROJECT_ROOT, ClusterSettings, ClusterSettingsError
from cluster.system import ClusterError
from cluster.topology import Topology, plan, read_env_file

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cluster",
        description="A Docker Swarm of several engines in network namespaces on this machine.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="engines, Swarm, registry, images (and the stack)")
    up.add_argument("--nodes", type=int, default=None, help="engines (env CLUSTER_NODES, 3)")
    up.add_argument(
        "--registry-binary",
        default="docker-registry",
        help="the registry server (Debian's docker-registry)",
    )
    up.add_argument(
        "--tag",
        default=None,
        help="image tag to push (env IMAGE_TAG, latest)",
    )
    up.add_argument("--no-deploy", action="store_true", help="do not deploy the stack")
    up.add_argument(
        "--timeout", type=int, default=300, help="seconds the stack may take to converge"
    )
    commands.add_parser("down", help="remove everything `up` made, also after a crash")
    commands.add_parser("env", help="print the env file of the running cluster")
    commands.add_parser("leftovers", help="list what of the cluster is left on the machine")
    for name, text in (
        ("kill-node", "SIGKILL every process of a node and cut its link"),
        ("restore-node", "bring a killed node back: link up, engine restarted"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("index", type=int, help="node number (1 is the manager)")
    return parser


def settings_for(args: argparse.Namespace) -> ClusterSettings:
    settings = ClusterSettings()
    if args.command == "up":
        return ClusterSettings(nodes=args.nodes) if args.nodes is not None else settings
    # Only `up` decides the size; the other commands act on the cluster that exists.
    env_file = plan(settings).env_file
    if env_file.exists():
        nodes = read_env_file(env_file.read_text()).get("CLUSTER_NODES")
        if nodes:
            return ClusterSettings(nodes=int(nodes))
    return settings


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_for(args)
    except (ClusterSettingsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    topology = plan(settings)
    try:
        return run_command(args, topology)
    except ClusterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def run_command(args: argparse.Namespace, topology: Topology) -> int:
    if args.command == "up":
        tag = args.tag or topology.settings.image_tag
        lifecycle.up(topology, args.registry_binary, tag)
        values = lifecycle.cluster_env(
            topology,
            nginx_port=topology.settings.nginx_port,
            locust_port=topology.settings.locust_web_port,
        )
        lifecycle.write_env(topology, values)
        if not args.no_deploy:
            lifecycle.deploy(topology, PROJECT_ROOT / "scripts" / "stack_up.sh", tag, args.timeout)
        print(f"# written to {topology.env_file}")
        print(topology.env_file.read_text(), end="")
        return 0
    if args.command == "down":
        started = time.monotonic()
        lifecycle.down(topology)
        lifecycle.log(f"removed in {time.monotonic() - started:.1f}s; nothing left")
        return 0
    if args.command == "env":
        if not topology.env_file.exists():
            raise ClusterError(f"no cluster is up ({topology.env_file} is missing)")
        print(topology.env_file.read_text(), end="")
        return 0
    if args.command == "leftovers":
        left = lifecycle.leftovers(topology)
        print("\n".join(left) if left else "nothing")
        return 1 if left else 0
    node = topology.node(args.index)
    if node.is_manager:
        raise ClusterError("node 1 is the manager and the edge: lose a worker instead")
    if args.command == "kill-node":
        killed = lifecycle.kill_node(topology, node)
        lifecycle.log(f"{node.name}: killed {killed} processes, link down")
    else:
        lifecycle.restore_node(topology, node)
        lifecycle.log(f"{node.name}: engine back")
    return 0


if __name__ == "__main__":
    sys.exit(main())
