"""The reproducibility statement: facts read from fake /proc and cgroup files, the host speed
index measured for real once, and the report's flag when the index drifts."""

from __future__ import annotations

from pathlib import Path

import pytest

from matrix.config import load_matrix_file
from matrix.measure import host_facts
from matrix.report.report import write_report
from tests.matrix.test_report import MATRIX


def test_cpu_model_cgroup_version_and_cfs_period(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: X\nmodel name\t: Example CPU @ 2.0GHz\n")
    assert host_facts.cpu_model(cpuinfo) == "Example CPU @ 2.0GHz"
    assert host_facts.cpu_model(tmp_path / "missing") is None
    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "cgroup.controllers").write_text("cpu io memory\n")
    assert host_facts.cgroup_version(tmp_path / "v2") == "2"
    assert host_facts.cgroup_version(tmp_path) == "1"
    (tmp_path / "v2" / "cpu.max").write_text("5000 100000\n")
    assert host_facts.cfs_period_us(tmp_path / "v2") == 100_000
    v1 = tmp_path / "cpu,cpuacct" / "docker" / "abc"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_period_us").write_text("50000\n")
    assert host_facts.cfs_period_us(v1) == 50_000


def test_cores_each_part_could_use(tmp_path: Path) -> None:
    (tmp_path / "cpuset.cpus.effective").write_text("0-1\n")
    assert host_facts.cpuset(tmp_path) == "0-1"
    v1 = tmp_path / "cpu,cpuacct" / "docker" / "abc"
    v1.mkdir(parents=True)
    cpuset_dir = tmp_path / "cpuset" / "docker" / "abc"
    cpuset_dir.mkdir(parents=True)
    (cpuset_dir / "cpuset.cpus").write_text("2-3\n")
    assert host_facts.cpuset(v1) == "2-3"
    assert host_facts.cores_text({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8"
    assert host_facts.cores_text([3]) == "3"


class RemoteStack:
    """An engine whose api and Nginx containers run elsewhere (no cgroup on this host)."""

    def cgroup_dirs(self, _service: str) -> dict[str, Path]:
        return {}

    def service_image(self, service: str) -> str:
        return f"{service}:latest"


def test_facts_of_a_stack() -> None:
    facts = host_facts.host_facts(RemoteStack(), "s")  # type: ignore[arg-type]
    assert facts["images"] == {"api": "s_api:latest", "nginx": "s_nginx:latest"}
    assert facts["cfs_period_us"] is None and facts["cores"]["api"] is None
    assert set(facts["versions"]) == {"python", *host_facts.LIBRARIES}
    assert facts["cores"]["generator"]


@pytest.mark.parametrize(("end", "flagged"), [(160.0, False), (170.0, True), (130.0, True)])
def test_a_drifting_speed_index_is_flagged_in_the_report(
    tmp_path: Path, end: float, flagged: bool
) -> None:
    (tmp_path / "matrix.yaml").write_text(MATRIX)
    info = {
        "started": "now",
        "host_cores": 2,
        "host_facts": {
            "images": {"api": "penguin-lab/api:latest (id sha256:0123)", "nginx": None},
            "kernel": "6.1.0",
            "cgroup_version": "2",
            "cpu_model": "Example CPU",
            "host_cores": 2,
            "cfs_period_us": 100_000,
            "versions": {"python": "3.11.2", "locust": "2.0"},
            "cores": {"api": "0-1", "nginx": "0-1", "generator": "0-1"},
        },
        "speed_index_start_us": 150.0,
        "speed_index_end_us": end,
    }
    report = write_report(tmp_path, load_matrix_file(tmp_path / "matrix.yaml"), info).read_text()
    assert "## Reproducibility" in report
    assert "| CFS period | 100 ms |" in report
    assert "api: `penguin-lab/api:latest (id sha256:0123)`; nginx: `-`" in report
    assert "api replicas 0-1, Nginx 0-1, load generator 0-1" in report
    # In name order, as a report rebuilt from run.json (written with sorted keys) lists them.
    assert "| versions (host virtualenv) | locust 2.0, python 3.11.2 |" in report
    assert f"150 us per request at the start, {end:g} at the end" in report
    assert ("The host's speed changed during the run" in report) == flagged


@pytest.mark.integration
def test_the_speed_index_is_measured_on_the_bare_server() -> None:
    index = host_facts.speed_index_us()
    print(f"host speed index: {index} us per request")
    assert index is not None and index > 0
