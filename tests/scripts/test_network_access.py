"""scripts/lib/network_access.sh: the iptables rules that keep the lab's ports on this machine,
made against a stand-in iptables that keeps its chains in a JSON file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import PROJECT_ROOT

# A small iptables: -N, -L (with --line-numbers), -C, -A, -I CHAIN 1, -D CHAIN NUMBER.
FAKE_IPTABLES = """
import json, os, sys
path = os.environ["IPTABLES_STATE"]
chains = json.load(open(path))
args = [arg for arg in sys.argv[1:] if arg not in ("-w", "-n", "--line-numbers")]
op, chain, rule = args[0], args[1], args[2:]
def save():
    json.dump(chains, open(path, "w"))
if op == "-L":
    if chain not in chains:
        sys.exit(1)
    print(f"Chain {chain}"); print("num target")
    for number, known in enumerate(chains[chain], 1):
        comment = known[known.index("--comment") + 1] if "--comment" in known else ""
        print(number, " ".join(known), f"/* {comment} */" if comment else "")
elif op == "-N":
    chains[chain] = []; save()
elif op == "-C":
    sys.exit(0 if rule in chains.get(chain, []) else 1)
elif op == "-A":
    chains[chain].append(rule); save()
elif op == "-I":
    chains[chain].insert(int(rule[0]) - 1, rule[1:]); save()
elif op == "-D":
    del chains[chain][int(rule[0]) - 1]; save()
else:
    sys.exit(f"fake iptables: {op} not supported")
"""


@pytest.fixture
def iptables(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "iptables"
    stub.write_text(f"#!{sys.executable}\n{FAKE_IPTABLES}")
    stub.chmod(0o755)
    state = tmp_path / "chains.json"
    state.write_text(json.dumps({"INPUT": [], "DOCKER-USER": [["-j", "RETURN"]]}))
    return state


def lab(state: Path, commands: str, access: str = "local") -> dict[str, list[list[str]]]:
    """Runs COMMANDS after sourcing the lab's helpers (as root); the chains afterwards."""
    env = {
        **os.environ,
        "PATH": f"{state.parent / 'bin'}:{os.environ['PATH']}",
        "IPTABLES_STATE": str(state),
        "LAB_NETWORK_ACCESS": access,
    }
    script = (
        "source scripts/lib/common.sh && source scripts/lib/network_access.sh && "
        "is_root() { true; } && " + commands
    )
    subprocess.run(["bash", "-c", script], env=env, cwd=PROJECT_ROOT, check=True, timeout=60)
    return json.loads(state.read_text())


def _ports(rules: list[list[str]], stack: str) -> list[str]:
    return [
        rule[rule.index("--ctorigdstport") + 1]
        for rule in rules
        if f"penguin-lab {stack}" in rule and "--ctorigdstport" in rule
    ]


def test_published_ports_are_refused_from_outside_once_per_stack(iptables: Path) -> None:
    lab(iptables, "publish_ports penguins 8000 8089 9090")
    chains = lab(iptables, "publish_ports penguins 8000 8089 9090 && publish_ports test 18000")
    # One jump, first in DOCKER-USER; Docker's own RETURN stays after it.
    assert chains["DOCKER-USER"] == [["-j", "PENGUIN-LAB"], ["-j", "RETURN"]]
    rules = chains["PENGUIN-LAB"]
    # Docker's bridges first (this machine's containers), then a reset per published port.
    assert rules[0][:2] == ["-i", "docker_gwbridge"] and rules[0][-1] == "RETURN"
    assert _ports(rules, "penguins") == ["8000", "8089", "9090"]
    assert _ports(rules, "test") == ["18000"]
    assert all(rule[-2:] == ["--reject-with", "tcp-reset"] for rule in rules[2:])


def test_removing_a_stack_or_opening_it_takes_only_its_rules(iptables: Path) -> None:
    lab(iptables, "publish_ports penguins 8000 && publish_ports test 18000 18089")
    chains = lab(iptables, "unpublish_ports test")
    assert _ports(chains["PENGUIN-LAB"], "penguins") == ["8000"]
    assert _ports(chains["PENGUIN-LAB"], "test") == []
    chains = lab(iptables, "publish_ports penguins 8000", access="open")
    assert _ports(chains["PENGUIN-LAB"], "penguins") == []


def test_swarm_ports_are_closed_to_other_interfaces_in_local_mode_only(iptables: Path) -> None:
    assert "PENGUIN-LAB-INPUT" not in lab(iptables, "close_swarm_ports", access="open")
    chains = lab(iptables, "close_swarm_ports && close_swarm_ports")
    assert chains["INPUT"] == [["-j", "PENGUIN-LAB-INPUT"]]
    closed = {(rule[4], rule[6]) for rule in chains["PENGUIN-LAB-INPUT"]}
    assert closed == {("tcp", "2377"), ("tcp", "7946"), ("udp", "7946"), ("udp", "4789")}
    assert all(rule[:2] == ["!", "-i"] and rule[2] == "lo" for rule in chains["PENGUIN-LAB-INPUT"])
    assert len(chains["PENGUIN-LAB-INPUT"]) == 4


def test_a_bad_access_value_is_a_clear_error() -> None:
    script = "source scripts/lib/common.sh && source scripts/lib/network_access.sh && "
    result = subprocess.run(
        ["bash", "-c", script + "check_network_access"],
        env={**os.environ, "LAB_NETWORK_ACCESS": "public"},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "LAB_NETWORK_ACCESS must be 'local'" in result.stderr
