"""Static checks of the stack file, the Dockerfiles and the stack scripts (no Docker needed)."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from cluster.topology import ROLE_LABEL, ZONE_LABEL
from stack.daemon_config import DEFAULT_LOG_MAX_FILE, DEFAULT_LOG_MAX_SIZE
from tests.support import PROJECT_ROOT

STACK_FILE = PROJECT_ROOT / "stack" / "docker-stack.yml"
DOCKERFILES = {
    "api": PROJECT_ROOT / "service" / "Dockerfile",
    "nginx": PROJECT_ROOT / "nginx" / "Dockerfile",
    "locust": PROJECT_ROOT / "locust" / "Dockerfile",
    "prometheus": PROJECT_ROOT / "prometheus" / "Dockerfile",
    "autoscaler": PROJECT_ROOT / "autoscaler" / "Dockerfile",
}
SCRIPTS = ["build_images.sh", "stack_up.sh", "stack_down.sh"]


@pytest.fixture(scope="module")
def stack() -> dict:
    return yaml.safe_load(STACK_FILE.read_text())


def test_every_service_avoids_ipvs(stack: dict) -> None:
    # No IPVS on the lab kernels: VIPs and the ingress mesh do not work.
    for name, service in stack["services"].items():
        assert service["deploy"]["endpoint_mode"] == "dnsrr", name
        for port in service.get("ports", []):
            assert port["mode"] == "host", name


def test_api_rolls_without_a_capacity_gap(stack: dict) -> None:
    api = stack["services"]["api"]
    deploy = api["deploy"]
    assert deploy["update_config"]["order"] == "start-first"
    assert deploy["update_config"]["failure_action"] == "rollback"
    assert deploy["restart_policy"]["condition"] == "any"
    # The image's probe (service/healthcheck.c, tested in tests/service), tolerant of overload.
    assert api["healthcheck"]["test"] == ["CMD", "/usr/local/bin/penguin-healthcheck"]
    # Replaced only after at least 30 s of failed probes, at the default interval.
    interval = api["healthcheck"]["interval"]
    assert interval.startswith("${API_HEALTH_INTERVAL:-") and interval.endswith("s}")
    retries = api["healthcheck"]["retries"]
    assert retries.startswith("${API_HEALTH_RETRIES:-") and retries.endswith("}")
    assert (
        int(retries.removeprefix("${API_HEALTH_RETRIES:-")[:-1])
        * int(interval.removeprefix("${API_HEALTH_INTERVAL:-")[:-2])
        >= 30
    )
    # The autoscaler's faster probe keeps the same 30 s (scripts/stack_up.sh).
    stack_up = (PROJECT_ROOT / "scripts" / "stack_up.sh").read_text()
    assert 'API_HEALTH_INTERVAL="${API_HEALTH_INTERVAL:-5s}"' in stack_up
    assert 'API_HEALTH_RETRIES="${API_HEALTH_RETRIES:-6}"' in stack_up
    # A replica starting at 0.05 CPU is not killed before it listens (stack/README.md); the
    # image's own HEALTHCHECK, for a plain `docker run`, says the same.
    start = api["healthcheck"]["start_period"]
    assert start == "${API_HEALTH_START_PERIOD:-120s}"
    dockerfile = (PROJECT_ROOT / "service" / "Dockerfile").read_text()
    assert "--start-period=120s" in dockerfile
    assert api["stop_grace_period"]
    assert deploy["replicas"] == "${API_REPLICAS:-2}"
    assert deploy["resources"]["limits"] == {
        "cpus": "${API_CPUS:-1.0}",
        "memory": "${API_MEMORY:-512M}",
    }


def test_published_ports_and_workers_are_knobs(stack: dict) -> None:
    services = stack["services"]
    assert services["nginx"]["ports"][0]["published"] == "${NGINX_PORT:-8000}"
    assert services["nginx"]["ports"][0]["target"] == 8000
    assert services["locust-master"]["ports"][0]["published"] == "${LOCUST_WEB_PORT:-8089}"
    assert services["locust-worker"]["deploy"]["replicas"] == "${LOCUST_WORKERS:-1}"
    worker_command = services["locust-worker"]["command"]
    assert worker_command[worker_command.index("--master-host") + 1] == "locust-master"


def test_images_follow_prefix_and_tag(stack: dict) -> None:
    for name, image in (("api", "api"), ("nginx", "nginx"), ("locust-master", "locust")):
        assert stack["services"][name]["image"] == (
            f"${{IMAGE_PREFIX:-}}penguin-lab/{image}:${{IMAGE_TAG:-latest}}"
        )


def test_a_rebuilt_image_rolls_its_services(stack: dict) -> None:
    # Local images keep their tag across rebuilds: the image ID in a container label is what
    # changes the spec, and stack_up.sh exports one per image.
    script = (PROJECT_ROOT / "scripts" / "stack_up.sh").read_text()
    for name, service in stack["services"].items():
        image = service["image"].rsplit("/", 1)[1].split(":")[0]
        variable = f"{image.upper()}_IMAGE_ID"
        assert service["labels"]["com.penguin-lab.image-id"] == f"${{{variable}:-}}", name
    assert '"${name^^}_IMAGE_ID=' in script
    assert "for name in api nginx locust prometheus autoscaler" in script


def test_nginx_config_comes_from_a_swarm_config(stack: dict) -> None:
    source = stack["services"]["nginx"]["configs"][0]["source"]
    config = stack["configs"][source]
    assert (STACK_FILE.parent / config["file"]).resolve() == (
        PROJECT_ROOT / "nginx" / "nginx.conf.template"
    )
    # Immutable configs: the name changes with the content (stack_up.sh sets the version).
    assert "${NGINX_TEMPLATE_VERSION" in config["name"]


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_dockerfiles_are_pinned_non_root_and_offline(image: str) -> None:
    text = DOCKERFILES[image].read_text()
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, re.MULTILINE)
    assert base is not None
    # A pinned, Debian bookworm based image, never a floating tag.
    assert re.fullmatch(r"(python:3\.11\.\d+-slim-bookworm|debian:12\.\d+-slim)", base.group(1))
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert users and users[-1] != "root"
    if image not in ("nginx", "prometheus"):
        # Python packages come from the host's wheelhouse: no network, no proxy CA in the build.
        assert "--no-index --find-links" in text
    assert "ca-certificates.crt" not in text  # never bake a host CA into an image
    if image != "locust":
        assert "HEALTHCHECK" in text


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in lines  # deny by default, then allow what the Dockerfiles copy
    assert "!build/wheels/" in lines
    assert not any(line.startswith("!.venv") or line.startswith("!.git") for line in lines)


def test_no_init_in_locust_folder() -> None:
    assert not (PROJECT_ROOT / "locust" / "__init__.py").exists()


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_have_help_and_reject_unknown_options(script: str) -> None:
    path = PROJECT_ROOT / "scripts" / script
    helped = subprocess.run([str(path), "--help"], capture_output=True, text=True, timeout=30)
    assert helped.returncode == 0
    assert "Usage:" in helped.stdout
    bad = subprocess.run([str(path), "--bogus"], capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0
    assert "unknown option: --bogus" in bad.stderr


@pytest.mark.parametrize("script", ["stack_up.sh", "stack_down.sh"])
def test_bad_stack_name_is_a_clear_error(script: str) -> None:
    path = PROJECT_ROOT / "scripts" / script
    result = subprocess.run(
        [str(path), "--stack-name", "bad name!"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0
    assert "invalid stack name" in result.stderr


def _placeable(service: dict, labels: dict[str, str]) -> bool:
    """Swarm's reading of `node.labels.KEY ==/!= VALUE`: a missing label is the empty string."""
    for constraint in service["deploy"].get("placement", {}).get("constraints", []):
        if constraint == "node.role == manager":
            continue  # the edge node is the manager (cluster/); checked on the autoscaler below
        match = re.fullmatch(r"node\.labels\.(\S+) (==|!=) (\S+)", constraint)
        assert match, f"unexpected constraint {constraint!r}"
        key, operator, value = match.groups()
        if (labels.get(key, "") == value) != (operator == "=="):
            return False
    return True


def test_placement_pins_the_edge_and_keeps_a_plain_swarm_working(stack: dict) -> None:
    services = stack["services"]
    edge = {ROLE_LABEL: "edge", ZONE_LABEL: "a"}
    worker = {ROLE_LABEL: "worker", ZONE_LABEL: "b"}
    # A node without labels (a single-node Swarm, or a node nobody labelled) runs every service.
    assert all(_placeable(service, {}) for service in services.values())
    placed = {
        name: [
            role
            for role, labels in (("edge", edge), ("worker", worker))
            if _placeable(service, labels)
        ]
        for name, service in services.items()
    }
    assert placed == {
        "nginx": ["edge"],
        "locust-master": ["edge"],
        "api": ["worker"],
        "locust-worker": ["worker"],
        # Monitoring beside the other control surfaces; the node exporter on every node.
        "prometheus": ["edge"],
        "nginx-exporter": ["edge"],
        "node-exporter": ["edge", "worker"],
        "autoscaler": ["edge"],
    }


def test_api_and_load_spread_over_zones(stack: dict) -> None:
    for name in ("api", "locust-worker"):
        placement = stack["services"][name]["deploy"]["placement"]
        assert {"spread": f"node.labels.{ZONE_LABEL}"} in placement["preferences"], name
    api = stack["services"]["api"]["deploy"]["placement"]
    # 0 is Swarm's "no limit": the default never leaves a replica unscheduled on few nodes.
    assert api["max_replicas_per_node"] == "${API_MAX_REPLICAS_PER_NODE:-0}"


def test_admission_control_is_a_knob_with_an_off_value(stack: dict) -> None:
    env = stack["services"]["nginx"]["environment"]
    # Per replica, sized in nginx/README.md; API_MAX_INFLIGHT=0 turns it off.
    assert env["NGINX_UPSTREAM_MAX_CONNS"] == "${API_MAX_INFLIGHT:-160}"
    assert env["NGINX_RETRY_AFTER"] == "${NGINX_RETRY_AFTER:-1}"
    entrypoint = (PROJECT_ROOT / "nginx" / "entrypoint.sh").read_text()
    assert ': "${NGINX_UPSTREAM_MAX_CONNS:=0}"' in entrypoint


def test_every_listener_is_sized_for_ten_thousand_connections(stack: dict) -> None:
    nginx, api = stack["services"]["nginx"], stack["services"]["api"]
    assert nginx["environment"]["NGINX_WORKER_CONNECTIONS"] == "${NGINX_WORKER_CONNECTIONS:-16384}"
    # Each listen backlog is capped by its container's somaxconn, so they move together.
    assert nginx["sysctls"]["net.core.somaxconn"] == "${NGINX_SOMAXCONN:-16384}"
    assert nginx["environment"]["NGINX_LISTEN_BACKLOG"] == "${NGINX_SOMAXCONN:-16384}"
    assert api["sysctls"]["net.core.somaxconn"] == "${API_SOMAXCONN:-4096}"
    assert api["environment"]["PENGUIN_BACKLOG"] == "${PENGUIN_BACKLOG:-4096}"
    # Docker 20.10 ignores ulimits in a stack file: open-file limits come from the engine.
    for service in stack["services"].values():
        assert "ulimits" not in service


def test_monitoring_is_published_only_on_its_knob_and_behind_the_login(stack: dict) -> None:
    services = stack["services"]
    published = {name: [p["published"] for p in s.get("ports", [])] for name, s in services.items()}
    assert published["prometheus"] == ["${PROMETHEUS_PORT:-9090}"]
    assert published["nginx-exporter"] == [] and published["node-exporter"] == []
    prometheus = services["prometheus"]
    assert prometheus["environment"]["PROMETHEUS_WEB_CONFIG_FILE"].startswith("/run/secrets/")
    assert prometheus["environment"]["PROMETHEUS_RETENTION"] == "${PROMETHEUS_RETENTION:-6h}"
    assert prometheus["volumes"] == ["prometheus_data:/prometheus"]
    master = services["locust-master"]["environment"]
    assert master["LOCUST_WEB_PASSWORD_FILE"] == "/run/secrets/lab_ui_password"
    # The secrets come from stack_up.sh: external, named by a variable, never a file or a value.
    for secret in stack["secrets"].values():
        assert secret["external"] is True and secret["name"].startswith("${")
    for name in ("prometheus", "locust-master"):
        for secret in services[name]["secrets"]:
            assert secret["mode"] == 0o400 and secret["uid"] != "0"


def test_no_password_is_in_the_stack_file_or_an_image() -> None:
    stack = yaml.safe_load(STACK_FILE.read_text())
    values = [str(v) for s in stack["services"].values() for v in s.get("environment", {}).values()]
    # Only files under /run/secrets and variables: no literal password, no bcrypt hash.
    assert not any("$2" in v or "basic_auth_users" in v for v in values)
    assert "basic_auth_users" not in STACK_FILE.read_text()
    for dockerfile in DOCKERFILES.values():
        instructions = [
            line
            for line in dockerfile.read_text().lower().splitlines()
            if not line.lstrip().startswith("#")
        ]
        assert not any("password" in line or "/run/secrets" in line for line in instructions)


def test_every_service_rotates_its_log_with_the_engines_defaults(stack: dict) -> None:
    for name, service in stack["services"].items():
        logging = service.get("logging")
        assert logging is not None, f"{name} has no logging block: its log would grow unbounded"
        assert logging["driver"] == "json-file"
        assert logging["options"] == {
            "max-size": f"${{LAB_LOG_MAX_SIZE:-{DEFAULT_LOG_MAX_SIZE}}}",
            "max-file": f"${{LAB_LOG_MAX_FILE:-{DEFAULT_LOG_MAX_FILE}}}",
        }


def test_only_the_autoscaler_gets_the_docker_socket_on_a_manager_and_is_off_by_default(
    stack: dict,
) -> None:
    services = stack["services"]
    socket_users = [
        name
        for name, service in services.items()
        for volume in service.get("volumes", [])
        if isinstance(volume, dict) and volume.get("source") == "/var/run/docker.sock"
    ]
    assert socket_users == ["autoscaler"]
    autoscaler = services["autoscaler"]
    assert "node.role == manager" in autoscaler["deploy"]["placement"]["constraints"]
    assert autoscaler["deploy"]["replicas"] == "${AUTOSCALE_REPLICAS:-0}"
    assert autoscaler["environment"]["AUTOSCALE_ENABLED"] == "${AUTOSCALE_ENABLED:-false}"
    assert autoscaler["environment"]["AUTOSCALE_SERVICE"] == "${STACK_NAME:-penguins}_api"
    (secret,) = autoscaler["secrets"]
    assert secret["mode"] == 0o400 and secret["uid"] != "0"
