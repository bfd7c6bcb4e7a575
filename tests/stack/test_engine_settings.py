"""scripts/lib/docker.sh's check of a running engine: it never restarts an engine this project
did not start, nor one with containers on it; it warns and says how to apply the settings. And
a dockerd it starts in the background keeps none of the caller's open files.

The "engine" is a sleeping process (its /proc entry is what the check reads) and `docker`,
`dockerd` and `systemctl` are stubs on PATH, so no real engine is touched.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack.waits import wait_until
from tests.support import PROJECT_ROOT


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(["sleep", "60"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def _check(
    tmp_path: Path, pid: int, ours: bool, containers: str
) -> subprocess.CompletedProcess[str]:
    stubs = tmp_path / "bin"
    stubs.mkdir(exist_ok=True)
    docker = stubs / "docker"
    # `docker info` answers; `docker ps --quiet` lists the given containers.
    docker.write_text(f'#!/bin/sh\n[ "$1" = ps ] && printf "%s" "{containers}"\nexit 0\n')
    docker.chmod(0o755)
    # Were the guard broken, a restart would start these, never a real engine.
    for name in ("dockerd", "systemctl"):
        (stubs / name).write_text("#!/bin/sh\nexit 0\n")
        (stubs / name).chmod(0o755)
    (tmp_path / "docker.pid").write_text(f"{pid}\n")
    (tmp_path / "ours.pid").write_text(f"{pid if ours else 1}\n")
    env = {
        **os.environ,
        "PATH": f"{stubs}:{os.environ['PATH']}",
        "DOCKERD_PIDFILE": str(tmp_path / "docker.pid"),
        "DOCKERD_OURS": str(tmp_path / "ours.pid"),
        "DOCKER_DAEMON_JSON": str(tmp_path / "daemon.json"),
    }
    env.pop("DOCKER_HOST", None)
    script = (
        "set -euo pipefail; source scripts/lib/common.sh && source scripts/lib/docker.sh"
        " && ensure_docker_engine"
    )
    return subprocess.run(
        ["bash", "-c", script],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("ours", "containers"),
    [(False, ""), (True, "0123456789ab")],
    ids=["someone else's engine", "ours, but containers run on it"],
)
def test_an_engine_without_the_settings_is_left_running_with_a_warning(
    tmp_path: Path, engine: subprocess.Popen[bytes], ours: bool, containers: str
) -> None:
    result = _check(tmp_path, engine.pid, ours, containers)
    assert result.returncode == 0, result.stderr
    assert engine.poll() is None, "the engine was stopped"
    assert "the userland proxy is on" in result.stderr
    assert "Stop it and run this script again" in result.stderr
    # Nothing was written on the user's behalf.
    assert not (tmp_path / "daemon.json").exists()


def test_a_dockerd_started_in_the_background_holds_none_of_the_callers_descriptors(
    tmp_path: Path,
) -> None:
    # A caller that wrapped the lab in `flock` (fd 9 here) got its lock back only when a dockerd
    # the lab had started ended, so its next run waited for ever.
    stubs = tmp_path / "bin"
    stubs.mkdir()
    started = tmp_path / "dockerd.pid"
    (stubs / "dockerd").write_text(f"#!/bin/sh\necho $$ > {started}\nexec sleep 30\n")
    (stubs / "dockerd").chmod(0o755)
    lock = tmp_path / "caller.lock"
    script = (
        "set -euo pipefail; source scripts/lib/common.sh && source scripts/lib/docker.sh"
        f" && exec 9>{lock} && dockerd_detached"
    )
    env = {
        **os.environ,
        "PATH": f"{stubs}:{os.environ['PATH']}",
        "DOCKERD_LOG": str(tmp_path / "dockerd.log"),
    }
    subprocess.run(["bash", "-c", script], cwd=PROJECT_ROOT, env=env, check=True, timeout=30)

    def execed() -> tuple[bool, str]:
        # The stub writes its pid, then execs sleep, which keeps what the stub had open.
        text = started.read_text().strip() if started.is_file() else ""
        done = bool(text) and os.readlink(f"/proc/{text}/exe").endswith("/sleep")
        return done, f"pid file: {text!r}"

    wait_until(execed, timeout=10, interval=0.05)
    pid = int(started.read_text())
    try:
        held = {os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()}
        assert str(lock) not in held
        assert str(tmp_path / "dockerd.log") in held  # its output goes to the log
    finally:
        os.kill(pid, signal.SIGKILL)
