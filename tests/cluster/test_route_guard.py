"""cluster/route_guard.py: the cluster's subnet closed but for its own link, with a fake `ip`."""

from __future__ import annotations

from subprocess import CompletedProcess

import pytest

from cluster import route_guard
from cluster.system import ClusterError

SUBNET = "10.213.0.0/16"
LINK = "pclab0"
HOST_ROUTES = [
    "default via 192.0.2.1 dev eth0",
    "172.17.0.0/16 dev docker0 proto kernel scope link src 172.17.0.1 linkdown",
    "192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2",
]


class FakeIp:
    """A routing table that `ip route` commands read and change."""

    def __init__(self, table: list[str]) -> None:
        self.table = list(table)
        self.calls: list[list[str]] = []

    def __call__(self, args: list[str], **_: object) -> CompletedProcess[str]:
        self.calls.append(list(args))
        if args[:3] == ["ip", "-4", "route"]:
            return CompletedProcess(args, 0, "\n".join(self.table) + "\n", "")
        if args[:4] == ["ip", "route", "replace", "unreachable"]:
            self.table = [line for line in self.table if not line.startswith("unreachable ")]
            self.table.append(f"unreachable {args[4]}")
        elif args[:4] == ["ip", "route", "delete", "unreachable"]:
            self.table.remove(f"unreachable {args[4]}")
        else:
            raise AssertionError(f"unexpected command {args}")
        return CompletedProcess(args, 0, "", "")


def test_up_adds_the_guard_once_and_down_removes_it() -> None:
    ip = FakeIp(HOST_ROUTES)
    route_guard.add(SUBNET, LINK, run=ip)
    # The cluster's link then comes, with its connected /24: neither is a conflict for `up` again.
    ip.table.append("10.213.0.0/24 dev pclab0 proto kernel scope link src 10.213.0.1")
    route_guard.add(SUBNET, LINK, run=ip)
    assert ip.table.count(f"unreachable {SUBNET}") == 1
    assert route_guard.present(SUBNET, run=ip)
    route_guard.remove(SUBNET, run=ip)
    assert not route_guard.present(SUBNET, run=ip)
    route_guard.remove(SUBNET, run=ip)  # twice is harmless
    assert [call for call in ip.calls if "delete" in call] == [
        ["ip", "route", "delete", "unreachable", SUBNET]
    ]


@pytest.mark.parametrize(
    "route",
    [
        "10.213.7.0/24 dev eth1 proto kernel scope link src 10.213.7.5",  # inside
        "10.0.0.0/8 via 192.0.2.9 dev eth0",  # around it
        "10.213.0.0/16 dev tun0 scope link",  # the same
        "blackhole 10.213.128.0/17",  # somebody else's guard
    ],
)
def test_a_subnet_another_route_covers_is_refused_before_any_change(route: str) -> None:
    ip = FakeIp([*HOST_ROUTES, route])
    with pytest.raises(ClusterError, match="overlaps this machine's route"):
        route_guard.add(SUBNET, LINK, run=ip)
    assert [call for call in ip.calls if call[:3] != ["ip", "-4", "route"]] == []


def test_the_default_route_and_other_networks_are_no_conflict() -> None:
    assert route_guard.conflicts(SUBNET, LINK, [*HOST_ROUTES, "10.214.0.0/16 dev eth2"]) == []
