"""scripts/uninstall.sh --dry-run: what it would undo, found from the machine's state (Docker,
iptables and the lab's notes are stand-ins here), and that a dry run changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.support import PROJECT_ROOT

# docker: an engine in an active Swarm with one lab stack and one service of the user's.
DOCKER = """
echo "docker $*" >> "$STATE/calls"
case "$*" in
  info) exit 0 ;;
  *LocalNodeState*) echo active ;;
  "service ls --filter"*)
    echo "penguins penguin-lab/api:latest"; echo "penguins penguin-lab/nginx:latest" ;;
  "service ls --format"*)
    echo penguin-lab/api:latest; [ -z "$OTHER_IMAGE" ] || echo "$OTHER_IMAGE" ;;
  "volume inspect"*) exit 0 ;;
  *) exit 0 ;;
esac
"""
# iptables: both chains exist, with their jumps.
IPTABLES = 'echo "iptables $*" >> "$STATE/calls"; exit 0'


def dry_run(tmp_path: Path, *args: str, other_image: str = "") -> tuple[str, list[str]]:
    bin_dir, state, lab = tmp_path / "bin", tmp_path / "state", tmp_path / "lab"
    for folder in (bin_dir, state, lab):
        folder.mkdir()
    (state / "calls").touch()
    for name, body in {"docker": DOCKER, "iptables": IPTABLES}.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}")
        (bin_dir / name).chmod(0o755)
    (lab / "swarm-created-by-lab").touch()
    (lab / "daemon-json-before.json").write_text(json.dumps({"userland-proxy": None}))
    (lab / "packages-installed").write_text("nginx\nprometheus\n")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "STATE": str(state),
        "LAB_STATE_DIR": str(lab),
        "OTHER_IMAGE": other_image,
        "VENV_DIR": str(tmp_path / "venv"),
    }
    result = subprocess.run(
        ["bash", str(PROJECT_ROOT / "scripts" / "uninstall.sh"), "--dry-run", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
        stdin=subprocess.DEVNULL,
    )
    # Every file the lab noted is still there: a dry run removes nothing.
    assert sorted(path.name for path in lab.iterdir()) == [
        "daemon-json-before.json",
        "packages-installed",
        "swarm-created-by-lab",
    ]
    return result.stdout, (state / "calls").read_text().splitlines()


def _changing(calls: list[str]) -> list[str]:
    """The recorded calls that would change something."""
    verbs = (" rm", " leave", " -D ", " -X ", " -F ", "deploy", "purge")
    return [call for call in calls if any(verb in f"{call} " for verb in verbs)]


def test_a_dry_run_lists_the_lab_s_traces_and_changes_nothing(tmp_path: Path) -> None:
    out, calls = dry_run(tmp_path)
    assert "would remove stack penguins" in out
    assert "would remove volume penguins_prometheus_data" in out
    assert "would remove the iptables chain PENGUIN-LAB:" in out
    assert "would remove the iptables chain PENGUIN-LAB-INPUT:" in out
    assert "would leave the Swarm the lab made" in out
    assert "would restore daemon.json's earlier values" in out
    # Packages and files only when asked.
    assert "purge" not in out and ".venv" not in out
    assert _changing(calls) == []


def test_a_swarm_with_the_user_s_services_is_kept(tmp_path: Path) -> None:
    out, _ = dry_run(tmp_path, other_image="postgres:16")
    assert "leave the Swarm" not in out


def test_packages_and_files_go_only_when_asked(tmp_path: Path) -> None:
    out, calls = dry_run(tmp_path, "--all")
    assert "apt-get purge -y -qq nginx prometheus" in out
    for what in ("remove .venv", "remove build/ and models/", "remove results/", "UI logins"):
        assert what in out
    assert _changing(calls) == []
