"""CPU and throttling counters from a container's cgroup, on fake cgroup trees of both layouts,
and their differences over a window."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from matrix.measure.cgroups import (
    CgroupSampler,
    CpuCounters,
    read_counters,
    read_samples,
    window_cpu,
    window_usage_us,
)

ID = "0123abcd" * 8


def v1_tree(root: Path, usage_ns: int, periods: int, throttled: int, throttled_ns: int) -> None:
    cpu = root / "cpu" / "docker" / ID
    acct = root / "cpuacct" / "docker" / ID
    cpu.mkdir(parents=True, exist_ok=True)
    acct.mkdir(parents=True, exist_ok=True)
    (cpu / "cpu.stat").write_text(
        f"nr_periods {periods}\nnr_throttled {throttled}\n"
        f"throttled_time {throttled_ns}\nnr_bursts 0\n"
    )
    (acct / "cpuacct.usage").write_text(f"{usage_ns}\n")


def test_cgroup_v1_counters_are_read_in_microseconds(tmp_path: Path) -> None:
    v1_tree(tmp_path, usage_ns=5_000_000_000, periods=100, throttled=40, throttled_ns=2_000_000_000)
    assert read_counters(tmp_path / "cpu" / "docker" / ID) == CpuCounters(
        5_000_000, 100, 40, 2_000_000
    )


def test_cgroup_v2_systemd_layout(tmp_path: Path) -> None:
    scope = tmp_path / "system.slice" / f"docker-{ID}.scope"
    scope.mkdir(parents=True)
    (scope / "cpu.stat").write_text(
        "usage_usec 7000\nuser_usec 5000\nsystem_usec 2000\n"
        "nr_periods 10\nnr_throttled 3\nthrottled_usec 900\n"
    )
    assert read_counters(scope) == CpuCounters(7000, 10, 3, 900)


def test_a_stopped_container_has_no_counters(tmp_path: Path) -> None:
    assert read_counters(tmp_path / "cpu" / "docker" / "feedbeef") is None


def test_window_differences_per_second(tmp_path: Path) -> None:
    samples = {
        "a": [
            (0.0, CpuCounters(0, 0, 0, 0)),
            (10.0, CpuCounters(2_500_000, 100, 50, 1_000_000)),
            (20.0, CpuCounters(9_000_000, 200, 50, 1_000_000)),
        ],
        "b": [(0.0, CpuCounters(0, 0, 0, 0)), (10.0, CpuCounters(1_000_000, 100, 0, 0))],
    }
    cpu = window_cpu(samples, 0.0, 10.0)
    assert cpu is not None
    # a: 0.25 cores, b: 0.1; 50 of 200 periods throttled; a throttled 100 ms/s, b none.
    assert cpu.cpu_cores == pytest.approx(0.35)
    assert cpu.throttled_share == pytest.approx(0.25)
    assert cpu.throttled_ms_per_s == pytest.approx(50.0)
    assert window_cpu(samples, 30.0, 40.0) is None


def test_sampler_writes_what_it_reads(tmp_path: Path) -> None:
    v1_tree(tmp_path, 1_000_000, 10, 1, 1000)
    output = tmp_path / "cgroup.csv"
    dirs = {ID: tmp_path / "cpu" / "docker" / ID, "gone": tmp_path / "cpu" / "docker" / "gone"}
    sampler = CgroupSampler(lambda: dirs, output, interval=0.05)
    sampler.start()
    # Until two samples are written, however slowly the thread gets the CPU (10 s at most).
    deadline = time.monotonic() + 10
    while len(read_samples(output).get(ID, [])) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    sampler.stop()
    samples = read_samples(output)
    assert list(samples) == [ID] and len(samples[ID]) >= 2
    assert samples[ID][0][1] == CpuCounters(1000, 10, 1, 1)


def test_window_usage_is_cut_at_the_windows_exact_ends() -> None:
    """Samples every second; the window starts and ends between them: the counters are
    interpolated there, not taken from the nearest samples."""
    samples = {
        "a": [
            (0.0, CpuCounters(0, 0, 0, 0)),
            (1.0, CpuCounters(1_000_000, 0, 0, 0)),
            (2.0, CpuCounters(1_500_000, 0, 0, 0)),
        ],
        "b": [(0.0, CpuCounters(0, 0, 0, 0)), (2.0, CpuCounters(200_000, 0, 0, 0))],
    }
    used, containers = window_usage_us(samples, 0.5, 1.5) or (0.0, 0)
    # a: 500 000 of its first second's half plus 250 000 of its second's; b: 100 000.
    assert used == pytest.approx(850_000)
    assert containers == 2


def test_window_usage_counts_a_container_only_for_the_part_it_was_sampled() -> None:
    samples = {"late": [(1.0, CpuCounters(0, 0, 0, 0)), (3.0, CpuCounters(400_000, 0, 0, 0))]}
    assert window_usage_us(samples, 0.0, 2.0) == (pytest.approx(200_000), 1)
    assert window_usage_us(samples, 5.0, 6.0) is None
