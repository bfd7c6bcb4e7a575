"""LAB_NETWORK_ACCESS=local (the default): a deployed stack's published ports answer this
machine only, and the Swarm listens on loopback.

The outside client lives in a network namespace this test makes, behind a veth pair whose
addresses (link-local, 169.254.213.0/30) the test also makes and removes: no other interface or
host is ever addressed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support import (
    PROJECT_ROOT,
    docker_engine_available,
    free_port,
    require,
    require_command,
    run_checked,
)

pytestmark = pytest.mark.swarm

STACK = "penguins-netaccess"
NETNS = f"pclab-netacc-{os.getpid()}"
HOST_LINK = f"pna{os.getpid() % 100000}h"
NETNS_LINK = "pnaclient"
HOST_ADDRESS = "169.254.213.1"
CLIENT_ADDRESS = "169.254.213.2"
# The client's verdict on one TCP connect, from inside the namespace.
CLIENT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10).close()
    print("answered")
except ConnectionRefusedError:
    print("refused")
except OSError as error:
    print(f"failed: {error}")
"""


@dataclass
class Deployed:
    ports: dict[str, int]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def _stack_down() -> None:
    run_checked([str(PROJECT_ROOT / "scripts" / "stack_down.sh"), "--stack-name", STACK], 240)


@pytest.fixture(scope="module")
def client_namespace() -> Iterator[str]:
    require(os.geteuid() == 0, "making a network namespace needs root")
    require_command("ip")
    try:
        _ip("netns", "add", NETNS)
        _ip("link", "add", HOST_LINK, "type", "veth", "peer", "name", NETNS_LINK, "netns", NETNS)
        _ip("addr", "add", f"{HOST_ADDRESS}/30", "dev", HOST_LINK)
        _ip("link", "set", HOST_LINK, "up")
        _ip("-n", NETNS, "addr", "add", f"{CLIENT_ADDRESS}/30", "dev", NETNS_LINK)
        _ip("-n", NETNS, "link", "set", NETNS_LINK, "up")
        _ip("-n", NETNS, "link", "set", "lo", "up")
        yield NETNS
    finally:
        subprocess.run(["ip", "link", "delete", HOST_LINK], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "delete", NETNS], capture_output=True, check=False)


@pytest.fixture(scope="module")
def deployed() -> Iterator[Deployed]:
    require(docker_engine_available(), "no Docker engine (scripts/test.sh starts one as root)")
    ports = {name: free_port() for name in ("NGINX_PORT", "LOCUST_WEB_PORT", "PROMETHEUS_PORT")}
    env = {
        **os.environ,
        **{name: str(port) for name, port in ports.items()},
        "API_REPLICAS": "1",
        "API_CPUS": "0.5",
        "API_MEMORY": "256M",
    }
    env.pop("LAB_NETWORK_ACCESS", None)  # the default is what is tested
    _stack_down()
    try:
        run_checked(
            [str(PROJECT_ROOT / "scripts" / "stack_up.sh"), "--stack-name", STACK, "--no-build"],
            timeout=900,
            env=env,
        )
        yield Deployed(ports)
    finally:
        _stack_down()


def _connect(netns: str | None, address: str, port: int) -> str:
    where = ["ip", "netns", "exec", netns] if netns else []
    result = subprocess.run(
        [*where, sys.executable, "-c", CLIENT, address, str(port)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


def _publish(mode: str, deployed: Deployed) -> None:
    """stack_up.sh's own step for the stack's ports, in `mode`."""
    ports = " ".join(str(port) for port in deployed.ports.values())
    run_checked(
        [
            "bash",
            "-c",
            "source scripts/lib/common.sh && source scripts/lib/docker.sh && "
            f"LAB_NETWORK_ACCESS={mode} publish_ports {STACK} {ports}",
        ]
    )


def test_published_ports_answer_loopback_and_nothing_outside(
    deployed: Deployed, client_namespace: str
) -> None:
    for name, port in deployed.ports.items():
        assert _connect(None, "127.0.0.1", port) == "answered", name
        assert _connect(client_namespace, HOST_ADDRESS, port) == "refused", name
    # The same client reaches the port once the stack is opened (LAB_NETWORK_ACCESS=open): the
    # refusal above came from the lab's rule, not from a broken link. Then closed again.
    nginx = deployed.ports["NGINX_PORT"]
    try:
        _publish("open", deployed)
        assert _connect(client_namespace, HOST_ADDRESS, nginx) == "answered"
    finally:
        _publish("local", deployed)
    assert _connect(client_namespace, HOST_ADDRESS, nginx) == "refused"


def test_swarm_ports_listen_on_loopback_only(deployed: Deployed) -> None:
    listening = subprocess.run(
        ["ss", "-Hltn"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    local_addresses = [line.split()[3] for line in listening.splitlines() if line.split()]
    for port in ("2377", "7946"):
        bound = [address for address in local_addresses if address.endswith(f":{port}")]
        assert bound, f"nothing listens on {port}"
        assert all(address.startswith("127.0.0.1:") for address in bound), bound
