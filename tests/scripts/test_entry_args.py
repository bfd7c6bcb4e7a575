"""Every entry script checks its arguments before it installs or starts anything.

Each script runs with a PATH whose first folder holds stand-ins for the commands that install or
start things (apt-get, docker, dockerd, python3, ...): they only record that they were called.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from matrix.__main__ import build_parser
from tests.support import PROJECT_ROOT

SCRIPTS = sorted((PROJECT_ROOT / "scripts").glob("*.sh"))
# What an entry script uses to install, start or change something on the machine.
ACTING_COMMANDS = (
    "apt-get",
    "dpkg-query",
    "dpkg",
    "docker",
    "dockerd",
    "systemctl",
    "sudo",
    "python3",
    "ip",
    "iptables",
    "nft",
    "curl",
    "gunicorn",
)


def run_with_stubs(script: Path, args: list[str], tmp_path: Path) -> tuple[int, str, str]:
    """Runs `script args` with recording stand-ins first on PATH; (exit code, stderr, calls)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp_path / "calls"
    calls.touch()
    for name in ACTING_COMMANDS:
        stub = bin_dir / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >> {calls}\nexit 0\n')
        stub.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        # A virtualenv that does not exist: creating it would be an action too.
        "VENV_DIR": str(tmp_path / "no-venv"),
    }
    result = subprocess.run(
        ["bash", str(script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    return result.returncode, result.stderr, calls.read_text()


def test_every_entry_script_is_covered() -> None:
    assert {script.name for script in SCRIPTS} >= {
        "run_matrix.sh",
        "test.sh",
        "stack_up.sh",
        "cluster_up.sh",
        "uninstall.sh",
    }


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_an_unknown_flag_is_refused_before_anything_is_done(script: Path, tmp_path: Path) -> None:
    code, stderr, calls = run_with_stubs(script, ["--bogus-flag"], tmp_path)
    assert code in (1, 2), stderr
    assert "--bogus-flag" in stderr
    assert calls == "", f"{script.name} acted before rejecting the flag:\n{calls}"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_help_does_nothing_else(script: Path, tmp_path: Path) -> None:
    code, stderr, calls = run_with_stubs(script, ["--help"], tmp_path)
    assert code == 0, stderr
    assert calls == ""


def _parser_options() -> dict[str, bool]:
    """run_matrix's options in python -m matrix's parser: name -> whether it takes a value."""
    options = {}
    for action in build_parser()._actions:
        for name in action.option_strings:
            if name.startswith("--") and name != "--help":
                options[name] = action.nargs != 0
    return options


def test_run_matrix_shell_parse_knows_the_parsers_options(tmp_path: Path) -> None:
    script = PROJECT_ROOT / "scripts" / "run_matrix.sh"
    for name, takes_value in _parser_options().items():
        args = [name, "value"] if takes_value else [name]
        # The shell accepts the option (and its value) and stops at the next, unknown one.
        code, stderr, calls = run_with_stubs(script, [*args, "--bogus-flag"], tmp_path)
        assert "unknown option: --bogus-flag" in stderr, (name, stderr)
        assert calls == ""


def test_run_matrix_usage_lists_exactly_the_parsers_options() -> None:
    text = (PROJECT_ROOT / "scripts" / "run_matrix.sh").read_text()
    usage = text[text.index("<<USAGE") : text.index("\nUSAGE\n")]
    listed = set(re.findall(r"^\s+(--[a-z-]+)", usage, flags=re.MULTILINE)) - {"--help"}
    assert listed == set(_parser_options())


def test_run_matrix_refuses_an_option_without_its_value(tmp_path: Path) -> None:
    code, stderr, calls = run_with_stubs(
        PROJECT_ROOT / "scripts" / "run_matrix.sh", ["--matrix"], tmp_path
    )
    assert code == 1
    assert "--matrix needs a value" in stderr
    assert calls == ""
