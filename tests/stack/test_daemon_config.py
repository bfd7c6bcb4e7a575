"""The engine settings the lab needs (stack/daemon_config.py): merged into daemon.json without
losing anything, and a running dockerd checked against them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from stack.daemon_config import (
    ConfigError,
    LogRotation,
    RunningEngine,
    apply,
    engine_problems,
    load,
    main,
    merged,
    missing,
    parse_limits,
    restore,
    started_at,
)

NOFILE = 1_048_576
GOOD = {
    "userland-proxy": False,
    "default-ulimits": {"nofile": {"Name": "nofile", "Soft": NOFILE, "Hard": NOFILE}},
    "log-driver": "json-file",
    "log-opts": {"max-size": "10m", "max-file": "3"},
}
LIMITS = """Limit                     Soft Limit           Hard Limit           Units
Max processes             unlimited            unlimited            processes
Max open files            20000                20000                files
"""


def test_a_missing_file_gets_exactly_the_settings(tmp_path: Path) -> None:
    path = tmp_path / "docker" / "daemon.json"
    changes = apply(path, NOFILE)
    assert len(changes) == 3
    assert json.loads(path.read_text()) == GOOD


def test_existing_settings_are_kept_and_nothing_is_lowered(tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    user = {
        "insecure-registries": ["10.0.0.2:5000"],
        "log-driver": "json-file",
        "default-ulimits": {
            "nproc": {"Name": "nproc", "Soft": 4096, "Hard": 8192},
            "nofile": {"Name": "nofile", "Soft": 1024, "Hard": 4_000_000},
        },
    }
    path.write_text(json.dumps(user))
    os.chmod(path, 0o600)
    apply(path, NOFILE)
    result = json.loads(path.read_text())
    assert result["insecure-registries"] == ["10.0.0.2:5000"]
    assert result["log-driver"] == "json-file"
    assert result["userland-proxy"] is False
    assert result["default-ulimits"]["nproc"] == {"Name": "nproc", "Soft": 4096, "Hard": 8192}
    # The soft limit is raised; a hard limit above ours stays.
    assert result["default-ulimits"]["nofile"] == {
        "Name": "nofile",
        "Soft": NOFILE,
        "Hard": 4_000_000,
    }
    assert path.stat().st_mode & 0o777 == 0o600
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_file_that_has_them_is_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps(GOOD))
    before = path.stat().st_mtime_ns
    assert apply(path, NOFILE) == []
    assert path.stat().st_mtime_ns == before


def test_an_explicit_userland_proxy_true_is_reported_and_replaced() -> None:
    config = {**GOOD, "userland-proxy": True}
    assert missing(config, NOFILE) == [
        '"userland-proxy" is not false (docker-proxy relays published ports)'
    ]
    assert merged(config, NOFILE)["userland-proxy"] is False


@pytest.mark.parametrize("text", ["{not json", "[1, 2]"])
def test_a_broken_file_is_an_error_and_left_alone(tmp_path: Path, text: str) -> None:
    path = tmp_path / "daemon.json"
    path.write_text(text)
    with pytest.raises(ConfigError):
        apply(path, NOFILE)
    assert path.read_text() == text
    assert main(["apply", "--file", str(path)]) == 2


def test_an_empty_file_means_no_settings(tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    path.write_text("\n")
    assert load(path) == {}


def test_limits_and_start_time_are_read_from_proc_text() -> None:
    assert parse_limits(LIMITS) == 20000
    unlimited = LIMITS.replace("20000                20000", "unlimited  unlimited")
    assert parse_limits(unlimited) > NOFILE
    # A command name with spaces and parentheses does not shift the fields; starttime is the
    # 22nd field.
    stat = "123 (dockerd (x) y) S 1 123 123 0 -1 4194560 " + " ".join(["0"] * 12) + " 500 0"
    assert started_at(stat, "cpu 1 2 3\nbtime 1000\n", 100) == 1005.0


def _engine(*flags: str, nofile: int = NOFILE) -> RunningEngine:
    return RunningEngine(["dockerd", *flags], nofile, started_at=2000.0)


def test_an_engine_started_with_the_settings_is_fine() -> None:
    assert engine_problems(_engine(), GOOD, config_mtime=1000.0, nofile=NOFILE) == []


def test_an_engine_without_them_gets_one_line_per_problem() -> None:
    problems = engine_problems(_engine(nofile=20000), {}, config_mtime=None, nofile=NOFILE)
    assert problems == [
        "the userland proxy is on (docker-proxy relays published ports)",
        "containers' default nofile limit is unset, below 1048576",
        "dockerd's own open-file limit is 20000, below 1048576",
    ]


def test_unset_container_limits_are_inherited_from_the_engine() -> None:
    config = {"userland-proxy": False}
    assert engine_problems(_engine(), config, config_mtime=None, nofile=NOFILE) == []


def test_a_file_written_after_the_start_does_not_count_yet() -> None:
    problems = engine_problems(_engine(), GOOD, config_mtime=3000.0, nofile=NOFILE)
    assert problems == ["/etc/docker/daemon.json changed after the engine started"]


def test_command_line_flags_override_the_file() -> None:
    engine = _engine(
        "--config-file",
        "/srv/d.json",
        "--userland-proxy=false",
        "--default-ulimit",
        f"nofile={NOFILE}:{NOFILE}",
    )
    assert engine.config_file() == Path("/srv/d.json")
    assert engine_problems(engine, {}, config_mtime=None, nofile=NOFILE) == []
    proxy_on = _engine("--userland-proxy", "true")
    assert "the userland proxy is on" in engine_problems(proxy_on, GOOD, None, NOFILE)[0]


def test_logs_rotate_with_the_lab_sizes_unless_the_user_chose(tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps({"log-opts": {"max-size": "50m", "labels": "team"}}))
    changes = apply(path, NOFILE, LogRotation(max_size="20m", max_file=5))
    assert any("max-size and max-file" in change for change in changes)
    result = json.loads(path.read_text())
    assert result["log-driver"] == "json-file"
    # The user's size and other options stay; the missing count comes from the lab, as a string.
    assert result["log-opts"] == {"max-size": "50m", "labels": "team", "max-file": "5"}


@pytest.mark.parametrize("driver", ["local", "journald"])
def test_another_log_driver_is_left_alone(driver: str) -> None:
    config = {**GOOD, "log-driver": driver}
    del config["log-opts"]
    assert missing(config, NOFILE) == []
    assert merged(config, NOFILE) == config


def test_the_cli_takes_the_log_knobs_and_refuses_a_bad_size(tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    assert main(["apply", "--file", str(path), "--log-max-size", "5m", "--log-max-file", "2"]) == 0
    assert json.loads(path.read_text())["log-opts"] == {"max-size": "5m", "max-file": "2"}
    with pytest.raises(SystemExit) as exit_info:
        main(["apply", "--file", str(path), "--log-max-size", "lots"])
    assert exit_info.value.code == 2


def test_restore_puts_back_what_the_lab_changed_and_nothing_else(tmp_path: Path) -> None:
    path, record = tmp_path / "daemon.json", tmp_path / "record.json"
    user = {"userland-proxy": True, "data-root": "/srv/docker", "log-opts": {"max-size": "1g"}}
    path.write_text(json.dumps(user))
    apply(path, NOFILE, record=record)
    # A second apply (a higher limit) must not overwrite the first, real, earlier values.
    apply(path, NOFILE * 2, record=record)
    config = json.loads(path.read_text())
    config["registry-mirrors"] = ["https://mirror.example"]  # the user's, after the lab's
    path.write_text(json.dumps(config))
    assert main(["restore", "--file", str(path), "--record", str(record)]) == 0
    assert json.loads(path.read_text()) == {**user, "registry-mirrors": ["https://mirror.example"]}
    assert not record.exists()
    assert restore(path, record) == []  # twice is harmless
