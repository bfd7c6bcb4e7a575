"""The waits that the matrix and the stack scripts share, written once: until the Swarm services
run all their replicas, and until the API answers through Nginx with every replica behind it.
scripts/stack_up.sh reaches them through `python -m stack.ctl`."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the engine waits with wait_until too
    from stack.engine import Engine, ServiceState

READY_CONSECUTIVE = 3
READY_PROBE_TIMEOUT_S = 3.0
READY_INTERVAL_S = 0.5
CONVERGE_INTERVAL_S = 1.0
# Updates and rollbacks still in flight: the running count may drop again.
_MOVING_UPDATE_STATES = ("updating", "rollback_started")

Check = Callable[[], tuple[bool, str]]
Progress = Callable[[float, str], None]


class WaitTimeout(TimeoutError):
    """A wait ran out of time; the message is the last state seen."""


def wait_until(
    check: Check, timeout: float, interval: float, progress: Progress | None = None
) -> str:
    """Calls `check` every `interval` seconds until it reports done and returns its description
    of the state; raises WaitTimeout with the last description after `timeout` seconds.
    `progress(elapsed, state)` hears about every check that was not done yet."""
    started = time.monotonic()
    while True:
        done, state = check()
        if done:
            return state
        elapsed = time.monotonic() - started
        if elapsed > timeout:
            raise WaitTimeout(state)
        if progress is not None:
            progress(elapsed, state)
        time.sleep(interval)


def service_converged(engine: Engine, service: str, replicas: int) -> Check:
    """Exactly `replicas` tasks of `service` run and none is still starting or unhealthy."""
    return lambda: engine.tasks_converged(service, replicas)


def _describe(states: list[ServiceState], stack: str) -> str:
    return "  ".join(
        f"{s.name.removeprefix(stack + '_')} {s.running}/{s.desired}"
        + (f" {s.update_state}" if s.update_state else "")
        for s in states
    )


def stack_converged(engine: Engine, stack: str) -> Check:
    """Every service of the stack runs all its replicas with no update or rollback in flight."""

    def check() -> tuple[bool, str]:
        states = engine.stack_services(stack)
        if not states:
            raise LookupError(f"stack {stack} has no services (was it deployed?)")
        pending = [
            s for s in states if s.running != s.desired or s.update_state in _MOVING_UPDATE_STATES
        ]
        return not pending, _describe(pending or states, stack)

    return check


def stack_pending_tasks(engine: Engine, stack: str) -> list[str]:
    """The tasks that should run but do not, with their state and error, to explain a timeout."""
    return [task for state in engine.stack_services(stack) for task in state.pending_tasks]


def http_ok(url: str) -> tuple[bool, str]:
    """Whether `url` answers 2xx, and what it answered."""
    try:
        with urllib.request.urlopen(url, timeout=READY_PROBE_TIMEOUT_S) as response:
            return 200 <= response.status < 300, f"status {response.status}"
    except urllib.error.HTTPError as error:
        return False, f"status {error.code}"
    except OSError as error:
        return False, str(error)


def api_ready(engine: Engine, stack: str, url: str) -> Check:
    """`url` (/ready through Nginx) answered 2xx READY_CONSECUTIVE times in a row, and the local
    Nginx balances over every replica of the api service (unknown when Nginx runs elsewhere)."""
    streak = 0

    def check() -> tuple[bool, str]:
        nonlocal streak
        ok, answer = http_ok(url)
        streak = streak + 1 if ok else 0
        want = engine.service_resources(f"{stack}_api").replicas
        seen = engine.nginx_upstreams(f"{stack}_nginx")
        balanced = seen is None or seen >= want
        seen_text = "?" if seen is None else str(seen)
        state = f"{url}: {answer}, Nginx sees {seen_text}/{want} api replicas"
        return streak >= READY_CONSECUTIVE and balanced, state

    return check
