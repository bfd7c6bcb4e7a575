"""What an idle api replica of the deployed stack costs, from its cgroup, split by cause.

`scripts/bench_service.sh --stack-idle` runs this against the stack `scripts/stack_up.sh`
deployed (no load): one api container's CPU time from its host cgroup (exact, cumulative) over
three windows, in this order:

1. **as deployed**: Prometheus scraping, Docker's health probe running, nothing else;
2. **without the scrape**: the same with Prometheus' container paused (`docker pause`), so the
   difference per second is what the scrapes cost;
3. **the probe alone**: with Prometheus still paused, the container's own health-check command
   run back to back through the engine (`docker exec`, the way Docker runs the probe: a process
   the runtime starts inside the container and its cgroup), each run's cost being the window's
   CPU less what the second window's rate says the rest used meanwhile.

The rest (the server's own timers: Uvicorn's once-a-second tick, Gunicorn's heartbeat and
master loop) is the second window's rate less the probe's share at its interval. Prometheus is
unpaused whatever happens.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

# The smallest CPU limit the matrix uses (matrix/matrix-quick.yaml): the share of its quota is
# what the report states next to the absolute cost.
SMALLEST_CPU_LIMIT = 0.05
TARGET_MS_PER_S = 2.5  # issue 22: an idle replica, all causes together
SCRAPE_TARGET_MS = 0.5  # issue 22: one /metrics scrape

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0}


def parse_duration(text: str) -> float:
    """Seconds of a Prometheus-style duration as the stack sets them: 1s, 500ms, 2m."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(f"not a duration like 1s, 500ms or 2m: {text!r}")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


@dataclass(frozen=True)
class IdleCost:
    """The windows' figures and the split they give, in ms of CPU per second of wall clock."""

    deployed_ms_per_s: float
    unscraped_ms_per_s: float
    probe_ms_per_run: float
    scrape_interval_s: float
    probe_interval_s: float

    @property
    def scrape_ms_per_s(self) -> float:
        return max(self.deployed_ms_per_s - self.unscraped_ms_per_s, 0.0)

    @property
    def scrape_ms(self) -> float:
        """One scrape's CPU."""
        return self.scrape_ms_per_s * self.scrape_interval_s

    @property
    def probe_ms_per_s(self) -> float:
        return self.probe_ms_per_run / self.probe_interval_s

    @property
    def rest_ms_per_s(self) -> float:
        return max(self.unscraped_ms_per_s - self.probe_ms_per_s, 0.0)


def quota_share(ms_per_s: float, cpus: float = SMALLEST_CPU_LIMIT) -> float:
    """The fraction of a `cpus` CPU quota that `ms_per_s` ms of CPU per second takes."""
    return ms_per_s / (cpus * 1000.0)


def report(cost: IdleCost) -> list[str]:
    """The lines the benchmark prints, with PASS/FAIL against the issue's targets."""

    def line(what: str, ms_per_s: float) -> str:
        return (
            f"  {what:<34} {ms_per_s:6.3f} ms/s  "
            f"({quota_share(ms_per_s):6.1%} of a {SMALLEST_CPU_LIMIT:g}-CPU quota)"
        )

    total = cost.deployed_ms_per_s
    return [
        "idle api replica in the stack (its cgroup):",
        line("as deployed", total),
        line(f"  scrapes (every {cost.scrape_interval_s:g} s)", cost.scrape_ms_per_s),
        line(f"  health probe (every {cost.probe_interval_s:g} s)", cost.probe_ms_per_s),
        line("  the rest (the server's own timers)", cost.rest_ms_per_s),
        f"  one scrape: {cost.scrape_ms:.3f} ms; one probe run: {cost.probe_ms_per_run:.3f} ms",
        f"{'PASS' if total <= TARGET_MS_PER_S else 'FAIL'}: idle replica {total:.2f} ms/s "
        f"(target <= {TARGET_MS_PER_S} ms/s)",
        f"{'PASS' if cost.scrape_ms <= SCRAPE_TARGET_MS else 'FAIL'}: one scrape "
        f"{cost.scrape_ms:.3f} ms (target <= {SCRAPE_TARGET_MS} ms)",
    ]


def measure(
    usage_us: Callable[[], int],
    pause_scraper: Callable[[], contextlib.AbstractContextManager[None]],
    run_probe: Callable[[], None],
    *,
    seconds: float,
    probe_runs: int,
    scrape_interval_s: float,
    probe_interval_s: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> IdleCost:
    """The three windows (module doc). `usage_us` reads the container's CPU time so far.

    The first two windows last `seconds` rounded up to whole probe intervals: Docker's probes
    are periodic, so such a window holds exactly as many probe runs as intervals, and its rate
    is the long-run one. (Over 30 s at a 20 s interval a window held one run or two, which moved
    the scrapes' estimate by 0.5 ms/s between two runs of the same stack.)
    """
    seconds = math.ceil(seconds / probe_interval_s - 1e-9) * probe_interval_s

    def window(action: Callable[[], None]) -> tuple[float, float]:
        used, started = usage_us(), clock()
        action()
        return (usage_us() - used) / 1000.0, clock() - started

    def wait() -> None:
        sleep(seconds)

    def probes() -> None:
        for _ in range(probe_runs):
            run_probe()

    deployed_ms, deployed_s = window(wait)
    with pause_scraper():
        unscraped_ms, unscraped_s = window(wait)
        probe_ms, probe_s = window(probes)
    unscraped_rate = unscraped_ms / unscraped_s
    return IdleCost(
        deployed_ms_per_s=deployed_ms / deployed_s,
        unscraped_ms_per_s=unscraped_rate,
        probe_ms_per_run=max(probe_ms - unscraped_rate * probe_s, 0.0) / probe_runs,
        scrape_interval_s=scrape_interval_s,
        probe_interval_s=probe_interval_s,
    )


class StackReplica:
    """The engine side: one api container of a deployed stack, its cgroup and its probe."""

    def __init__(self, stack: str) -> None:
        # Imported here: the rest of this module (and its tests) needs no engine.
        from matrix.measure.cgroups import read_counters
        from stack.engine import DockerEngine

        self._read_counters = read_counters
        engine = DockerEngine.from_env()
        self._api: Any = engine._api  # the low-level client: exec, pause, inspect
        dirs = engine.cgroup_dirs(f"{stack}_api")
        if not dirs:
            raise SystemExit(f"no running api container with a readable cgroup in stack {stack}")
        self.container, self._cgroup = sorted(dirs.items())[0]
        prometheus = engine.containers(f"{stack}_prometheus")
        if not prometheus:
            raise SystemExit(f"stack {stack} runs no Prometheus: nothing scrapes the replica")
        self._prometheus = prometheus[0]
        config = self._api.inspect_container(self.container)["Config"]
        health = config.get("Healthcheck") or {}
        test = list(health.get("Test") or [])
        if not test or test[0] not in ("CMD", "CMD-SHELL"):
            raise SystemExit(f"api container {self.container[:12]} has no health check")
        self.probe_command: list[str] | str = test[1:] if test[0] == "CMD" else test[1]
        self.probe_interval_s = health.get("Interval", 30_000_000_000) / 1e9
        env = engine.service_env(f"{stack}_prometheus")
        self.scrape_interval_s = parse_duration(env.get("PROMETHEUS_SCRAPE_INTERVAL") or "1s")

    def usage_us(self) -> int:
        counters = self._read_counters(self._cgroup)
        if counters is None:
            raise SystemExit(f"api container {self.container[:12]} stopped during the measurement")
        return counters.usage_us

    @contextlib.contextmanager
    def scraper_paused(self) -> Iterator[None]:
        self._api.pause(self._prometheus)
        try:
            yield
        finally:
            self._api.unpause(self._prometheus)

    def run_probe(self) -> None:
        created = self._api.exec_create(self.container, self.probe_command)
        self._api.exec_start(created["Id"])
        if self._api.exec_inspect(created["Id"]).get("ExitCode") != 0:
            raise SystemExit("the health probe failed: is the replica ready?")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="penguins", help="stack name (default: penguins)")
    parser.add_argument("--seconds", type=float, default=30.0, help="each window (default 30)")
    parser.add_argument("--probe-runs", type=int, default=20, help="probe runs (default 20)")
    parser.add_argument(
        "--settle", type=float, default=10.0, help="seconds to wait first (default 10)"
    )
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.probe_runs < 1 or args.settle < 0:
        parser.error("--seconds must be > 0, --probe-runs >= 1 and --settle >= 0")
    replica = StackReplica(args.stack)
    windows = math.ceil(args.seconds / replica.probe_interval_s - 1e-9) * replica.probe_interval_s
    print(
        f"replica {replica.container[:12]}: scraped every {replica.scrape_interval_s:g} s, "
        f"probed every {replica.probe_interval_s:g} s; windows of {windows:g} s (whole probe "
        "intervals)",
        flush=True,
    )
    time.sleep(args.settle)
    cost = measure(
        replica.usage_us,
        replica.scraper_paused,
        replica.run_probe,
        seconds=args.seconds,
        probe_runs=args.probe_runs,
        scrape_interval_s=replica.scrape_interval_s,
        probe_interval_s=replica.probe_interval_s,
    )
    lines = report(cost)
    print("\n".join(lines))
    return 1 if any(line.startswith("FAIL") for line in lines) else 0


if __name__ == "__main__":
    raise SystemExit(main())
