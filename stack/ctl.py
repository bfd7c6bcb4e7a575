"""python -m stack.ctl: the stack scripts' waits and size parsing, written once in Python
(stack/waits.py, matrix/config.py) and called from scripts/stack_up.sh through the venv.

  wait-converged STACK TIMEOUT    every service of STACK runs all its replicas
  wait-ready STACK URL TIMEOUT    URL answers through Nginx, which balances over every api replica
  memory-bytes SIZE               prints SIZE (512M, 1G, 256MiB, bytes) in bytes
  ui-credentials STACK            the stack's UI login (stack/credentials.py), created when
                                  missing: prints user, password, fingerprint and 1 if created
"""

from __future__ import annotations

import argparse
import sys
import time

from matrix.config import memory_bytes
from stack.cli import subcommand_parser
from stack.credentials import credentials_file, ensure_lab_ui_credentials
from stack.engine import DockerEngine, DockerError, Engine
from stack.waits import (
    CONVERGE_INTERVAL_S,
    READY_INTERVAL_S,
    Progress,
    WaitTimeout,
    api_ready,
    stack_converged,
    stack_pending_tasks,
    wait_until,
)

EXIT_USAGE = 2
# How often a wait says what it is still waiting for, in seconds.
PROGRESS_EVERY_S = 5.0


def log(message: str) -> None:
    """The stack scripts' log format (scripts/lib/common.sh), on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _progress(what: str) -> Progress:
    last = -PROGRESS_EVERY_S

    def report(elapsed: float, state: str) -> None:
        nonlocal last
        if elapsed - last >= PROGRESS_EVERY_S:
            last = elapsed
            log(f"waiting for {what} ({elapsed:.0f}s): {state}")

    return report


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a timeout cannot be negative: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser, commands = subcommand_parser("python -m stack.ctl", __doc__)
    converged = commands.add_parser("wait-converged", help="wait until STACK converged")
    converged.add_argument("stack")
    converged.add_argument("timeout", type=_seconds)
    ready = commands.add_parser("wait-ready", help="wait until URL answers through Nginx")
    ready.add_argument("stack")
    ready.add_argument("url")
    ready.add_argument("timeout", type=_seconds)
    size = commands.add_parser("memory-bytes", help="print a memory size in bytes")
    size.add_argument("size")
    login = commands.add_parser("ui-credentials", help="print (creating) the stack's UI login")
    login.add_argument("stack")
    return parser


def wait_converged(engine: Engine, stack: str, timeout: float) -> None:
    """Raises WaitTimeout after listing the tasks that do not run."""
    try:
        state = wait_until(
            stack_converged(engine, stack),
            timeout,
            CONVERGE_INTERVAL_S,
            _progress(f"stack {stack}"),
        )
    except WaitTimeout as error:
        log(f"stack {stack} did not converge within {timeout:g}s; tasks that are not running:")
        for task in stack_pending_tasks(engine, stack):
            print(f"  {task}", file=sys.stderr)
        raise WaitTimeout(f"stack {stack} still pending: {error}") from None
    log(f"stack {stack} converged: {state}")


def wait_ready(engine: Engine, stack: str, url: str, timeout: float) -> None:
    try:
        state = wait_until(api_ready(engine, stack, url), timeout, READY_INTERVAL_S, _progress(url))
    except WaitTimeout as error:
        raise WaitTimeout(f"{error}; see: docker service logs {stack}_nginx") from None
    log(f"ready: {state}")


def _ui_credentials(stack: str) -> int:
    """Four lines for the shell: user, password, fingerprint, 1 when just created else 0."""
    try:
        credentials, created = ensure_lab_ui_credentials(stack)
    except (OSError, ValueError) as error:
        print(f"error: the UI login of {stack}: {error}", file=sys.stderr)
        return 1
    if created:
        log(f"created the UI login of stack {stack} in {credentials_file(stack)} (mode 0600)")
    print(credentials.user, credentials.password, credentials.fingerprint(), int(created), sep="\n")
    return 0


def main(argv: list[str] | None = None, engine: Engine | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "memory-bytes":
        try:
            print(memory_bytes(args.size))
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_USAGE
        return 0
    if args.command == "ui-credentials":
        return _ui_credentials(args.stack)
    try:
        engine = engine or DockerEngine.from_env()
        if args.command == "wait-converged":
            wait_converged(engine, args.stack, args.timeout)
        else:
            wait_ready(engine, args.stack, args.url, args.timeout)
    except WaitTimeout as error:
        print(f"error: timed out after {args.timeout:g}s: {error}", file=sys.stderr)
        return 1
    except (DockerError, LookupError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
