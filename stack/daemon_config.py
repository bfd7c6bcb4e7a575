"""The Docker engine settings the lab needs for 10 000 client connections, and a check of the
running engine against them. Called by scripts/lib/docker.sh (ensure_docker_engine):

  python -m stack.daemon_config apply [--file F] [--nofile N]
      merge the settings into daemon.json F (other keys kept; prints what changed)
  python -m stack.daemon_config check [--file F] [--nofile N] [--pid P]
      exit 0 when the running dockerd (pid P) has them; else 3 and one line per problem
  python -m stack.daemon_config restore [--file F] --record R
      put back what `apply --record R` changed (scripts/uninstall.sh); standard library only,
      so it runs without the virtualenv

The settings:
- "userland-proxy": false. Docker's userland proxy (docker-proxy) relays every connection to a
  published port through a process of its own, two descriptors per connection, and stops
  accepting for good at its first accept error (EMFILE under thousands of connections: the
  IPv4 port then refuses everything until the container is recreated). Without it the kernel
  forwards the port (iptables DNAT, also from 127.0.0.1) at no CPU cost in a process.
- "default-ulimits" nofile for every container (Swarm services in Docker 20.10 cannot set
  ulimits): Nginx, Locust and Gunicorn each hold one descriptor per connection, and a non-root
  process cannot raise its hard limit. The dockerd process itself gets the same limit from the
  script (ulimit -n before starting it), since the containers' shims inherit it. The script
  passes the most the machine allows (a sandbox without CAP_SYS_RESOURCE cannot go above its
  own hard limit, and neither could runc when it sets a container's).
- "log-driver" json-file with "log-opts" max-size and max-file: without them every container's
  log grows until the disk is full (Nginx writes one line per request). A user's own values, or
  another log driver (local, journald: they rotate by themselves), are kept. The stack file sets
  the same per service (its `logging:` blocks), so the stack rotates on any engine; that is why
  `check` does not count them as a reason to restart a running engine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stack.cli import subcommand_parser

DEFAULT_FILE = Path("/etc/docker/daemon.json")
# Every connection of 10 000 clients twice (client side and upstream side) with room to spare,
# and what systemd's docker.service gives containers (LimitNOFILE=infinity is 2^20 on Linux).
DEFAULT_NOFILE = 1_048_576
# Per container at most LOG_MAX_FILE files of LOG_MAX_SIZE: 30 MB. The stack file's
# ${LAB_LOG_MAX_SIZE:-10m} / ${LAB_LOG_MAX_FILE:-3} defaults are the same (tests check).
DEFAULT_LOG_MAX_SIZE = "10m"
DEFAULT_LOG_MAX_FILE = 3
ROTATING_DRIVER = "json-file"
EXIT_NEEDS_RESTART = 3
EXIT_USAGE = 2


class ConfigError(ValueError):
    """daemon.json cannot be read as a JSON object; the message says where and why."""


def load(path: Path) -> dict[str, Any]:
    """The file as a dict; {} when missing or empty (dockerd treats both as no settings)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object, not {type(data).__name__}")
    return data


def _nofile(config: dict[str, Any]) -> tuple[int, int] | None:
    """(soft, hard) of default-ulimits nofile, or None when absent or malformed."""
    ulimits = config.get("default-ulimits")
    if not isinstance(ulimits, dict):
        return None
    entry = ulimits.get("nofile")
    if not isinstance(entry, dict):
        return None
    soft, hard = entry.get("Soft"), entry.get("Hard")
    if not isinstance(soft, int) or not isinstance(hard, int):
        return None
    return soft, hard


@dataclass(frozen=True)
class LogRotation:
    """The json-file rotation the lab asks of the engine."""

    max_size: str = DEFAULT_LOG_MAX_SIZE
    max_file: int = DEFAULT_LOG_MAX_FILE


def _logs_unrotated(config: dict[str, Any]) -> bool:
    """Whether containers' json-file logs would grow without bound under `config`."""
    if config.get("log-driver", ROTATING_DRIVER) != ROTATING_DRIVER:
        return False  # another driver: the user's choice, and local/journald rotate anyway
    opts = config.get("log-opts")
    return not isinstance(opts, dict) or not {"max-size", "max-file"} <= opts.keys()


def missing(config: dict[str, Any], nofile: int) -> list[str]:
    """What `config` lacks of the lab's settings, one sentence each; [] when it has them all."""
    problems = []
    if _logs_unrotated(config):
        problems.append('"log-opts" lack max-size and max-file (container logs grow without bound)')
    if config.get("userland-proxy", True) is not False:
        problems.append('"userland-proxy" is not false (docker-proxy relays published ports)')
    limits = _nofile(config)
    if limits is None or min(limits) < nofile:
        have = "unset" if limits is None else f"{limits[0]}/{limits[1]}"
        problems.append(f'"default-ulimits" nofile is {have}, below {nofile}')
    return problems


def merged(
    config: dict[str, Any], nofile: int, logs: LogRotation = LogRotation()
) -> dict[str, Any]:
    """`config` with the lab's settings: other keys and other ulimits kept, a nofile limit
    already above `nofile` never lowered, a log size or count the user set kept."""
    result = dict(config)
    if _logs_unrotated(config):
        result["log-driver"] = ROTATING_DRIVER
        opts = dict(config.get("log-opts") or {})
        # dockerd wants every log option as a string.
        opts.setdefault("max-size", logs.max_size)
        opts.setdefault("max-file", str(logs.max_file))
        result["log-opts"] = opts
    result["userland-proxy"] = False
    ulimits = dict(result.get("default-ulimits") or {})
    soft, hard = _nofile(config) or (0, 0)
    ulimits["nofile"] = {"Name": "nofile", "Soft": max(soft, nofile), "Hard": max(hard, nofile)}
    result["default-ulimits"] = ulimits
    return result


def _write(path: Path, config: dict[str, Any]) -> None:
    """Writes `config` to `path` atomically, keeping the file's mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(config, indent=2) + "\n")
    if path.exists():
        os.chmod(tmp, path.stat().st_mode & 0o7777)
    os.replace(tmp, path)


def apply(
    path: Path, nofile: int, logs: LogRotation = LogRotation(), record: Path | None = None
) -> list[str]:
    """Merges the settings into `path` (atomically, keeping its mode); returns what changed.

    With `record`, each top-level key changed for the first time is noted there with the value
    it had (null: absent), so `restore` can put the file back as it was before the lab.
    """
    config = load(path)
    changes = missing(config, nofile)
    if not changes:
        return []
    result = merged(config, nofile, logs)
    if record is not None:
        before = load(record)
        for key, value in result.items():
            if config.get(key) != value:
                before.setdefault(key, config.get(key))
        _write(record, before)
    _write(path, result)
    return changes


def restore(path: Path, record: Path) -> list[str]:
    """Puts the keys `record` lists back to their values before the lab (removing those that
    were absent), then removes `record`; returns the keys. No record: nothing to do."""
    before = load(record)
    if not before:
        return []
    config = load(path)
    for key, value in before.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    _write(path, config)
    record.unlink()
    return sorted(before)


@dataclass(frozen=True)
class RunningEngine:
    """What the operating system says about a running dockerd."""

    cmdline: list[str]
    # "Max open files" soft limit of the process.
    nofile: int
    # Seconds since the epoch; the config file's mtime is compared with it.
    started_at: float

    def config_file(self) -> Path:
        for index, arg in enumerate(self.cmdline):
            if arg.startswith("--config-file="):
                return Path(arg.split("=", 1)[1])
            if arg == "--config-file" and index + 1 < len(self.cmdline):
                return Path(self.cmdline[index + 1])
        return DEFAULT_FILE

    def flag(self, name: str, boolean: bool = False) -> str | None:
        """The value of a --name=value or --name value flag; a bare boolean --name is "true"."""
        for index, arg in enumerate(self.cmdline):
            if arg.startswith(f"--{name}="):
                return arg.split("=", 1)[1]
            if arg == f"--{name}":
                following = self.cmdline[index + 1] if index + 1 < len(self.cmdline) else ""
                if not boolean:
                    return following
                return following if following in {"true", "false"} else "true"
        return None


def parse_limits(text: str) -> int:
    """The soft "Max open files" of /proc/PID/limits ("unlimited" as a very large number)."""
    for line in text.splitlines():
        if line.startswith("Max open files"):
            soft = line[len("Max open files") :].split()[0]
            return sys.maxsize if soft == "unlimited" else int(soft)
    raise ValueError("no 'Max open files' line in the limits text")


def started_at(stat_text: str, proc_stat_text: str, ticks_per_second: int) -> float:
    """A process's start, in seconds since the epoch, from /proc/PID/stat and /proc/stat."""
    # Field 22 (starttime, clock ticks after boot); the command name in field 2 may hold spaces
    # and parentheses, so count from its closing one.
    fields = stat_text[stat_text.rindex(")") + 2 :].split()
    ticks = int(fields[22 - 3])
    boot = next(
        int(line.split()[1]) for line in proc_stat_text.splitlines() if line.startswith("btime ")
    )
    return boot + ticks / ticks_per_second


def read_process(pid: int, proc: Path = Path("/proc")) -> RunningEngine:
    base = proc / str(pid)
    cmdline = [arg for arg in (base / "cmdline").read_bytes().decode().split("\0") if arg]
    nofile = parse_limits((base / "limits").read_text())
    start = started_at(
        (base / "stat").read_text(), (proc / "stat").read_text(), os.sysconf("SC_CLK_TCK")
    )
    return RunningEngine(cmdline, nofile, start)


def engine_problems(
    engine: RunningEngine, config: dict[str, Any], config_mtime: float | None, nofile: int
) -> list[str]:
    """Why the running engine may lack the lab's settings; [] when it has them.

    Neither setting is reloadable (SIGHUP), so the file counts only if it was not changed after
    the engine started; a command-line flag overrides the file.
    """
    problems = []
    if config_mtime is not None and config_mtime > engine.started_at:
        problems.append(f"{engine.config_file()} changed after the engine started")
    proxy_flag = engine.flag("userland-proxy", boolean=True)
    proxy_on = (
        (proxy_flag != "false")
        if proxy_flag is not None
        else (config.get("userland-proxy", True) is not False)
    )
    if proxy_on:
        problems.append("the userland proxy is on (docker-proxy relays published ports)")
    limits = _nofile(config)
    flag = engine.flag("default-ulimit") or ""
    if flag.startswith("nofile="):
        # --default-ulimit nofile=SOFT[:HARD] overrides the file.
        values = [int(value) for value in flag.split("=", 1)[1].split(":")]
        limits = (values[0], values[-1])
    # Unset, containers inherit the engine's own limit (through containerd and its shims).
    if limits is None and engine.nofile < nofile:
        problems.append(f"containers' default nofile limit is unset, below {nofile}")
    elif limits is not None and min(limits) < nofile:
        problems.append(f"containers' default nofile limit is {min(limits)}, below {nofile}")
    if engine.nofile < nofile:
        problems.append(f"dockerd's own open-file limit is {engine.nofile}, below {nofile}")
    return problems


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def _log_size(text: str) -> str:
    # dockerd's own format for max-size: a positive number with an optional k, m or g.
    if not re.fullmatch(r"[1-9][0-9]*[kmg]?", text):
        raise argparse.ArgumentTypeError(f"a size like 10m (k, m or g), not {text!r}")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser, commands = subcommand_parser("python -m stack.daemon_config", __doc__)
    restore_command = commands.add_parser("restore")
    restore_command.add_argument("--file", type=Path, default=DEFAULT_FILE)
    restore_command.add_argument("--record", type=Path, required=True)
    for name in ("apply", "check"):
        command = commands.add_parser(name)
        command.add_argument(
            "--file",
            type=Path,
            default=None,
            help=f"daemon.json (default: the engine's, else {DEFAULT_FILE})",
        )
        command.add_argument("--nofile", type=_positive, default=DEFAULT_NOFILE)
        if name == "apply":
            command.add_argument(
                "--log-max-size",
                type=_log_size,
                default=DEFAULT_LOG_MAX_SIZE,
                help="largest json-file log before it rotates, e.g. 10m",
            )
            command.add_argument("--log-max-file", type=_positive, default=DEFAULT_LOG_MAX_FILE)
            command.add_argument(
                "--record", type=Path, default=None, help="note the keys' earlier values here"
            )
        if name == "check":
            command.add_argument("--pid", type=int, required=True, help="the running dockerd")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "apply":
            path = args.file or DEFAULT_FILE
            logs = LogRotation(args.log_max_size, args.log_max_file)
            for change in apply(path, args.nofile, logs, args.record):
                print(f"{path}: set because {change}")
            return 0
        if args.command == "restore":
            for key in restore(args.file, args.record):
                print(f"{args.file}: {key} restored")
            return 0
        engine = read_process(args.pid)
        path = args.file or engine.config_file()
        mtime = path.stat().st_mtime if path.exists() else None
        problems = engine_problems(engine, load(path), mtime, args.nofile)
    except (ConfigError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    for problem in problems:
        print(problem)
    return EXIT_NEEDS_RESTART if problems else 0


if __name__ == "__main__":
    sys.exit(main())
