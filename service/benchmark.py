"""The logic of scripts/bench_service.sh: paced and idle measurements, and the report.

The script starts the servers (the API replica and the bare ASGI app of service/ceiling.py, both
one Gunicorn master and one worker) and drives the saturated rounds with wrk. This module adds
what wrk cannot do and judges the whole run:

- **paced**: open-model arrivals (exponential gaps, a fixed seed) at a given rate over a few
  kept-alive connections, so most requests arrive alone at an idle server, as they do in a
  replica that is not saturated. An arrival that finds every connection busy waits for the
  first free one (counted as `queued`).
- **idle**: no request at all; the servers' CPU per second.
- **spaced**: one GET at a time over one kept-alive connection, one every 50 ms, as Prometheus
  scrapes a replica: a `/metrics` scrape's CPU, and `/health`'s (any request arriving alone),
  each with the replica's idle CPU of the window removed.

CPU is the servers' own: every thread of the master and its workers, from
`/proc/PID/task/TID/schedstat` (nanoseconds, not the 10 ms clock ticks of `/proc/PID/stat`,
too coarse for a few hundred requests), over the whole window, so background work (timers, the
master's checks) is charged to the requests of the window, as a replica's quota charges it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

# The load test's arrival process (the benchmark runs in the project's virtualenv, never in the
# API image, which has no loadtest package).
from loadtest.open_model import arrival_offsets
from service.stack_idle import SCRAPE_TARGET_MS

PROC = Path("/proc")


def thread_cpu_ns(pid: int, proc: Path = PROC) -> int:
    """CPU time of every thread of one process so far, in ns (0 for a process that is gone)."""
    total = 0
    try:
        threads = list((proc / str(pid) / "task").iterdir())
    except OSError:
        return 0
    for thread in threads:
        try:
            total += int((thread / "schedstat").read_text(encoding="ascii").split()[0])
        except (OSError, ValueError, IndexError):
            continue  # the thread ended between the listing and the read
    return total


def children(pid: int, proc: Path = PROC) -> list[int]:
    """The direct children of a process (Gunicorn's workers of a master)."""
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="ascii", errors="replace")
        except OSError:
            continue
        # Field 4 (the parent's pid) counted after the ")" that ends the command name.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and fields[1] == str(pid):
            found.append(int(entry.name))
    return found


def replica_cpu_ns(master: int, proc: Path = PROC) -> int:
    """CPU time so far of a Gunicorn master and its workers, in ns."""
    return sum(thread_cpu_ns(pid, proc) for pid in (master, *children(master, proc)))


@dataclass(frozen=True)
class Target:
    """One thing to load: a name for the report, the server's master pid and the request path."""

    name: str
    pid: int
    port: int
    path: str

    @classmethod
    def parse(cls, text: str) -> Target:
        """NAME=PID=PORT=PATH, e.g. predict-rf=1234=8000=/predict?model=rf."""
        name, pid, port, path = text.split("=", 3)
        if not (name and pid.isdigit() and port.isdigit() and path.startswith("/")):
            raise ValueError(f"a target is NAME=PID=PORT=/PATH, got {text!r}")
        return cls(name, int(pid), int(port), path)


@dataclass(frozen=True)
class Window:
    """One measured window: a mode (idle, or paced at a rate) of one target."""

    mode: str  # "idle" or "paced"
    rate: float  # arrivals per second (0 when idle)
    target: str
    seconds: float
    cpu_ns: int
    requests: int = 0
    failed: int = 0
    queued: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0


def arrival_times(rate: float, seconds: float, seed: int) -> list[float]:
    """Open-model arrivals (the load test's Poisson process): offsets from the start."""
    return list(arrival_offsets(rate, seconds, "poisson", random.Random(seed)))


def http_request(path: str, host: str, body: bytes) -> bytes:
    """The POST every paced request sends (kept alive)."""
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode("ascii") + body


async def read_response(reader: asyncio.StreamReader) -> int:
    """Reads one HTTP/1.1 response with a Content-Length; returns its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


# One GET per 50 ms: each arrives at a server idle since the previous one (its caches as cold as
# a scrape a second apart finds them, as far as the other tenants of the core go), and a window of
# a few seconds holds a hundred of them.
SPACED_INTERVAL_S = 0.05
REPLICA = "replica"  # the idle window whose rate a spaced window's figure is net of


async def spaced_gets(
    target: Target, seconds: float, interval: float = SPACED_INTERVAL_S, host: str = "127.0.0.1"
) -> Window:
    """GETs of the target's path, one per `interval`, each sent once the previous is answered."""
    loop = asyncio.get_running_loop()
    request = f"GET {target.path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode("ascii")
    reader, writer = await asyncio.open_connection(host, target.port)
    count = max(1, round(seconds / interval))
    latencies: list[float] = []
    failed = 0
    cpu_before = replica_cpu_ns(target.pid)
    start = loop.time()
    for index in range(count):
        delay = start + index * interval - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        sent = loop.time()
        writer.write(request)
        failed += await read_response(reader) != 200
        latencies.append(loop.time() - sent)
    # The window holds each request's whole interval: the idle CPU removed is that of `count`
    # intervals.
    await asyncio.sleep(max(start + count * interval - loop.time(), 0.0))
    cpu_ns = replica_cpu_ns(target.pid) - cpu_before
    elapsed = loop.time() - start
    writer.close()
    return Window(
        mode="spaced",
        rate=1 / interval,
        target=target.name,
        seconds=elapsed,
        cpu_ns=cpu_ns,
        requests=count,
        failed=failed,
        p50_ms=_quantile_ms(latencies, 0.50),
        p99_ms=_quantile_ms(latencies, 0.99),
    )


def _quantile_ms(latencies: list[float], q: float) -> float:
    if not latencies:
        return 0.0
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def paced(
    target: Target,
    rate: float,
    seconds: float,
    connections: int,
    body: bytes,
    seed: int,
    host: str = "127.0.0.1",
) -> Window:
    """Sends POSTs to the target at open-model arrival times; returns the window's figures."""
    loop = asyncio.get_running_loop()
    request = http_request(target.path, host, body)
    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        idle.put_nowait(await asyncio.open_connection(host, target.port))
    latencies: list[float] = []
    failed = queued = 0

    async def one(scheduled: float) -> None:
        nonlocal failed, queued
        if idle.empty():
            queued += 1
        reader, writer = await idle.get()
        writer.write(request)
        status = await read_response(reader)
        latencies.append(loop.time() - scheduled)
        failed += status != 200
        idle.put_nowait((reader, writer))

    tasks = []
    cpu_before = replica_cpu_ns(target.pid)
    start = loop.time()
    for offset in arrival_times(rate, seconds, seed):
        delay = start + offset - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(start + offset)))
    await asyncio.gather(*tasks)
    cpu_ns = replica_cpu_ns(target.pid) - cpu_before
    elapsed = loop.time() - start
    while not idle.empty():
        _, writer = idle.get_nowait()
        writer.close()
    return Window(
        mode="paced",
        rate=rate,
        target=target.name,
        seconds=elapsed,
        cpu_ns=cpu_ns,
        requests=len(latencies),
        failed=failed,
        queued=queued,
        p50_ms=_quantile_ms(latencies, 0.50),
        p99_ms=_quantile_ms(latencies, 0.99),
    )


def idle(targets: Sequence[Target], seconds: float) -> list[Window]:
    """Every target's CPU over the same quiet window."""
    before = [replica_cpu_ns(t.pid) for t in targets]
    start = time.monotonic()
    time.sleep(seconds)
    after = [replica_cpu_ns(t.pid) for t in targets]
    elapsed = time.monotonic() - start
    return [
        Window(mode="idle", rate=0.0, target=t.name, seconds=elapsed, cpu_ns=a - b)
        for t, a, b in zip(targets, after, before, strict=True)
    ]


def write_windows(path: Path, windows: Iterable[Window]) -> None:
    with path.open("a", encoding="utf-8") as out:
        for window in windows:
            out.write(json.dumps(asdict(window)) + "\n")


def read_windows(path: Path) -> list[Window]:
    return [Window(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


# --- the saturated rounds (wrk), one line per round and target, written by the script ----------


@dataclass(frozen=True)
class WrkRound:
    layout: str
    endpoint: str
    rps: float
    p50_ms: float
    p99_ms: float
    non2xx: int
    errors: str
    requests: int
    ticks: int
    interrupts: int

    @classmethod
    def parse(cls, line: str) -> WrkRound:
        """'LAYOUT/NAME rps p50 p99 non2xx errors requests ticks interrupts' (the script's)."""
        name, rps, p50, p99, non2xx, errors, requests, ticks, irqs = line.split()
        layout, endpoint = name.split("/", 1)
        return cls(
            layout,
            endpoint,
            float(rps),
            float(p50),
            float(p99),
            int(non2xx),
            errors,
            int(requests),
            int(ticks),
            int(irqs),
        )


CEILING = "bare-asgi"  # the bare app's GET, the saturated rounds' reference
CEILING_POST = "bare-asgi-post"  # the same POST as /predict, answered without reading it
JUDGED_LAYOUT = "same"
LAYOUT_TITLES = {
    "same": "wrk on the server's core (judged: no target needs a wake-up interrupt)",
    "apart": "wrk on another core (for comparison: see the wake-ups column)",
}


def cpu_us_per_request(rounds: Sequence[WrkRound], clk_tck: int) -> float:
    requests = sum(r.requests for r in rounds)
    return sum(r.ticks for r in rounds) / clk_tck * 1e6 / max(requests, 1)


@dataclass(frozen=True)
class Targets:
    """The run's pass marks."""

    saturated_share: float  # /predict's requests per CPU-second over the bare app's, at least
    paced_ratio: float  # /predict's CPU per request over the bare app's at the judged rate, at most
    paced_rate: float  # the judged rate
    pss_limit_mb: float


def saturated_report(
    rounds: Sequence[WrkRound], clk_tck: int
) -> tuple[list[str], dict[str, dict[str, float]], bool]:
    """The saturated tables; the CPU per request by layout and endpoint; whether any non-2xx."""
    lines: list[str] = []
    by_layout: dict[str, dict[str, list[WrkRound]]] = {}
    for r in rounds:
        by_layout.setdefault(r.layout, {}).setdefault(r.endpoint, []).append(r)
    cpu: dict[str, dict[str, float]] = {}
    failed = False
    for layout, endpoints in by_layout.items():
        ceiling_rps = [r.rps for r in endpoints[CEILING]]
        ceiling_cpu = cpu_us_per_request(endpoints[CEILING], clk_tck)
        cpu[layout] = {}
        lines.append(f"saturated, {layout}: {LAYOUT_TITLES.get(layout, layout)}")
        lines.append(
            f"{'endpoint':<16} {'req/s':>8} {'of bare':>8} {'CPU us/req':>11} {'of bare':>8} "
            f"{'wake-ups':>9} {'p50 ms':>7} {'p99 ms':>7} {'non-2xx':>8}  socket errors"
        )
        for name, rows in endpoints.items():
            rps = statistics.median(r.rps for r in rows)
            # Each round's req/s against the ceiling's in the same round, then their median.
            rps_share = statistics.median(
                r.rps / c if c else 0.0 for r, c in zip(rows, ceiling_rps, strict=True)
            )
            cpu_us = cpu[layout][name] = cpu_us_per_request(rows, clk_tck)
            share = ceiling_cpu / cpu_us if cpu_us else 0.0
            requests = max(sum(r.requests for r in rows), 1)
            wakeups = sum(r.interrupts for r in rows) / requests
            non2xx = sum(r.non2xx for r in rows)
            errors = ",".join(sorted({r.errors for r in rows}))
            lines.append(
                f"{name:<16} {rps:>8.0f} {rps_share:>8.0%} {cpu_us:>11.1f} {share:>8.0%} "
                f"{wakeups:>9.2f} {statistics.median(r.p50_ms for r in rows):>7.2f} "
                f"{statistics.median(r.p99_ms for r in rows):>7.2f} {non2xx:>8}  {errors}"
            )
            if non2xx:
                lines.append(f"FAIL {layout}/{name}: {non2xx} non-2xx responses")
                failed = True
        lines.append("")
    return lines, cpu, failed


def paced_cpu_us(windows: Sequence[Window], target: str, rate: float) -> float:
    """CPU µs per request of a target at a rate, over all its windows."""
    chosen = [w for w in windows if w.mode == "paced" and w.target == target and w.rate == rate]
    return sum(w.cpu_ns for w in chosen) / 1000 / max(sum(w.requests for w in chosen), 1)


def idle_ms_per_s(windows: Sequence[Window], target: str) -> float:
    chosen = [w for w in windows if w.mode == "idle" and w.target == target]
    return sum(w.cpu_ns for w in chosen) / 1e6 / max(sum(w.seconds for w in chosen), 1e-9)


def spaced_ms(windows: Sequence[Window], target: str) -> float:
    """CPU ms per spaced request of a target, the replica's idle rate over the windows removed."""
    chosen = [w for w in windows if w.mode == "spaced" and w.target == target]
    idle_ms = idle_ms_per_s(windows, REPLICA) * sum(w.seconds for w in chosen)
    return (sum(w.cpu_ns for w in chosen) / 1e6 - idle_ms) / max(sum(w.requests for w in chosen), 1)


def cost_report(
    windows: Sequence[Window], saturated_cpu: dict[str, float], models: Sequence[str]
) -> list[str]:
    """Idle, paced and saturated CPU side by side, each endpoint also over the bare app's."""
    rates = sorted({w.rate for w in windows if w.mode == "paced"})
    idle_targets = sorted({w.target for w in windows if w.mode == "idle"})
    lines = ["CPU when not saturated (paced: open-model arrivals; saturated: wrk, same core)"]
    for name in idle_targets:
        lines.append(f"idle {name}: {idle_ms_per_s(windows, name):.2f} ms of CPU per second")
    header = f"{'CPU us/req':<16}" + "".join(f"{f'paced {r:g}/s':>14}" for r in rates)
    lines.append(header + f"{'saturated':>14}")
    endpoints = [CEILING_POST, *(f"predict-{m}" for m in models)]
    for name in endpoints:
        row = f"{name:<16}"
        for rate in rates:
            cpu = paced_cpu_us(windows, name, rate)
            bare = paced_cpu_us(windows, CEILING_POST, rate)
            row += f"{cpu:>7.1f} ({cpu / bare if bare else 0:.2f}x)"
        sat = saturated_cpu.get(name, 0.0)
        sat_bare = saturated_cpu.get(CEILING_POST, 0.0)
        row += f"{sat:>7.1f} ({sat / sat_bare if sat_bare else 0:.2f}x)"
        lines.append(row)
    lines.append(
        "(x: over the bare app's same POST in the same mode and run. Paced figures include the\n"
        "servers' idle CPU of the window, as a replica's quota does.)"
    )
    spaced = sorted({w.target for w in windows if w.mode == "spaced"})
    if spaced:
        lines.append(
            f"one GET every {SPACED_INTERVAL_S * 1000:g} ms over one kept-alive connection, CPU "
            f"of the replica per request, its idle rate removed:"
        )
        for name in spaced:
            lines.append(f"  {name:<14} {spaced_ms(windows, name):.3f} ms")
        lines.append(
            f"  (a /metrics scrape's target, <= {SCRAPE_TARGET_MS} ms, is judged on the stack's "
            "replica: --stack-idle)"
        )
    for name in [*endpoints, *spaced]:
        worst = [w for w in windows if w.mode in ("paced", "spaced") and w.target == name]
        failed = sum(w.failed for w in worst)
        if failed:
            lines.append(f"FAIL paced {name}: {failed} non-200 responses")
    return lines


def report(
    rounds: Sequence[WrkRound],
    windows: Sequence[Window],
    models: Sequence[str],
    clk_tck: int,
    targets: Targets,
    pss_kb: int,
    rss_kb: int,
    processes: int,
) -> tuple[str, bool]:
    """The whole printout and whether every target passed."""
    lines, cpu, failed = saturated_report(rounds, clk_tck)
    lines.append(SATURATED_NOTE)
    lines.append("")
    judged = cpu.get(JUDGED_LAYOUT, {})
    if windows:
        lines += cost_report(windows, judged, models)
        failed |= any(line.startswith("FAIL") for line in lines)
        lines.append("")
    for model in models:
        share = judged[CEILING] / judged[f"predict-{model}"]
        ok = share >= targets.saturated_share
        failed |= not ok
        lines.append(
            f"{'PASS' if ok else 'FAIL'} predict-{model}: {share:.0%} of the bare ASGI ceiling "
            f"per CPU-second (wrk on the server's core); target >= {targets.saturated_share:.0%}"
        )
    if windows:
        bare = paced_cpu_us(windows, CEILING_POST, targets.paced_rate)
        for model in models:
            ratio = paced_cpu_us(windows, f"predict-{model}", targets.paced_rate) / max(bare, 1e-9)
            ok = ratio <= targets.paced_ratio
            failed |= not ok
            lines.append(
                f"{'PASS' if ok else 'FAIL'} paced predict-{model}: {ratio:.2f}x the bare app's "
                f"CPU per request at {targets.paced_rate:g} req/s; target <= "
                f"{targets.paced_ratio:.2f}x"
            )
    pss_mb, rss_mb = pss_kb * 1024 / 1e6, rss_kb * 1024 / 1e6
    ok = 0 < pss_mb < targets.pss_limit_mb
    failed |= not ok
    lines.append(
        f"{'PASS' if ok else 'FAIL'} memory: {pss_mb:.1f} MB summed PSS over {processes} "
        f"processes (RSS sum {rss_mb:.1f} MB); target < {targets.pss_limit_mb:g} MB"
    )
    return "\n".join(lines), not failed


SATURATED_NOTE = """\
req/s, p50, p99: median over rounds. First 'of bare': median over rounds of req/s over the bare
ASGI app's req/s in the same round and layout (with wrk on the server's core, wrk's own CPU is
in it). CPU us/req: the server's CPU time (master and worker) per request over all rounds;
second 'of bare': the bare app's CPU per request over the endpoint's, i.e. the endpoint's
requests per CPU-second as a share of the ceiling's. Capacity is CPU per request, and this
share barely moves with other load, so the targets are judged on it. wake-ups: rescheduling and
function-call interrupts per request, all CPUs. With wrk on another core, the server pays one
such interrupt (kernel time) whenever wrk's core had gone idle, which happens for the slower
endpoints and hardly ever for the bare app, so that layout's shares mix in a cost of the
generator's idleness; with wrk on the server's core no target pays it."""


# --- command line ---------------------------------------------------------------------------


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m service.benchmark", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("paced", help="paced rounds over targets, then an idle window")
    run.add_argument("--target", action="append", type=Target.parse, required=True)
    run.add_argument("--rate", action="append", type=_positive, required=True)
    run.add_argument("--seconds", type=_positive, default=5.0, help="per target, rate, round")
    run.add_argument("--rounds", type=int, default=2)
    run.add_argument("--connections", type=int, default=4)
    run.add_argument("--idle-seconds", type=_positive, default=10.0)
    run.add_argument("--idle", action="append", type=Target.parse, default=[])
    run.add_argument("--spaced", action="append", type=Target.parse, default=[])
    run.add_argument("--spaced-seconds", type=_positive, default=5.0, help="per target, round")
    run.add_argument("--body-file", type=Path, required=True)
    run.add_argument("--out", type=Path, required=True)
    rep = commands.add_parser("report", help="print the run's figures and verdicts")
    rep.add_argument("--wrk", type=Path, required=True)
    rep.add_argument("--windows", type=Path, required=True)
    rep.add_argument("--models", required=True, help="space-separated model names")
    rep.add_argument("--clk-tck", type=int, required=True)
    rep.add_argument("--saturated-share", type=float, required=True)
    rep.add_argument("--paced-ratio", type=float, required=True)
    rep.add_argument("--paced-rate", type=float, required=True)
    rep.add_argument("--pss-limit-mb", type=float, required=True)
    rep.add_argument("--pss-kb", type=int, required=True)
    rep.add_argument("--rss-kb", type=int, required=True)
    rep.add_argument("--processes", type=int, required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "paced":
        if args.rounds < 1 or args.connections < 1:
            raise SystemExit("--rounds and --connections must be >= 1")
        body = args.body_file.read_bytes()
        # Idle first: right after the saturated rounds every server has settled, and nothing
        # of ours is connected.
        if args.idle:
            write_windows(args.out, idle(args.idle, args.idle_seconds))
        for round_index in range(args.rounds):
            for rate in args.rate:
                for target in args.target:  # interleaved, so other load hits all alike
                    seed = round_index * 100_000 + int(rate)  # the same arrivals for every target
                    window = asyncio.run(
                        paced(target, rate, args.seconds, args.connections, body, seed)
                    )
                    write_windows(args.out, [window])
            for target in args.spaced:
                window = asyncio.run(spaced_gets(target, args.spaced_seconds))
                write_windows(args.out, [window])
        return 0
    text, passed = report(
        [WrkRound.parse(line) for line in args.wrk.read_text().splitlines() if line.strip()],
        read_windows(args.windows),
        args.models.split(),
        args.clk_tck,
        Targets(args.saturated_share, args.paced_ratio, args.paced_rate, args.pss_limit_mb),
        args.pss_kb,
        args.rss_kb,
        args.processes,
    )
    print(text)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
