"""Thousands of TCP connections held open at once from one process, without threads: what 10 000
Locust users do to a published port, minus the requests."""

from __future__ import annotations

import errno
import resource
import selectors
import socket
import struct
import time
from dataclasses import dataclass
from typing import cast


@dataclass
class HeldResult:
    connected: int
    # Connections that failed, by errno name (ECONNREFUSED, ...), and those still pending when
    # the time ran out (a full backlog drops SYNs; the kernel retries them).
    failed: dict[str, int]
    pending: int


def raise_open_file_limit(wanted: int) -> int:
    """Raises this process's soft limit (and as root the hard one) towards `wanted`; returns
    the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            wanted = hard
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return wanted
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return wanted


def hold_connections(host: str, port: int, count: int, seconds: float) -> HeldResult:
    """Opens `count` connections to host:port (non-blocking, all at once), keeps the ones that
    connect open until `seconds` after the start, then resets them all (RST, so no TIME_WAIT
    ties up this host's ports afterwards)."""
    selector = selectors.DefaultSelector()
    sockets: list[socket.socket] = []
    failed: dict[str, int] = {}
    connected = 0
    # An RST on close: linger on, zero seconds.
    reset = struct.pack("ii", 1, 0)
    deadline = time.monotonic() + seconds
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, reset)
            sockets.append(sock)
            code = sock.connect_ex((host, port))
            if code == 0:
                connected += 1
            elif code in (errno.EINPROGRESS, errno.EAGAIN):
                selector.register(sock, selectors.EVENT_WRITE)
            else:
                name = errno.errorcode.get(code, str(code))
                failed[name] = failed.get(name, 0) + 1
        while selector.get_map() and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.2):
                sock = cast(socket.socket, key.fileobj)
                selector.unregister(sock)
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code == 0:
                    connected += 1
                else:
                    name = errno.errorcode.get(code, str(code))
                    failed[name] = failed.get(name, 0) + 1
        pending = len(selector.get_map())
        time.sleep(max(0.0, deadline - time.monotonic()))
        return HeldResult(connected, failed, pending)
    finally:
        selector.close()
        for sock in sockets:
            sock.close()
