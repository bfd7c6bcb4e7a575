"""The docker stats sampler against the fake engine: one row per container and sample, all
rows of a sample at one timestamp, engine errors kept and sampling going on."""

from __future__ import annotations

import csv
import itertools
import time
from collections.abc import Callable
from pathlib import Path

from matrix.analyse.analysis import docker_stats_summary
from stack.docker_stats import DockerStatsSampler
from stack.engine import ContainerStats, ServiceResources
from tests.stack.fake_engine import FakeEngine

RESOURCES = ServiceResources(
    replicas=2,
    limit_nano_cpus=10**9,
    limit_memory_bytes=2**29,
    reserve_nano_cpus=0,
    reserve_memory_bytes=0,
)
STATS = [
    ContainerStats("aaaaaaaaaaaa", "t_api.1.x", 50.0, 100 * 2**20, 2**29),
    ContainerStats("bbbbbbbbbbbb", "t_api.2.y", 25.5, 120 * 2**20, 2**29),
]


def _sample_until(sampler: DockerStatsSampler, done: Callable[[], bool]) -> None:
    sampler.start()
    deadline = time.monotonic() + 10
    while not done() and time.monotonic() < deadline:
        time.sleep(0.01)
    sampler.stop()
    assert not sampler.is_alive()


def test_writes_one_row_per_container_and_sample(tmp_path: Path) -> None:
    engine = FakeEngine(RESOURCES, update_config={}, stats=STATS)
    output = tmp_path / "docker_stats.csv"
    # Explicit timestamps, one second apart from 1000: the summary's window below never
    # depends on how the wall clock moved while the sampler ran.
    ticks = itertools.count(1000)
    _sample_until(
        DockerStatsSampler(engine, "t_api", output, interval=0.01, clock=lambda: next(ticks)),
        lambda: output.is_file() and output.read_text().count("\n") >= 5,
    )
    rows = list(csv.DictReader(output.open()))
    assert list(rows[0]) == list(DockerStatsSampler.FIELDS)
    assert len(rows) >= 4 and len(rows) % 2 == 0
    assert {r["container"] for r in rows} == {"aaaaaaaaaaaa", "bbbbbbbbbbbb"}
    assert [float(r["timestamp"]) for r in rows[:4]] == [1000, 1000, 1001, 1001]
    assert int(rows[1]["mem_bytes"]) == 120 * 2**20 and float(rows[1]["cpu_percent"]) == 25.5
    # The summary adds the containers of one sample up: 0.5 + 0.255 cores; its window is
    # inclusive, and a window without samples has no figures.
    summary = docker_stats_summary(output, 1000, 1001)
    assert summary == {
        "api_cpu_mean_cores": 0.755,
        "api_cpu_peak_cores": 0.755,
        "api_mem_peak_mb": 120.0,
    }
    assert set(docker_stats_summary(output, 900, 999.9).values()) == {None}


def test_engine_errors_are_kept_and_sampling_goes_on(tmp_path: Path) -> None:
    engine = FakeEngine(RESOURCES, update_config={}, stats=STATS)
    engine.stats_error = "the engine went away"
    output = tmp_path / "docker_stats.csv"
    sampler = DockerStatsSampler(engine, "t_api", output, interval=0.01)
    _sample_until(sampler, lambda: len(sampler.errors) >= 2)
    assert len(sampler.errors) >= 2 and sampler.errors[0] == "the engine went away"
    assert output.read_text().splitlines() == [",".join(DockerStatsSampler.FIELDS)]
