"""service/stack_idle.py: the idle replica's windows and their split, with a simulated cgroup."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from service.stack_idle import IdleCost, measure, parse_duration, quota_share, report


class FakeReplica:
    """A cgroup whose CPU grows by the rates of what is running, on a simulated clock."""

    def __init__(self, rest: float, scrape: float, probe_run_us: int) -> None:
        self.now = 0.0
        self.used_us = 0.0
        self.rest = rest  # us of CPU per second without the scrape
        self.scrape = scrape  # us per second the scrapes add
        self.probe_run_us = probe_run_us
        self.paused = False
        self.pauses = 0

    def clock(self) -> float:
        return self.now

    def usage_us(self) -> int:
        return int(self.used_us)

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.used_us += seconds * (self.rest + (0.0 if self.paused else self.scrape))

    def run_probe(self) -> None:
        self.sleep(0.05)  # a probe run takes wall-clock time too, with the rest going on
        self.used_us += self.probe_run_us

    @contextlib.contextmanager
    def pause(self) -> Iterator[None]:
        self.paused = True
        self.pauses += 1
        try:
            yield
        finally:
            self.paused = False


def test_the_windows_split_the_cost_into_scrape_probe_and_rest() -> None:
    replica = FakeReplica(rest=700.0, scrape=450.0, probe_run_us=2000)
    cost = measure(
        replica.usage_us,
        replica.pause,
        replica.run_probe,
        seconds=30.0,
        probe_runs=10,
        scrape_interval_s=1.0,
        probe_interval_s=5.0,
        sleep=replica.sleep,
        clock=replica.clock,
    )
    assert cost.deployed_ms_per_s == pytest.approx(1.15, abs=0.001)
    assert cost.scrape_ms_per_s == pytest.approx(0.45, abs=0.001)
    assert cost.scrape_ms == pytest.approx(0.45, abs=0.001)
    assert cost.probe_ms_per_run == pytest.approx(2.0, abs=0.01)
    assert cost.probe_ms_per_s == pytest.approx(0.4, abs=0.01)
    assert cost.rest_ms_per_s == pytest.approx(0.3, abs=0.01)
    assert replica.pauses == 1 and not replica.paused


def test_the_windows_last_whole_probe_intervals() -> None:
    replica = FakeReplica(rest=700.0, scrape=450.0, probe_run_us=2000)
    measure(
        replica.usage_us,
        replica.pause,
        replica.run_probe,
        seconds=30.0,
        probe_runs=1,
        scrape_interval_s=1.0,
        probe_interval_s=20.0,
        sleep=replica.sleep,
        clock=replica.clock,
    )
    assert replica.now == pytest.approx(2 * 40.0 + 0.05)  # two windows of 40 s, one probe run


def test_the_scraper_is_unpaused_when_a_probe_fails() -> None:
    replica = FakeReplica(rest=700.0, scrape=450.0, probe_run_us=2000)

    def failing_probe() -> None:
        raise SystemExit("the health probe failed")

    with pytest.raises(SystemExit):
        measure(
            replica.usage_us,
            replica.pause,
            failing_probe,
            seconds=1.0,
            probe_runs=1,
            scrape_interval_s=1.0,
            probe_interval_s=5.0,
            sleep=replica.sleep,
            clock=replica.clock,
        )
    assert replica.pauses == 1 and not replica.paused


def test_the_report_judges_the_total_and_one_scrape() -> None:
    cheap = IdleCost(1.2, 0.8, 2.0, scrape_interval_s=1.0, probe_interval_s=5.0)
    lines = report(cheap)
    assert lines[-2].startswith("PASS: idle replica 1.20 ms/s")
    assert lines[-1].startswith("PASS: one scrape 0.400 ms")
    assert "2.4% of a 0.05-CPU quota" in lines[1]
    costly = IdleCost(3.0, 2.0, 2.0, scrape_interval_s=1.0, probe_interval_s=5.0)
    assert report(costly)[-2].startswith("FAIL: idle replica 3.00 ms/s")
    assert report(costly)[-1].startswith("FAIL: one scrape 1.000 ms")


def test_durations_and_quota_shares() -> None:
    assert parse_duration("1s") == 1.0
    assert parse_duration("500ms") == 0.5
    assert parse_duration("2m") == 120.0
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("1 second")
    assert quota_share(2.5) == pytest.approx(0.05)
