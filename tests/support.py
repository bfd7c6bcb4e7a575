"""Helpers every test folder shares: capability checks, free ports, waiting for servers."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"


def require(available: bool, reason: str) -> None:
    """Skip the test when a capability is missing; in CI a missing capability is a failure."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


def require_command(name: str) -> str:
    fallback = Path("/usr/sbin") / name
    path = shutil.which(name) or (str(fallback) if fallback.exists() else None)
    require(path is not None, f"`{name}` is not installed (scripts/test.sh installs it as root)")
    assert path is not None
    return path


def docker_engine_available() -> bool:
    if shutil.which("docker") is None:
        return False
    result = subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False)
    return result.returncode == 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(url: str, timeout: float = 30.0, expect_status: int = 200) -> None:
    """Poll `url` until it answers `expect_status`; raise with the last error on timeout."""
    deadline = time.monotonic() + timeout
    last_error: object = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == expect_status:
                    return
                last_error = f"status {response.status}"
        except urllib.error.HTTPError as error:
            last_error = f"status {error.code}"
        except (OSError, urllib.error.URLError) as error:
            last_error = error
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer {expect_status} within {timeout}s: {last_error}")
