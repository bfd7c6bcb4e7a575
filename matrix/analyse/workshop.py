"""The workshop comparison: each configuration's observation beside ours with admission control
on and off, the point-4 targets of the overloaded 1 x 0.2 CPU cell, and the sentences that say
which of the workshop's conclusions hold. Built from the cell records only."""

from __future__ import annotations

from dataclasses import dataclass

from loadtest.closed_model import CONNECTION_ERROR, OK, REFUSED, TIMEOUT
from matrix.analyse.analysis import HOST_SATURATION
from matrix.analyse.records import CellRecord, StepRecord

# Point-4 targets (issue 8) for an overloaded replica with admission control on.
OK_P95_MS = 500.0
REFUSED_P95_MS = 50.0
MIN_SHARE_OF_KNEE = 0.8


@dataclass(frozen=True)
class Side:
    """One cell's workshop hold, with admission control on or off."""

    cell: CellRecord
    step: StepRecord

    @property
    def answered(self) -> int:
        return self.step.ok + self.step.failed

    def share(self, kind: str) -> float:
        count = self.step.ok if kind == OK else self.step.failures.get(kind, 0)
        return count / self.answered if self.answered else 0.0

    @property
    def other_failure_share(self) -> float:
        known = (REFUSED, TIMEOUT, CONNECTION_ERROR)
        other = sum(n for kind, n in self.step.failures.items() if kind not in known)
        return other / self.answered if self.answered else 0.0

    @property
    def unrefused_failure_share(self) -> float:
        """Every failure but a 503 refusal: timeouts, connection errors and the rest."""
        return self.share(TIMEOUT) + self.share(CONNECTION_ERROR) + self.other_failure_share

    @property
    def served_of_knee(self) -> float | None:
        knee = self.cell.reference_knee
        return self.step.served_rps / knee if knee else None

    @property
    def generator_busy(self) -> bool:
        return (self.step.loadgen_cpu_share or 0.0) > HOST_SATURATION or self.step.loadgen_saturated

    @property
    def host_busy(self) -> bool:
        """The whole machine was near its limit: the generator's requests and answers then wait
        for a core too, and client-side latency includes that wait."""
        return (self.step.host_cpu_share or 0.0) > HOST_SATURATION

    @property
    def machine_limited(self) -> bool:
        return self.generator_busy or self.host_busy

    @property
    def server_p95_ms(self) -> float | None:
        """The replicas' own p95 of the answers they gave (Prometheus), None without it."""
        return self.step.server.p95_ms if self.step.server is not None else None


@dataclass(frozen=True)
class Row:
    config_id: str
    replicas: int
    cpus: float
    memory: str
    observation: str
    on: Side | None
    off: Side | None

    @property
    def knee(self) -> float | None:
        for side in (self.on, self.off):
            if side is not None and side.cell.reference_knee is not None:
                return side.cell.reference_knee
        return None


@dataclass(frozen=True)
class Check:
    what: str
    target: str
    measured: str
    met: bool


def _side(cell: CellRecord | None) -> Side | None:
    if cell is None or cell.status != "measured" or not cell.trials:
        return None
    # The lowest trial (by served rate), as everywhere else in the report.
    trial = min(cell.trials, key=lambda t: t.steps[0].served_rps if t.steps else 0.0)
    return Side(cell, trial.steps[0]) if trial.steps else None


def rows(cells: list[CellRecord]) -> list[Row]:
    """One row per configuration, in matrix order, with its 'on' and 'off' cells."""
    order: list[str] = []
    by_config: dict[str, dict[str, CellRecord]] = {}
    for cell in cells:
        config = cell.config_id or cell.cell_id
        if config not in by_config:
            order.append(config)
            by_config[config] = {}
        on = cell.admission_limit is None or cell.admission_limit > 0
        by_config[config]["on" if on else "off"] = cell
    result = []
    for config in order:
        pair = by_config[config]
        first = next(iter(pair.values()))
        result.append(
            Row(
                config,
                first.replicas,
                first.cpus,
                first.memory,
                first.observation,
                _side(pair.get("on")),
                _side(pair.get("off")),
            )
        )
    return result


def target_checks(side: Side) -> list[Check]:
    """Issue 8's point-4 targets for an overloaded cell with admission control on."""
    step, cell = side.step, side.cell
    share = side.served_of_knee
    other = side.unrefused_failure_share
    return [
        Check(
            "p95 of successful answers",
            f"<= {OK_P95_MS:g} ms",
            _ms(step.p95_ms),
            step.p95_ms is not None and step.p95_ms <= OK_P95_MS,
        ),
        Check(
            "p95 of 503 refusals",
            f"< {REFUSED_P95_MS:g} ms",
            _ms(step.refused_p95_ms),
            step.refused_p95_ms is None or step.refused_p95_ms < REFUSED_P95_MS,
        ),
        Check(
            "served during the hold / the cell's knee",
            f">= {MIN_SHARE_OF_KNEE:.0%}",
            "no knee measured"
            if share is None
            else f"{step.served_rps:.0f} / {cell.reference_knee:.0f} req/s = {share:.0%}",
            share is not None and share >= MIN_SHARE_OF_KNEE,
        ),
        Check(
            "OOM kills and restarts",
            "none",
            f"{cell.oom_kills} / {cell.restarts}",
            cell.oom_kills == 0 and cell.restarts == 0,
        ),
        Check("failures other than 503", "none", f"{other:.2%}", other == 0.0),
    ]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


def _range(values: list[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:.0f}" if round(low) == round(high) else f"{low:.0f}-{high:.0f}"


def conclusions(table: list[Row]) -> list[str]:
    """Which of the workshop's conclusions hold, with our numbers."""
    on = [r.on for r in table if r.on is not None]
    off = [r.off for r in table if r.off is not None]
    both = on + off
    if not both:
        return ["No configuration was measured, so nothing can be said."]
    said = []
    served = [s.step.served_rps for s in both]
    if any(r.observation for r in table):
        said.append(
            f"**Throughput.** The workshop saw as little as 1-8 req/s on these limits; under the "
            f"same load ours served {_range(served)} successful req/s. So those figures were not "
            "what the configurations can serve: a load test that reports a few req/s from "
            "thousands of users measured its own path (generator, port proxy, timeouts), not the "
            "model."
        )
    if off:
        failing = [s for s in off if 1.0 - s.share(OK) > 0.01]
        worst = max(off, key=lambda s: 1.0 - s.share(OK))
        kinds = ", ".join(
            f"{kind} {n / worst.answered:.1%}"
            for kind, n in sorted(worst.step.failures.items())
            if n
        )
        said.append(
            f"**Peak, then failures.** Without admission control, {len(failing)} of {len(off)} "
            f"configurations failed more than 1 % of their requests; the worst, "
            f"{worst.cell.config_id}, failed {1.0 - worst.share(OK):.1%} ({kinds or 'none'}), "
            f"with successful answers at p95 {_ms(worst.step.p95_ms)}: the queue grows until "
            "clients give up."
            if failing
            else "**Peak, then failures.** Without admission control no configuration failed more "
            "than 1 % of its requests here: the workshop's collapse to 100 % failures did not "
            "come from the configurations themselves (this project found a port proxy that died "
            "under 10 000 connections; see matrix/README.md)."
        )
    if on:
        p95s = [s.step.p95_ms for s in on if s.step.p95_ms is not None]
        refused = [s.step.refused_p95_ms for s in on if s.step.refused_p95_ms is not None]
        served_on = [s.step.served_rps for s in on]
        clean = all(s.unrefused_failure_share == 0 for s in on)
        refusals = [s.share(REFUSED) for s in on]
        text = (
            f"**With admission control** every configuration kept serving "
            f"{_range(served_on)} req/s"
            + (", with no timeout, connection error or other failure" if clean else "")
            + f"; the excess ({min(refusals):.1%} to {max(refusals):.1%} of the answers) was "
            "refused with 503 and Retry-After. "
        )
        if any(s.machine_limited for s in on):
            text += (
                "On this machine-limited host the clients' own figures cannot show how fast "
                "that was: as the generator measured them, successful answers took up to "
                f"{_ms(max(p95s)) if p95s else '-'} and refusals up to "
                f"{_ms(max(refused)) if refused else '-'} (p95), time spent queueing inside "
                "the load generator (see below); Nginx decides a refusal without asking a "
                "replica."
            )
        else:
            text += (
                f"Successful answers took p95 {_ms(min(p95s)) if p95s else '-'} to "
                f"{_ms(max(p95s)) if p95s else '-'}"
                + (f", refusals at most {_ms(max(refused))} (p95)" if refused else "")
                + ": overload becomes a fast, explicit refusal instead of a collapse."
            )
        said.append(text)
    mem = [s.cell.api_mem_peak_mb for s in both if s.cell.api_mem_peak_mb is not None]
    small = next((r for r in table if r.replicas == 1 and r.on is not None), None)
    if small is not None and small.on is not None:
        within = small.on.step.p95_ms is not None and small.on.step.p95_ms <= OK_P95_MS
        said.append(
            f'**"About 0.5 CPU and 512 MB per container"{" does not hold" if within else ""}.** '
            f"One replica with {small.cpus:g} CPU and {small.memory} served "
            f"{small.on.step.served_rps:.0f} req/s, its successful answers at p95 "
            f"{_ms(small.on.step.p95_ms)} ({'within' if within else 'over'} the "
            f"{OK_P95_MS:g} ms objective)"
            + (f", and no replica used more than {max(mem):.0f} MB" if mem else "")
            + ". The size follows from the target rate: divide it by a replica's knee."
        )
    scaled = [r for r in table if r.replicas > 1 and r.on is not None]
    single = [r for r in table if r.replicas == 1 and r.on is not None]
    if scaled and single:
        best_single = max(single, key=lambda r: r.on.step.served_rps if r.on else 0.0)
        best_scaled = max(scaled, key=lambda r: r.on.step.served_rps if r.on else 0.0)
        assert best_single.on is not None and best_scaled.on is not None
        said.append(
            f'**"Then scale out" holds as far as CPU goes:** {best_scaled.config_id} '
            f"({best_scaled.replicas * best_scaled.cpus:g} CPU in all) served "
            f"{best_scaled.on.step.served_rps:.0f} req/s against "
            f"{best_single.on.step.served_rps:.0f} for {best_single.config_id}; on one host, "
            "more replicas add CPU, not machines."
        )
    if any(s.machine_limited for s in both):
        busy = sorted({s.cell.cell_id for s in both if s.machine_limited})
        server = [s.server_p95_ms for s in both if s.machine_limited and s.server_p95_ms]
        said.append(
            f"**The machine was part of the limit** for {', '.join(busy)}: the host's CPU (or the "
            f"Locust workers') was more than {HOST_SATURATION:.0%} busy, so the users offered less "
            "than they would from a bigger generator, and the client-side latencies include the "
            "generator's own queue (a closed-loop generator that runs out of CPU makes its users "
            "wait, which shows as latency, not as a lower send rate)"
            + (
                f"; the replicas themselves answered at p95 {_ms(min(server))} to "
                f"{_ms(max(server))} (their own histogram)"
                if server
                else ""
            )
            + ". These rows describe what this host could drive, not the service's limit."
        )
    return said
