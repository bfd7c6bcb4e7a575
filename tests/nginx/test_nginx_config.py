"""The real Nginx configuration: rendered by nginx/entrypoint.sh, accepted by `nginx -t`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.nginx.nginx_runner import (
    ENTRYPOINT,
    TEMPLATE,
    nginx_env,
    nginx_test,
    run_entrypoint,
)
from tests.support import PROJECT_ROOT

pytestmark = pytest.mark.integration


def test_rendered_configuration_passes_nginx_t(tmp_path: Path) -> None:
    env = nginx_env(tmp_path / "run", ["127.0.0.1:18001", "127.0.0.1:18002"])
    rendered = run_entrypoint("render", env)
    assert rendered.returncode == 0, rendered.stderr
    written = run_entrypoint("write-upstreams", env)
    assert written.returncode == 0, written.stderr

    conf = (tmp_path / "run" / "nginx.conf").read_text()
    assert "${NGINX_" not in conf
    # The behaviours the stack relies on, as configured.
    assert "least_conn;" in conf
    assert "proxy_next_upstream error timeout http_502 http_503 non_idempotent;" in conf
    assert "proxy_next_upstream_tries 2;" in conf
    assert "stub_status;" in conf
    assert f"listen {env['NGINX_STATUS_PORT']};" in conf
    upstreams = (tmp_path / "run" / "upstream-servers.conf").read_text()
    assert "server 127.0.0.1:18001 max_fails=1" in upstreams
    assert "server 127.0.0.1:18002 max_fails=1" in upstreams

    checked = nginx_test(env)
    assert checked.returncode == 0, checked.stderr


def test_admission_limit_is_per_server_shared_by_workers(tmp_path: Path) -> None:
    env = nginx_env(
        tmp_path / "run", ["127.0.0.1:18001", "127.0.0.1:18002"], NGINX_UPSTREAM_MAX_CONNS="160"
    )
    assert run_entrypoint("render", env).returncode == 0
    assert run_entrypoint("write-upstreams", env).returncode == 0
    upstreams = (tmp_path / "run" / "upstream-servers.conf").read_text()
    assert "server 127.0.0.1:18001 max_fails=1 fail_timeout=5s max_conns=160;" in upstreams
    assert "server 127.0.0.1:18002 max_fails=1 fail_timeout=5s max_conns=160;" in upstreams
    conf = (tmp_path / "run" / "nginx.conf").read_text()
    # Without a zone each worker would count on its own: N per worker, not per replica.
    assert "zone api_upstreams 256k;" in conf
    assert "error_page 502 = @unavailable;" in conf
    assert "add_header Retry-After $api_retry_after always;" in conf
    checked = nginx_test(env)
    assert checked.returncode == 0, checked.stderr


def test_admission_off_writes_no_limit(tmp_path: Path) -> None:
    env = nginx_env(tmp_path / "run", ["127.0.0.1:18001"], NGINX_UPSTREAM_MAX_CONNS="0")
    assert run_entrypoint("write-upstreams", env).returncode == 0
    upstreams = (tmp_path / "run" / "upstream-servers.conf").read_text()
    assert "server 127.0.0.1:18001 max_fails=1 fail_timeout=5s;" in upstreams
    assert "max_conns" not in upstreams


def test_admission_limit_must_be_a_whole_number(tmp_path: Path) -> None:
    env = nginx_env(tmp_path / "run", ["127.0.0.1:18001"], NGINX_UPSTREAM_MAX_CONNS="lots")
    result = run_entrypoint("write-upstreams", env)
    assert result.returncode != 0
    assert "NGINX_UPSTREAM_MAX_CONNS must be a whole number" in result.stderr


def test_open_file_limit_follows_worker_connections_within_the_hard_limit(
    tmp_path: Path,
) -> None:
    env = nginx_env(tmp_path / "run", ["127.0.0.1:18001"], NGINX_WORKER_CONNECTIONS="1000")
    assert run_entrypoint("render", env).returncode == 0
    assert "worker_rlimit_nofile 2000;" in (tmp_path / "run" / "nginx.conf").read_text()
    # Above the hard limit a non-root master could not raise it: capped, with a warning.
    capped = subprocess.run(
        ["bash", "-c", f'ulimit -n 1500 && exec bash "{ENTRYPOINT}" render'],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert capped.returncode == 0, capped.stderr
    assert "worker_rlimit_nofile 1500;" in (tmp_path / "run" / "nginx.conf").read_text()
    assert "open-file hard limit 1500" in capped.stderr


def test_no_upstream_yet_keeps_a_valid_configuration(tmp_path: Path) -> None:
    # Nginx starts before any api task exists: the placeholder must keep `nginx -t` green.
    env = nginx_env(tmp_path / "run", [], NGINX_UPSTREAM_HOST="no-such-host.invalid")
    assert run_entrypoint("render", env).returncode == 0
    assert run_entrypoint("write-upstreams", env).returncode == 0
    upstreams = (tmp_path / "run" / "upstream-servers.conf").read_text()
    assert "server 127.0.0.1:1 down;" in upstreams
    checked = nginx_test(env)
    assert checked.returncode == 0, checked.stderr


def test_dns_name_resolves_to_one_server_per_address(tmp_path: Path) -> None:
    env = nginx_env(
        tmp_path / "run", [], NGINX_UPSTREAM_HOST="localhost", NGINX_UPSTREAM_PORT="8123"
    )
    assert run_entrypoint("write-upstreams", env).returncode == 0
    upstreams = (tmp_path / "run" / "upstream-servers.conf").read_text()
    assert "server 127.0.0.1:8123 max_fails=1" in upstreams


def test_knobs_come_from_the_environment(tmp_path: Path) -> None:
    env = nginx_env(tmp_path / "run", ["127.0.0.1:18001"], NGINX_CLIENT_MAX_BODY_SIZE="3m")
    assert run_entrypoint("render", env).returncode == 0
    assert "client_max_body_size 3m;" in (tmp_path / "run" / "nginx.conf").read_text()


def test_unknown_placeholder_is_a_clear_error(tmp_path: Path) -> None:
    template = tmp_path / "broken.conf.template"
    template.write_text(TEMPLATE.read_text() + "\n# ${NGINX_NO_SUCH_KNOB}\n")
    env = nginx_env(tmp_path / "run", ["127.0.0.1:18001"], NGINX_TEMPLATE=str(template))
    result = run_entrypoint("render", env)
    assert result.returncode != 0
    assert "NGINX_NO_SUCH_KNOB" in result.stderr


def test_entrypoint_help_and_bad_command() -> None:
    assert subprocess.run(["bash", str(ENTRYPOINT), "--help"], capture_output=True).returncode == 0
    bad = subprocess.run(["bash", str(ENTRYPOINT), "bogus"], capture_output=True, text=True)
    assert bad.returncode != 0
    assert "unknown command" in bad.stderr


def test_stack_and_image_carry_the_same_template() -> None:
    # The Swarm config and the image default are the same file, so they cannot drift apart.
    stack = (PROJECT_ROOT / "stack" / "docker-stack.yml").read_text()
    dockerfile = (PROJECT_ROOT / "nginx" / "Dockerfile").read_text()
    assert "file: ../nginx/nginx.conf.template" in stack
    assert "COPY nginx/nginx.conf.template /etc/penguin-nginx/nginx.conf.template" in dockerfile
    assert "target: /etc/penguin-nginx/nginx.conf.template" in stack
