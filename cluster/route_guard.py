"""Fail closed: while the local cluster exists, its subnet is unreachable from this machine
except through the cluster's own link.

One `unreachable` route for the whole subnet (CLUSTER_SUBNET, a /16). The link's connected /24
(dev pclab0) is more specific and wins while the link is there; when it goes (a crash, a node
test, cluster_down half-way), packets for the subnet fail at once with "network unreachable"
instead of leaving through the default route for whatever network is out there. A watch of
`ip route get` from time to time could not promise that between two looks. `up` adds the route
before the link and `down` removes it last. A subnet another route already covers (anything but
the default route) is refused: that route's network would win, or be shadowed by ours.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from subprocess import CompletedProcess

from cluster import system
from cluster.system import ClusterError

Runner = Callable[..., CompletedProcess[str]]
# Route types `ip route` prints before the destination; a plain unicast route has none.
ROUTE_TYPES = {"unicast", "unreachable", "blackhole", "prohibit", "throw", "local", "broadcast"}


def _destination(line: str) -> tuple[str, str]:
    """(type, destination) of one `ip route show` line."""
    fields = line.split()
    if fields[0] in ROUTE_TYPES:
        return fields[0], fields[1]
    return "unicast", fields[0]


def is_guard(line: str, subnet: str) -> bool:
    kind, destination = _destination(line)
    return kind == "unreachable" and destination == subnet


def conflicts(subnet: str, host_interface: str, routes: Sequence[str]) -> list[str]:
    """The routes of `routes` (lines of `ip -4 route show`) that overlap `subnet` and are not
    the cluster's own (its link's route, its guard) nor the default route."""
    network = ipaddress.IPv4Network(subnet)
    found = []
    for line in routes:
        if not line.strip():
            continue
        kind, destination = _destination(line)
        if destination == "default" or is_guard(line, subnet):
            continue
        if f" dev {host_interface} " in f" {line} ":
            continue
        try:
            other = ipaddress.ip_network(destination, strict=False)
        except ValueError:
            continue
        if isinstance(other, ipaddress.IPv4Network) and other.overlaps(network):
            found.append(line.strip())
    return found


def routes(run: Runner = system.run) -> list[str]:
    return run(["ip", "-4", "route", "show", "table", "main"]).stdout.splitlines()


def add(subnet: str, host_interface: str, run: Runner = system.run) -> None:
    """Refuses an overlapping subnet; otherwise makes `subnet` unreachable but for our link."""
    clashes = conflicts(subnet, host_interface, routes(run))
    if clashes:
        raise ClusterError(
            f"CLUSTER_SUBNET {subnet} overlaps this machine's route(s) {clashes}: the cluster "
            "would take or shadow that network; choose another private /16 (CLUSTER_SUBNET)"
        )
    # replace: idempotent, for `up` after `up` or after a crash.
    run(["ip", "route", "replace", "unreachable", subnet])


def present(subnet: str, run: Runner = system.run) -> bool:
    return any(is_guard(line, subnet) for line in routes(run))


def remove(subnet: str, run: Runner = system.run) -> None:
    if present(subnet, run):
        run(["ip", "route", "delete", "unreachable", subnet])
