"""Runs the real nginx/entrypoint.sh (and so Debian's nginx) on loopback for the tests."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support import PROJECT_ROOT, free_port, require_command, wait_for_http

ENTRYPOINT = PROJECT_ROOT / "nginx" / "entrypoint.sh"
TEMPLATE = PROJECT_ROOT / "nginx" / "nginx.conf.template"


def nginx_env(runtime_dir: Path, servers: list[str], **overrides: str) -> dict[str, str]:
    """Environment for entrypoint.sh: loopback ports, files under runtime_dir, static upstreams."""
    nginx_bin = require_command("nginx")
    env = {
        **os.environ,
        # Debian puts nginx in /usr/sbin, which a non-root PATH may lack.
        "PATH": f"{Path(nginx_bin).parent}:{os.environ.get('PATH', '')}",
        "NGINX_TEMPLATE": str(TEMPLATE),
        "NGINX_RUNTIME_DIR": str(runtime_dir),
        "NGINX_UPSTREAM_SERVERS": " ".join(servers),
        "NGINX_LISTEN_PORT": str(free_port()),
        "NGINX_STATUS_PORT": str(free_port()),
        "NGINX_ACCESS_LOG": str(runtime_dir / "access.log"),
        "NGINX_WORKER_PROCESSES": "1",
        "NGINX_WORKER_CONNECTIONS": "1024",
        "NGINX_RESOLVE_INTERVAL": "1",
    }
    # As root, nginx would switch its workers to `nobody`, who cannot enter pytest's tmp dirs.
    global_directives = "daemon off;"
    if os.geteuid() == 0:
        global_directives += " user root;"
    env["NGINX_GLOBAL_DIRECTIVES"] = global_directives
    env.update(overrides)
    return env


def run_entrypoint(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ENTRYPOINT), command], env=env, capture_output=True, text=True, timeout=30
    )


def nginx_test(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`nginx -t` on the rendered configuration."""
    conf = Path(env["NGINX_RUNTIME_DIR"]) / "nginx.conf"
    return subprocess.run(
        [require_command("nginx"), "-e", "stderr", "-t", "-c", str(conf)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


@dataclass
class RunningNginx:
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['NGINX_LISTEN_PORT']}"

    @property
    def status_url(self) -> str:
        return f"http://127.0.0.1:{self.env['NGINX_STATUS_PORT']}"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_nginx(env: dict[str, str]) -> RunningNginx:
    log_path = Path(env["NGINX_RUNTIME_DIR"]).with_name("nginx-entrypoint.log")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["bash", str(ENTRYPOINT), "run"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    return RunningNginx(process, env, log_path)


@contextmanager
def serving_nginx(
    env: dict[str, str], ready_url: Callable[[RunningNginx], str]
) -> Iterator[RunningNginx]:
    """Nginx started, answering 200 at ready_url(nginx) (its output in the error otherwise),
    and stopped afterwards."""
    nginx = start_nginx(env)
    try:
        try:
            wait_for_http(ready_url(nginx), timeout=30)
        except TimeoutError as error:
            raise AssertionError(f"{error}\n{nginx.output()[-2000:]}") from None
        yield nginx
    finally:
        nginx.stop()
