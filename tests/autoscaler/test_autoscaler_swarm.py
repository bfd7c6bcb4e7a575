"""The autoscaler on a real single-node Swarm under a traffic spike.

A stack of its own (PENGUIN_AUTOSCALE_TEST_STACK, default penguins-autoscale-test) on free
ports, deployed with `stack_up.sh --autoscale-from` a recorded quick run at 0.05 CPU per replica
(min 1, max 3 replicas, a 30 s stabilisation window). An open-model spike of 3x one replica's
knee (that run's, the figure the target comes from) must take the api to 2 replicas or
more while it lasts (the time it took is printed), without replacing the replica that was
serving; once the load falls to a trickle, it must come back to 1 within the window + 30 s,
without a failed request on the way down; and the stack's Prometheus must have scraped the
autoscaler's decisions. Loopback only; bounded in time
(~2.5 min of load) and in connections.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import docker
import pytest

from autoscaler.from_run import SUMMARY, knee_per_replica
from loadtest.spike import Phase, spike_phases
from matrix.analyse.spike import parse_decisions
from matrix.measure.prometheus import PrometheusClient
from stack.credentials import DIR_ENV, lab_ui_credentials
from stack.engine import DockerEngine
from tests.autoscaler.spike import run_phases
from tests.support import PROJECT_ROOT, docker_engine_available, free_port, require, run_checked

pytestmark = pytest.mark.swarm

STACK = os.environ.get("PENGUIN_AUTOSCALE_TEST_STACK", "penguins-autoscale-test")
# The summary of docs/quick-run's run of 2026-12-06 02:23 UTC (a slow host: 191.7 req/s at 0.05
# CPU), kept here so the test's load does not move whenever the docs' run is regenerated: the
# next one, on a quiet host, had 423.7 req/s, which would have more than doubled the spike.
QUICK_RUN = Path(__file__).parent / "fixtures" / "quick-run"
CPUS, MEMORY = 0.05, "256M"
STABILISATION_S = 30
SCALE_DOWN_MARGIN_S = 30
# Long enough that a slow decision on a saturated 2-core host still falls inside the spike: the
# test asserts that the spike scales the api up while it lasts, and prints how long that took
# (issue 20's 30 s is a target to report, not a bound a shared machine can promise).
SPIKE_S = 60
TRICKLE_RPS = 20


@dataclass
class Deployed:
    nginx: str
    output: str
    prometheus: PrometheusClient


def _stack_down() -> None:
    run_checked(
        [str(PROJECT_ROOT / "scripts" / "stack_down.sh"), "--stack-name", STACK], timeout=240
    )


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    require(docker_engine_available(), "no Docker engine (scripts/test.sh starts one as root)")
    nginx_port, prometheus_port = free_port(), free_port()
    logins = tmp_path_factory.mktemp("logins") / "penguin-lab"
    env = {
        **os.environ,
        "NGINX_PORT": str(nginx_port),
        "LOCUST_WEB_PORT": str(free_port()),
        "PROMETHEUS_PORT": str(prometheus_port),
        "API_REPLICAS": "1",
        "API_CPUS": str(CPUS),
        "API_MEMORY": MEMORY,
        "AUTOSCALE_MIN_REPLICAS": "1",
        "AUTOSCALE_MAX_REPLICAS": "3",
        "AUTOSCALE_STABILISATION_S": str(STABILISATION_S),
        "AUTOSCALE_INTERVAL_S": "2",
        DIR_ENV: str(logins),
    }
    env.pop("LAB_UI_PASSWORD", None)
    _stack_down()
    try:
        output = run_checked(
            [
                str(PROJECT_ROOT / "scripts" / "stack_up.sh"),
                "--stack-name",
                STACK,
                "--autoscale-from",
                str(QUICK_RUN),
            ],
            timeout=1200,
            env=env,
        )
        prometheus = PrometheusClient(
            f"http://127.0.0.1:{prometheus_port}",
            lab_ui_credentials(STACK, {DIR_ENV: str(logins)}),
            10.0,
        )
        yield Deployed(f"http://127.0.0.1:{nginx_port}", output, prometheus)
    finally:
        _stack_down()
        shutil.rmtree(logins, ignore_errors=True)


class ReplicaSample(NamedTuple):
    at: float  # time.monotonic()
    replicas: int  # the spec's count: what the autoscaler set
    running: frozenset[str]  # the IDs of the tasks running then


class ReplicaWatch:
    """The api service's replica count and the IDs of its running tasks, once a second."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.samples: list[ReplicaSample] = []
        self._api = docker.from_env().api
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            spec = self._api.inspect_service(self.service)["Spec"]
            tasks = self._api.tasks(filters={"service": self.service, "desired-state": "running"})
            self.samples.append(
                ReplicaSample(
                    time.monotonic(),
                    int(spec["Mode"]["Replicated"]["Replicas"]),
                    frozenset(t["ID"] for t in tasks if t["Status"]["State"] == "running"),
                )
            )
            self._stop.wait(1.0)

    def first(self, after: float, wanted: int, at_least: bool) -> float | None:
        for at, replicas, _running in self.samples:
            if at >= after and (replicas >= wanted if at_least else replicas == wanted):
                return at
        return None

    def replaced(self, start: float, end: float) -> set[str]:
        """Tasks running at `start` that no longer ran (or were being stopped) at `end`."""
        at_start = next((s.running for s in self.samples if s.at >= start), frozenset())
        at_end = next((s.running for s in reversed(self.samples) if s.at <= end), frozenset())
        return set(at_start - at_end)

    def timeline(self, origin: float) -> str:
        changes = [
            f"{sample.at - origin:+.0f}s:{sample.replicas}"
            for i, sample in enumerate(self.samples)
            if i == 0 or sample.replicas != self.samples[i - 1].replicas
        ]
        return " ".join(changes)

    def __enter__(self) -> ReplicaWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _decisions(since: float) -> str:
    # Through the engine, not `docker service logs`: the autoscaler logs to stderr, which the
    # CLI passes on as its own stderr.
    return "\n".join(DockerEngine.from_env().service_logs(f"{STACK}_autoscaler", since))


def _way_up(log: str, spike_start: float) -> str:
    """The decisions from the spike's start to the first scale-up, by code, and that one: what
    a slow scale-up spent its time on (no figures, cooldown, a rate still in tolerance)."""
    decisions = [d for d in parse_decisions(log.splitlines()) if d.at >= spike_start]
    up = next((d for d in decisions if d.code == "scale_up"), None)
    before = Counter(d.code for d in decisions if up is None or d.at < up.at)
    first = "none" if up is None else f"+{up.at - spike_start:.0f} s at {up.rps} req/s seen"
    return f"decisions before the first scale-up {dict(before)}; the first scale-up: {first}"


def test_a_spike_scales_up_and_the_fall_scales_back_without_failures(
    deployed: Deployed, capsys: pytest.CaptureFixture[str]
) -> None:
    knee = knee_per_replica(QUICK_RUN / SUMMARY, CPUS, MEMORY)
    spike = round(3 * knee)
    trickle_s = STABILISATION_S + SCALE_DOWN_MARGIN_S + 15
    # The matrix's spike without its lead: the peak at once, a 3 s pause, the base again.
    peak, after = spike_phases(TRICKLE_RPS, spike, 0, SPIKE_S, trickle_s)
    with ReplicaWatch(f"{STACK}_api") as watch:
        results = run_phases(f"{deployed.nginx}/predict", [peak, Phase("pause", 0, 3), after])
    spiked, _pause, trickled = results
    timeline = watch.timeline(spiked.started)
    # The decisions carry wall-clock times; the phases monotonic ones.
    spike_start = time.time() - (time.monotonic() - spiked.started)
    decisions = _decisions(spike_start - 10)
    with capsys.disabled():
        sys.stderr.write(
            f"\n[autoscale] knee per replica {knee:g} req/s; replicas (s from spike start): "
            f"{timeline}\n  {spiked.summary()}\n  {trickled.summary()}\n"
            f"  {_way_up(decisions, spike_start)}\n"
        )
    context = f"replicas {timeline}\n{spiked.summary()}\n{trickled.summary()}\n{decisions}"
    up_at = watch.first(spiked.started, 2, at_least=True)
    assert up_at is not None and up_at - spiked.started <= SPIKE_S, context
    with capsys.disabled():
        sys.stderr.write(f"  scaled up {up_at - spiked.started:.0f} s after the spike began\n")
    # Scaling up adds replicas; it must not replace the one serving the spike (a changed task
    # template would: stack/service_spec.py).
    assert not watch.replaced(spiked.started, spiked.ended), context
    down_at = watch.first(up_at, 1, at_least=False)
    assert down_at is not None, context
    assert down_at - spiked.ended <= STABILISATION_S + SCALE_DOWN_MARGIN_S, context
    # Nothing failed or went unsent on the way down, replicas leaving included.
    assert trickled.failed == 0 and trickled.dropped == 0, context
    assert trickled.answered == trickled.scheduled, context
    # Prometheus scraped the autoscaler (its job in prometheus/): its scale-up is in its series.
    scaled_up = deployed.prometheus.query(
        'max_over_time(penguin_autoscaler_scalings_total{direction="up",outcome="ok"}[10m])',
        time.time(),
    )
    assert scaled_up and scaled_up[0][1] >= 1, f"{scaled_up}\n{context}"
