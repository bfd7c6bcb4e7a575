"""Helpers every test folder shares: capability checks, free ports, waiting for servers."""

from __future__ import annotations

import copy
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import docker.errors
import pytest
from pydantic_settings import BaseSettings

from stack.env import env_names

PROJECT_ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"
GUNICORN = Path(sys.executable).with_name("gunicorn")

# The /predict body from the issue that defined the API; every part's tests send it.
SEED_BODY = {
    "island": "Biscoe",
    "culmen_length_mm": 50.0,
    "culmen_depth_mm": 18.5,
    "flipper_length_mm": 200.0,
    "body_mass_g": 4000.0,
    "sex": "MALE",
}


def unset_settings_env(monkeypatch: pytest.MonkeyPatch, settings: type[BaseSettings]) -> None:
    """Removes every variable `settings` reads, so a test sees its defaults whatever the shell
    that runs it has set."""
    for name in env_names(settings):
        monkeypatch.delenv(name, raising=False)


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


def run_checked(args: list[str], timeout: float = 120, env: Mapping[str, str] | None = None) -> str:
    """Runs a command from the project root; its stdout, or an AssertionError with its output."""
    result = subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, env=env, cwd=PROJECT_ROOT
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout[-3000:]}"
            f"\n{result.stderr[-3000:]}"
        )
    return result.stdout


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_http_request(conn: socket.socket) -> bool:
    """Reads one HTTP request off `conn` (head and Content-Length body), as a test server must
    before answering: closing with unread request bytes makes the kernel reset the connection.
    False when the client closed first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return False
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return False
        body += chunk
    return True


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
            if error.code == expect_status:  # e.g. 401 from a UI that wants a login
                return
            last_error = f"status {error.code}"
        except (OSError, urllib.error.URLError) as error:
            last_error = error
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer {expect_status} within {timeout}s: {last_error}")


def start_gunicorn(
    port: int, log_path: Path, workers: int = 1, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start the real service exactly as the container does, on 127.0.0.1:`port`.

    It runs in a session of its own, so a test can signal the master and its workers together
    (os.killpg). Output goes to `log_path`. The caller waits for /ready and stops it.
    """
    full_env = {
        **os.environ,
        "PENGUIN_BIND": f"127.0.0.1:{port}",
        "PENGUIN_WORKERS": str(workers),
        **(env or {}),
    }
    # Each server creates its own metrics directory; an inherited one would be shared.
    full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [str(GUNICORN), "-c", "service/gunicorn_conf.py", "service.app:app"],
            cwd=PROJECT_ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


class FakeServiceApi:
    """The calls of a `docker.APIClient` that stack/service_spec.py makes, on one stored service:
    `inspect_service` (which, asked for the engine's defaults as docker-py's fetch_current_spec
    asks, adds one that must never be sent back) and the low-level update, recorded in
    `updates`."""

    ID = "svc-id"
    VERSION = 7

    def __init__(self, name: str, spec: dict[str, Any]) -> None:
        self.name = name
        self.spec = spec
        self.updates: list[dict[str, Any]] = []

    def inspect_service(self, service: str, insert_defaults: bool | None = None) -> dict[str, Any]:
        if service != self.name:
            raise docker.errors.NotFound(f"service {service} not found")
        spec = copy.deepcopy(self.spec)
        if insert_defaults:
            # Sent back, an engine default like this one is a new task template to Swarm.
            spec.setdefault("TaskTemplate", {}).setdefault("ContainerSpec", {})["DNSConfig"] = {}
        return {"ID": self.ID, "Version": {"Index": self.VERSION}, "Spec": spec}

    def _url(self, pattern: str, *args: str) -> str:
        return pattern.format(*args)

    def _post_json(self, url: str, data: dict[str, Any], params: dict[str, Any]) -> str:
        self.updates.append({"url": url, "params": params, "spec": data})
        return "response"

    def _raise_for_status(self, response: str) -> None:
        assert response == "response"
