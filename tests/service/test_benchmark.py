"""The benchmark's own logic (service/benchmark.py): arrivals, CPU readings, the paced client,
the report and its verdicts. The figures themselves are printed by scripts/bench_service.sh."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from service import benchmark
from service.benchmark import CEILING, CEILING_POST, Target, Targets, Window, WrkRound


def test_target_parse() -> None:
    target = Target.parse("predict-rf=12=8000=/predict?model=rf")
    assert target == Target("predict-rf", 12, 8000, "/predict?model=rf")
    for bad in ("predict=12=8000", "x=pid=8000=/", "x=1=2=predict"):
        with pytest.raises(ValueError):
            Target.parse(bad)


def test_arrivals_are_open_model_and_repeatable() -> None:
    times = benchmark.arrival_times(400.0, 20.0, seed=3)
    assert times == benchmark.arrival_times(400.0, 20.0, seed=3)
    assert times != benchmark.arrival_times(400.0, 20.0, seed=4)
    assert times == sorted(times) and times[0] > 0 and times[-1] < 20.0
    assert 7600 < len(times) < 8400  # 8000 expected; Poisson sd ~ 89
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # Exponential gaps: about 63 % are shorter than the mean (1 - 1/e), unlike a fixed pace.
    short = sum(g < 1 / 400 for g in gaps) / len(gaps)
    assert 0.60 < short < 0.66


def fake_proc(root: Path, pid: int, ppid: int, threads: dict[int, int]) -> None:
    (root / str(pid)).mkdir(parents=True)
    (root / str(pid) / "stat").write_text(f"{pid} (gunicorn: worker [x) y]) S {ppid} 1 1\n")
    for tid, ns in threads.items():
        (root / str(pid) / "task" / str(tid)).mkdir(parents=True)
        (root / str(pid) / "task" / str(tid) / "schedstat").write_text(f"{ns} 5 7\n")


def test_replica_cpu_sums_every_thread_of_master_and_workers(tmp_path: Path) -> None:
    fake_proc(tmp_path, 10, 1, {10: 1_000})
    fake_proc(tmp_path, 11, 10, {11: 20_000, 12: 300_000})  # a worker with two threads
    fake_proc(tmp_path, 13, 99, {13: 4_000_000})  # not ours
    (tmp_path / "self").mkdir()
    assert benchmark.children(10, tmp_path) == [11]
    assert benchmark.replica_cpu_ns(10, tmp_path) == 321_000
    assert benchmark.thread_cpu_ns(77, tmp_path) == 0  # gone


def run_against_server(
    client: Callable[[int], Awaitable[Window]],
) -> tuple[Window, list[tuple[bytes, bytes]], int]:
    """Runs client(port) against a server that records each request (head, body) and answers
    200; returns the client's window, the requests and the number of connections."""
    seen: list[tuple[bytes, bytes]] = []
    connections: list[object] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            _, found, rest = head.partition(b"Content-Length: ")
            length = int(rest.split(b"\r\n")[0]) if found else 0
            seen.append((head, await reader.readexactly(length)))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        writer.close()

    async def run() -> Window:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        window = await client(server.sockets[0].getsockname()[1])
        server.close()
        return window

    return asyncio.run(run()), seen, len(connections)


def test_paced_client_against_a_server(tmp_path: Path) -> None:
    """Every arrival is sent and answered over the kept-alive connections."""
    window, seen, connections = run_against_server(
        lambda port: benchmark.paced(
            Target("bare", os.getpid(), port, "/predict"), 200.0, 0.5, 3, b'{"a": 1}', seed=5
        )
    )
    assert window.requests == len(benchmark.arrival_times(200.0, 0.5, 5)) == len(seen)
    assert {body for _, body in seen} == {b'{"a": 1}'}
    assert connections == 3
    assert window.failed == 0 and window.cpu_ns > 0 and window.p99_ms >= window.p50_ms > 0


def wrk(layout: str, endpoint: str, requests: int, ticks: int) -> WrkRound:
    return WrkRound.parse(f"{layout}/{endpoint} 1000.0 1.0 2.0 0 none {requests} {ticks} 5")


def paced(target: str, rate: float, requests: int, cpu_us: float) -> Window:
    return Window("paced", rate, target, 10.0, int(cpu_us * 1000 * requests), requests)


TARGETS = Targets(saturated_share=0.40, paced_ratio=1.15, paced_rate=100.0, pss_limit_mb=110)


@pytest.mark.parametrize(("predict_paced_us", "passes"), [(230.0, True), (231.0, False)])
def test_report_judges_paced_ratio(predict_paced_us: float, passes: bool) -> None:
    rounds = [
        wrk("same", CEILING, 1000, 2),  # 20 us
        wrk("same", CEILING_POST, 1000, 2),
        wrk("same", "predict-rf", 1000, 4),  # 40 us: 50 %
    ]
    windows = [
        paced(CEILING_POST, 100.0, 1000, 200.0),
        paced("predict-rf", 100.0, 1000, predict_paced_us),
        paced(CEILING_POST, 400.0, 4000, 150.0),
        paced("predict-rf", 400.0, 4000, 300.0),  # not judged
        Window("idle", 0.0, "replica", 10.0, 20_000_000),
    ]
    text, ok = benchmark.report(rounds, windows, ["rf"], 100, TARGETS, 80_000, 120_000, 2)
    assert ok is passes
    assert "idle replica: 2.00 ms of CPU per second" in text
    assert f"{predict_paced_us / 200:.2f}x the bare app's CPU per request at 100 req/s" in text
    assert "PASS predict-rf: 50%" in text


def test_report_fails_on_saturated_share_and_non_200() -> None:
    rounds = [wrk("same", CEILING, 1000, 2), wrk("same", "predict-rf", 1000, 6)]  # 33 %
    windows = [
        paced(CEILING_POST, 100.0, 1000, 200.0),
        Window("paced", 100.0, "predict-rf", 10.0, 200_000_000, 1000, failed=3),
    ]
    text, ok = benchmark.report(rounds, windows, ["rf"], 100, TARGETS, 80_000, 120_000, 2)
    assert not ok
    assert "FAIL predict-rf: 33%" in text
    assert "FAIL paced predict-rf: 3 non-200 responses" in text


def test_windows_round_trip(tmp_path: Path) -> None:
    windows = [paced("x", 100.0, 10, 5.0), Window("idle", 0.0, "y", 1.5, 7)]
    benchmark.write_windows(tmp_path / "w.jsonl", windows)
    assert benchmark.read_windows(tmp_path / "w.jsonl") == windows


def test_spaced_gets_one_at_a_time_over_one_connection() -> None:
    """Each GET is sent alone, once the previous one is answered, at the given spacing."""
    window, seen, connections = run_against_server(
        lambda port: benchmark.spaced_gets(
            Target("metrics", os.getpid(), port, "/metrics"), 0.2, interval=0.02
        )
    )
    assert window.mode == "spaced" and window.requests == len(seen) == 10
    assert connections == 1
    assert all(head.startswith(b"GET /metrics HTTP/1.1\r\n") for head, _ in seen)
    assert window.seconds >= 10 * 0.02 and window.failed == 0 and window.cpu_ns > 0


def test_report_gives_spaced_requests_net_of_the_idle_rate() -> None:
    rounds = [wrk("same", CEILING, 1000, 2), wrk("same", "predict-rf", 1000, 4)]
    windows = [
        Window("idle", 0.0, "replica", 10.0, 5_000_000),  # 0.5 ms/s
        # 100 scrapes in 5 s: 50 ms of CPU, of which 2.5 ms idle: 0.475 ms each
        Window("spaced", 20.0, "metrics", 5.0, 50_000_000, 100),
        Window("spaced", 20.0, "health", 5.0, 27_500_000, 100, failed=1),
    ]
    text, ok = benchmark.report(rounds, windows, ["rf"], 100, TARGETS, 80_000, 120_000, 2)
    assert "  metrics        0.475 ms" in text
    assert "  health         0.250 ms" in text
    assert "FAIL paced health: 1 non-200 responses" in text and not ok
