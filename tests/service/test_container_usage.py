"""The replica's cgroup figures in /metrics, from cgroup v2 and v1 trees, read again each time."""

from __future__ import annotations

from pathlib import Path

from service.metrics import container_usage, container_usage_text


def test_cgroup_v2_figures_follow_the_files(tmp_path: Path) -> None:
    (tmp_path / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\n")
    (tmp_path / "memory.current").write_text("1048576\n")
    assert container_usage(tmp_path) == (2.5, 1048576.0)
    (tmp_path / "cpu.stat").write_text("usage_usec 3000000\nuser_usec 2400000\n")
    (tmp_path / "memory.current").write_text("2097152\n")
    assert container_usage(tmp_path) == (3.0, 2097152.0)
    text = container_usage_text(tmp_path).decode()
    assert "penguin_container_cpu_seconds_total 3.0\n" in text
    assert "penguin_container_memory_bytes 2097152.0\n" in text


def test_cgroup_v1_figures(tmp_path: Path) -> None:
    (tmp_path / "cpuacct").mkdir()
    (tmp_path / "memory").mkdir()
    (tmp_path / "cpuacct" / "cpuacct.usage").write_text("1500000000\n")
    (tmp_path / "memory" / "memory.usage_in_bytes").write_text("4096\n")
    assert container_usage(tmp_path) == (1.5, 4096.0)
    (tmp_path / "cpuacct" / "cpuacct.usage").write_text("1750000000\n")
    assert container_usage(tmp_path) == (1.75, 4096.0)


def test_no_cgroup_files_no_lines(tmp_path: Path) -> None:
    assert container_usage(tmp_path) == (None, None)
    assert container_usage_text(tmp_path) == b""
