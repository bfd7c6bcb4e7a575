"""Worker count from the cgroup CPU quota, over fake /sys/fs/cgroup trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.cpu import available_cpus, cgroup_cpu_limit, default_worker_count


def _write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


@pytest.mark.parametrize(
    ("cpu_max", "limit"),
    [("150000 100000", 1.5), ("200000 100000", 2.0), ("50000 100000", 0.5), ("max 100000", None)],
)
def test_cgroup_v2_cpu_max(tmp_path: Path, cpu_max: str, limit: float | None) -> None:
    _write(tmp_path, "cpu.max", cpu_max)
    assert cgroup_cpu_limit(tmp_path) == limit


@pytest.mark.parametrize("folder", ["cpu", "cpu,cpuacct", "cpuacct,cpu", "."])
def test_cgroup_v1_quota(tmp_path: Path, folder: str) -> None:
    _write(tmp_path, f"{folder}/cpu.cfs_quota_us", "250000")
    _write(tmp_path, f"{folder}/cpu.cfs_period_us", "100000")
    assert cgroup_cpu_limit(tmp_path) == 2.5


def test_cgroup_v1_unlimited_quota(tmp_path: Path) -> None:
    _write(tmp_path, "cpu/cpu.cfs_quota_us", "-1")
    _write(tmp_path, "cpu/cpu.cfs_period_us", "100000")
    assert cgroup_cpu_limit(tmp_path) is None


def test_no_cgroup_files_means_no_limit(tmp_path: Path) -> None:
    assert cgroup_cpu_limit(tmp_path) is None


@pytest.mark.parametrize("garbage", ["", "banana", "100000", "1 2 3", "0 100000"])
def test_unreadable_cpu_max_means_no_limit(tmp_path: Path, garbage: str) -> None:
    _write(tmp_path, "cpu.max", garbage)
    assert cgroup_cpu_limit(tmp_path) is None


def test_workers_follow_the_quota_not_the_host(tmp_path: Path) -> None:
    _write(tmp_path, "cpu.max", "200000 100000")
    assert default_worker_count(tmp_path, cpus=16) == 2


def test_fractional_quota_rounds_down(tmp_path: Path) -> None:
    _write(tmp_path, "cpu.max", "150000 100000")
    assert default_worker_count(tmp_path, cpus=16) == 1


def test_quota_below_one_cpu_gives_one_worker(tmp_path: Path) -> None:
    _write(tmp_path, "cpu/cpu.cfs_quota_us", "25000")
    _write(tmp_path, "cpu/cpu.cfs_period_us", "100000")
    assert default_worker_count(tmp_path, cpus=8) == 1


def test_quota_above_visible_cpus_is_capped(tmp_path: Path) -> None:
    _write(tmp_path, "cpu.max", "800000 100000")
    assert default_worker_count(tmp_path, cpus=2) == 2


def test_no_quota_uses_visible_cpus(tmp_path: Path) -> None:
    _write(tmp_path, "cpu.max", "max 100000")
    assert default_worker_count(tmp_path, cpus=3) == 3
    assert default_worker_count(tmp_path / "missing") == available_cpus()
