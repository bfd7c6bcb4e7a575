"""Keeps geventhttpclient's kept-alive connections in use in a process with over 1024 files open.

Before it reuses a pooled connection, geventhttpclient (2.5-2.6, the versions Locust accepts)
checks that the connection is idle with `select.select([sock], [], [], 0)`. select() cannot take a
descriptor numbered 1024 or more: it raises ValueError, which the check reads as "dead", so the
client closes the connection and opens a new one. A Locust process with a few thousand users has
most of its sockets above 1024, so most requests paid a new TCP connection: under the workshop's
10 000 users that was ~1 200 new connections a second from two workers, which Nginx, the kernel
and the generator paid for in CPU on a machine that was already the limit.

The same check with poll(), which has no such limit. gevent replaces `select.poll` with a
cooperative version; the original is taken because this check must not wait or switch greenlets.
"""

from __future__ import annotations

import select

from gevent import monkey
from geventhttpclient import connectionpool

_poll = monkey.get_original("select", "poll")
# Readable (data or a FIN), an error or a hang-up: an idle kept-alive connection shows none.
_NOT_IDLE = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP | select.POLLNVAL


def is_socket_alive(self: connectionpool.ConnectionPool, sock: object) -> bool:
    """geventhttpclient's own test (idle, no pending data, not closed), for any descriptor."""
    if sock is None:
        return False
    try:
        fd = sock.fileno()  # type: ignore[attr-defined]
        if fd < 0:
            return False
        poller = _poll()
        poller.register(fd, _NOT_IDLE)
        return not poller.poll(0)
    except (OSError, ValueError):
        return False


def install() -> None:
    """Replaces the pool's check; fails loudly if geventhttpclient no longer has it."""
    if not hasattr(connectionpool.ConnectionPool, "_is_socket_alive"):
        raise RuntimeError(
            "geventhttpclient.connectionpool.ConnectionPool._is_socket_alive is gone: check "
            "whether the new version still needs loadtest/keepalive.py"
        )
    connectionpool.ConnectionPool._is_socket_alive = is_socket_alive  # type: ignore[method-assign]
