"""The operating-system side: commands, network namespaces, cgroups, mounts, processes.

Everything here acts only on names and folders it is given, all of them the cluster's own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

NETNS_DIR = Path("/run/netns")
MOUNTINFO = Path("/proc/self/mountinfo")


class ClusterError(RuntimeError):
    """A step failed; the message says which command and what it printed."""


def run(
    args: Sequence[str],
    *,
    timeout: float = 120,
    check: bool = True,
    input_text: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(
            list(args),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input_text,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise ClusterError(f"`{' '.join(args)}` did not finish within {timeout:.0f}s") from error
    if check and result.returncode != 0:
        raise ClusterError(
            f"`{' '.join(args)}` failed ({result.returncode}): "
            f"{(result.stderr or result.stdout).strip()[-2000:]}"
        )
    return result


# --- network namespaces and links ------------------------------------------------------------


def netns_list() -> list[str]:
    # `ip netns list` prints "name (id: N)" for namespaces with an id.
    out = run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def ensure_netns(name: str) -> None:
    if name not in netns_list():
        run(["ip", "netns", "add", name])
    run(["ip", "-n", name, "link", "set", "lo", "up"])


def delete_netns(name: str) -> None:
    run(["ip", "netns", "delete", name], check=False)


def link_exists(name: str, netns: str | None = None) -> bool:
    where = ["-n", netns] if netns else []
    return run(["ip", *where, "link", "show", "dev", name], check=False).returncode == 0


def ip(netns: str | None, *args: str, check: bool = True) -> None:
    where = ["-n", netns] if netns else []
    run(["ip", *where, *args], check=check)


def netns_path(name: str) -> Path:
    return NETNS_DIR / name


# --- cgroups: every process of a node lives below one cgroup, so it can be killed whole ------


def cgroup_mounts(mountinfo: str | None = None) -> list[Path]:
    """Mount points of every cgroup (v1) and cgroup2 hierarchy."""
    text = MOUNTINFO.read_text() if mountinfo is None else mountinfo
    found = []
    for line in text.splitlines():
        before, _, after = line.partition(" - ")
        fstype = after.split(" ", 1)[0]
        if fstype in {"cgroup", "cgroup2"}:
            found.append(Path(_unescape(before.split()[4])))
    return found


def tracking_hierarchy(mountinfo: str | None = None) -> Path:
    """The hierarchy whose cgroup.procs lists a node's processes: v1 `pids`, else cgroup2."""
    mounts = cgroup_mounts(mountinfo)
    for mount in mounts:
        if mount.name == "pids":
            return mount
    for mount in mounts:
        if mount.name in {"cgroup", "unified"} or str(mount) == "/sys/fs/cgroup":
            return mount
    raise ClusterError("no cgroup hierarchy is mounted (looked in /proc/self/mountinfo)")


def join_cgroup(name: str, leaf: str) -> None:
    """Moves the calling process into <tracking hierarchy>/name/leaf (used before an exec)."""
    path = tracking_hierarchy() / name / leaf
    path.mkdir(parents=True, exist_ok=True)
    (path / "cgroup.procs").write_text(str(os.getpid()))


def cgroup_pids(name: str) -> set[int]:
    root = tracking_hierarchy() / name
    pids: set[int] = set()
    if not root.is_dir():
        return pids
    for procs in root.rglob("cgroup.procs"):
        try:
            pids.update(int(pid) for pid in procs.read_text().split())
        except OSError:
            continue  # the cgroup went away while we read it
    return pids


def kill_cgroup(name: str, timeout: float = 30) -> int:
    """SIGKILLs every process below cgroup `name` until none is left; returns how many."""
    killed: set[int] = set()
    deadline = time.monotonic() + timeout
    while True:
        pids = cgroup_pids(name)
        if not pids:
            return len(killed)
        if time.monotonic() > deadline:
            raise ClusterError(f"processes {sorted(pids)} of cgroup {name} survive SIGKILL")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


def cgroup_dirs(names: Iterable[str], mounts: Iterable[Path]) -> list[Path]:
    """Every folder below the named cgroups in every hierarchy, deepest first (rmdir order)."""
    dirs: list[Path] = []
    for mount in mounts:
        for name in names:
            top = mount / name
            if top.is_dir():
                dirs.extend(path for path in top.rglob("*") if path.is_dir())
                dirs.append(top)
    return sorted(set(dirs), key=lambda path: len(path.parts), reverse=True)


def remove_cgroups(prefix: str) -> None:
    mounts = cgroup_mounts()
    names = {
        path.name
        for mount in mounts
        if mount.is_dir()
        for path in mount.iterdir()
        if path.is_dir() and path.name.startswith(f"{prefix}-")
    }
    for path in cgroup_dirs(names, mounts):
        try:
            path.rmdir()
        except OSError as error:
            raise ClusterError(f"cannot remove cgroup {path}: {error}") from error


# --- mounts ------------------------------------------------------------------------------------


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal.
    return (
        field.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
    )


def mounts_under(roots: Iterable[Path], mountinfo: str | None = None) -> list[Path]:
    """Mount points at or below any of `roots`, deepest (and latest) first: unmount order."""
    text = MOUNTINFO.read_text() if mountinfo is None else mountinfo
    roots = [Path(root) for root in roots]
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        point = Path(_unescape(fields[4]))
        if any(point == root or root in point.parents for root in roots):
            found.append(point)
    # Later mounts may sit on earlier ones at the same path: reverse first, then a stable sort.
    found.reverse()
    return sorted(found, key=lambda path: len(path.parts), reverse=True)


def unmount_all(roots: Iterable[Path]) -> None:
    roots = list(roots)
    for _ in range(5):
        points = mounts_under(roots)
        if not points:
            return
        for point in points:
            if run(["umount", str(point)], check=False).returncode != 0:
                run(["umount", "--lazy", str(point)], check=False)
    left = mounts_under(roots)
    if left:
        raise ClusterError(f"still mounted: {', '.join(map(str, left))}")


# --- processes ---------------------------------------------------------------------------------


def spawn(
    command: Sequence[str],
    *,
    netns: str,
    cgroup: str,
    leaf: str,
    log_path: Path,
    hostname: str | None = None,
) -> subprocess.Popen[bytes]:
    """Starts `command` detached, inside network namespace `netns` and cgroup `cgroup/leaf`.

    nsenter --net changes only the network namespace: `ip netns exec` would also remount /sys,
    which hides the cgroup mounts from dockerd. With `hostname`, the process also gets a UTS
    namespace of its own, so each engine shows up in `docker node ls` under its node's name.
    """
    argv = ["nsenter", f"--net={netns_path(netns)}", "--"]
    if hostname:
        argv += ["unshare", "--uts", "--", "sh", "-c", 'hostname "$0" && exec "$@"', hostname]
    argv += list(command)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: join_cgroup(cgroup, leaf),
        )


def wait_until(
    what: str, condition: Callable[[], bool], timeout: float, interval: float = 0.5
) -> float:
    """Polls `condition()` until true; returns the seconds it took, raises after `timeout`."""
    start = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
