"""The cell's rest: its idle baseline, measured on a fake cgroup tree, and the drain probe that
tells the Locust master whether the last step's backlog is gone (judged, and asked over HTTP)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from matrix.measure.drain_probe import DrainProbe, QuietReference, judge_quiet
from matrix.measure.idle import measure_idle

REST = QuietReference(
    idle_cpu_cores=0.01,
    idle_throttled_per_s=0.0,
    limit_cores=0.1,
    replicas=2,
    nginx_idle_busy=1,
)


def write_stat(folder: Path, usage_us: int, throttled: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cpu.stat").write_text(
        f"usage_usec {usage_us}\nuser_usec {usage_us}\nsystem_usec 0\n"
        f"nr_periods {10 * throttled}\nnr_throttled {throttled}\nthrottled_usec 0\n"
    )


def test_rest_is_judged_against_the_cells_idle_level_and_limit() -> None:
    assert judge_quiet(REST, 0.02, 1.0, 1).quiet
    busy = judge_quiet(REST, 0.1, 20.0, 1)  # a backlog: the whole quota, every period throttled
    assert not busy.quiet
    assert busy.reasons == [
        "api CPU 0.100 cores > 0.055",
        "throttled 20.0 periods/s > 4.0",
    ]
    waiting = judge_quiet(REST, 0.02, 0.0, 3)
    assert waiting.reasons == ["Nginx has 2 requests in progress"]
    assert not judge_quiet(REST, None, None, None).quiet  # nothing read yet: not proven


def test_idle_baseline_waits_for_the_warm_up_to_drain_then_measures(tmp_path: Path) -> None:
    """A fake clock: the containers run at their 0.1 limit for the first second (the warm-up's
    last requests), then at 0.01 cores."""
    folder = tmp_path / "api"
    now = [0.0]

    def usage_at(t: float) -> int:
        return round((0.1 * min(t, 1.0) + 0.01 * max(0.0, t - 1.0)) * 1e6)

    def sleep(seconds: float) -> None:
        now[0] += seconds
        write_stat(folder, usage_at(now[0]))

    write_stat(folder, 0)
    baseline = measure_idle(lambda: {"c": folder}, 0.1, lambda: 1, 5.0, sleep, lambda: now[0])
    assert baseline is not None
    assert baseline.settle_s >= 1.0  # it waited out the busy second
    assert baseline.cpu_cores == 0.01 and baseline.seconds == 5.0
    assert baseline.containers == 1 and baseline.nginx_busy == 1
    assert measure_idle(lambda: {}, 0.1, lambda: None) is None  # nothing readable here


def test_the_probe_answers_over_http_from_the_counters(tmp_path: Path, monkeypatch) -> None:
    """The counters are sampled by hand on a fake clock (no sampler thread runs),
    the answers come over HTTP as the master gets them."""
    monkeypatch.setattr(DrainProbe, "_sample_loop", lambda _self: None)
    folders = {"a": tmp_path / "a", "b": tmp_path / "b"}
    now, nginx = [0.0], [1]

    def at(seconds: float, usage_us: int) -> None:
        now[0] = seconds
        for folder in folders.values():
            write_stat(folder, usage_us)
        probe.sample()

    for folder in folders.values():
        write_stat(folder, 0)
    probe = DrainProbe(REST, lambda: folders, lambda: nginx[0], clock=lambda: now[0]).start()
    try:

        def ask() -> dict:
            with urllib.request.urlopen(probe.url, timeout=5) as response:
                return json.loads(response.read())

        for second in range(1, 5):  # each container at 0.005 cores: 0.01 together, as at idle
            at(second * 0.25, round(second * 0.25 * 5_000))
        answer = ask()
        assert answer["quiet"] is True and answer["nginx_busy"] == 1, answer
        assert answer["api_cpu_cores"] == 0.01
        for second in range(5, 9):  # a backlog: each container at its whole 0.05 core
            at(second * 0.25, 5_000 + round((second - 4) * 0.25 * 50_000))
        busy = ask()
        assert busy["quiet"] is False and busy["api_cpu_cores"] == 0.1
        assert busy["reasons"] == ["api CPU 0.100 cores > 0.055"]
        nginx[0] = 5
        for second in range(9, 13):  # the CPU rests again, but Nginx still has requests
            at(second * 0.25, 55_000 + round((second - 8) * 0.25 * 5_000))
        assert ask()["reasons"] == ["Nginx has 4 requests in progress"]
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(probe.url.replace("/quiet", "/other"), timeout=5)
    finally:
        probe.stop()
