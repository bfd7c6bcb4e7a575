"""Refuses a target before the matrix starts, naming the field: an image the engine does not
have, a port its container does not listen on, a health path that never answers 2xx, an
`expect_status` a smoke request never sees. (A body file that is not JSON is refused earlier,
when the matrix file is read.)

Why a smoke container and not the first cell: a cell runs the image under a cell's limits, behind
Nginx, after the api service has been changed, so a wrong port there reads "502 from Nginx" and
costs a deployment and a restore. One plain container of the image (no limits, the target's
environment) on the engine's default bridge, asked directly at its address from here, says which
field is wrong: the container's own listening sockets (/proc/<pid>/net/tcp of its main process,
read on the host) name the port it does listen on, and each request of the block is sent once
and its status compared with what the block expects. The container is removed afterwards,
whatever happened."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from loadtest.data import target_requests
from matrix.config import MatrixFile, TargetSpec
from matrix.errors import MatrixRunError
from stack.engine import Engine

POLL_INTERVAL_S = 0.5
PROBE_TIMEOUT_S = 3.0
# A container listening on other ports, but not on the target's, this long is refused: an app
# binds its port at start, not seconds after it listens elsewhere.
WRONG_PORT_GRACE_S = 5.0
LOG_TAIL_LINES = 20
# How much of an unexpected answer's body an error message quotes.
ANSWER_EXCERPT = 200
# TCP_LISTEN in /proc/net/tcp's "st" column.
_LISTEN = "0A"


class TargetRefused(MatrixRunError):
    """A target the matrix cannot measure; the message names the field."""


def listening_ports(pid: int, proc: Path = Path("/proc")) -> set[int] | None:
    """The TCP ports process `pid`'s network namespace listens on (IPv4 and IPv6); None when
    they cannot be read (no such process, or not allowed)."""
    ports: set[int] = set()
    found = False
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / str(pid) / "net" / table).read_text(encoding="ascii").splitlines()
        except OSError:
            continue
        found = True
        for line in lines[1:]:
            fields = line.split()
            if len(fields) > 3 and fields[3] == _LISTEN:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports if found else None


def _status(request: urllib.request.Request) -> tuple[int, bytes]:
    """The answer's status and body; HTTP errors are answers too. OSError when none came."""
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read()


def _describe_ports(ports: set[int] | None) -> str:
    if ports is None:
        return "its listening sockets could not be read"
    return f"it listens on {', '.join(map(str, sorted(ports)))}" if ports else "it listens on none"


def _wait_for_health(engine: Engine, container: str, target: TargetSpec, timeout: float) -> str:
    """The container's base URL once its health path answers 2xx; TargetRefused otherwise."""
    deadline = time.monotonic() + timeout
    wrong_port_since: float | None = None
    last = "no answer yet"
    answered = False
    while True:
        state = engine.container_state(container)
        if not state.running:
            logs = engine.container_logs(container, LOG_TAIL_LINES).strip()
            raise TargetRefused(
                f"target.image: a container of {target.image} exited with code "
                f"{state.exit_code} before answering on port {target.port}"
                + (f"; its last lines:\n{logs}" if logs else "")
            )
        base = f"http://{state.address}:{target.port}"
        try:
            status, _ = _status(urllib.request.Request(base + target.health_path))
        except OSError as error:
            ports = listening_ports(state.pid)
            last = f"no answer on port {target.port} ({error}); {_describe_ports(ports)}"
            if ports and target.port not in ports:
                wrong_port_since = wrong_port_since or time.monotonic()
                if time.monotonic() - wrong_port_since >= WRONG_PORT_GRACE_S:
                    raise TargetRefused(
                        f"target.port: the container of {target.image} does not listen on "
                        f"{target.port}; {_describe_ports(ports)}"
                    ) from None
            else:
                wrong_port_since = None
        else:
            if 200 <= status < 300:
                return base
            answered = True
            last = f"{target.health_path} answered {status}"
        if time.monotonic() > deadline:
            field = "target.health_path" if answered else "target.port"
            raise TargetRefused(
                f"{field}: the container of {target.image} did not answer "
                f"{target.health_path} with 2xx within {timeout:g} s (last: {last})"
            )
        time.sleep(POLL_INTERVAL_S)


def _send_each_request(base: str, target: TargetSpec) -> None:
    """Each request of the block once; TargetRefused when one's status is not what it expects."""
    for index, request in enumerate(target_requests(target.requests_document())):
        what = f"{request.method} {request.path}"
        try:
            status, body = _status(
                urllib.request.Request(
                    base + request.path,
                    data=request.body,
                    headers=request.headers,
                    method=request.method,
                )
            )
        except OSError as error:
            raise TargetRefused(
                f"target.requests.{index}: {what} got no answer ({error})"
            ) from None
        if request.accepts(status):
            continue
        excerpt = body[:ANSWER_EXCERPT].decode("utf-8", "replace")
        if request.expect_status is None:
            raise TargetRefused(
                f"target.requests.{index}: {what} answered {status}, not 2xx "
                f"(no expect_status given): {excerpt}"
            )
        raise TargetRefused(
            f"target.requests.{index}.expect_status: {request.expect_status} never seen: "
            f"{what} answered {status}: {excerpt}"
        )


def check_target(
    matrix: MatrixFile,
    engine: Engine,
    stack_name: str,
    say: Callable[[str], None],
    *,
    reachable: bool = True,
) -> None:
    """Refuses the matrix's target (TargetRefused naming the field) before anything changes;
    nothing without a target. `reachable` False (a cluster's engine, whose containers this host
    cannot address) checks the image only."""
    target = matrix.target
    if target is None:
        return
    if not engine.image_exists(target.image):
        raise TargetRefused(
            f"target.image: {target.image} is not an image of this Docker engine "
            "(docker image ls); build it or docker load it here first: the lab pulls nothing"
        )
    if not reachable:
        say(f"target {target.image}: the image is there; its port and requests are not smoked here")
        return
    name = f"{stack_name}-target-smoke"
    engine.remove_container(name)  # one an interrupted check left behind
    say(f"target {target.image}: smoke test of one container (port, health path, requests)")
    container = engine.start_container(target.image, target.env, name)
    try:
        base = _wait_for_health(engine, container, target, matrix.converge_timeout_seconds)
        _send_each_request(base, target)
    finally:
        engine.remove_container(container)
    say(f"target {target.image}: answers {target.health_path} and every request as expected")
