"""The workshop comparison: each configuration's observation beside ours with admission control
on and off, the point-4 targets of the overloaded 1 x 0.2 CPU cell, and the figures behind the
sentences that say which of the workshop's conclusions hold (the sentences themselves are in
matrix/report/templates/workshop_conclusions.md.j2). Built from the cell records only."""

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
            ms(step.p95_ms),
            step.p95_ms is not None and step.p95_ms <= OK_P95_MS,
        ),
        Check(
            "p95 of 503 refusals",
            f"< {REFUSED_P95_MS:g} ms",
            ms(step.refused_p95_ms),
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


def ms(value: float | None) -> str:
    """A latency for the report: '-', one decimal below 10 ms, whole milliseconds above."""
    return "-" if value is None else f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


def span(values: list[float]) -> str:
    """'low-high' in whole numbers, or one number when they round the same."""
    low, high = min(values), max(values)
    return f"{low:.0f}" if round(low) == round(high) else f"{low:.0f}-{high:.0f}"


@dataclass(frozen=True)
class Peak:
    """Admission control off: how many configurations failed more than 1 %, and the worst."""

    configurations: int
    failing: int
    worst: Side
    worst_failed: float
    worst_failures: list[tuple[str, float]]  # (kind, share of the answers), non-zero ones


@dataclass(frozen=True)
class Admitted:
    """Admission control on: what was served, refused, and how fast."""

    served: list[float]
    clean: bool  # no failure but 503 refusals
    refused_shares: list[float]
    machine_limited: bool
    p95s: list[float]
    refused_p95s: list[float]


@dataclass(frozen=True)
class SmallReplica:
    """The workshop's '0.5 CPU and 512 MB per container' against one small replica."""

    row: Row
    side: Side
    within: bool
    objective_ms: float
    mem_peak_mb: float | None


@dataclass(frozen=True)
class ScaleOut:
    single: Row
    single_side: Side
    scaled: Row
    scaled_side: Side


@dataclass(frozen=True)
class MachineLimit:
    cells: list[str]
    saturation: float  # the CPU share above which the machine counts as busy
    server_p95s: list[float]


@dataclass(frozen=True)
class Conclusions:
    """What the report says about the workshop's conclusions (the prose is in the template);
    None: that conclusion has no measurement to speak from."""

    measured: bool
    served: list[float] | None  # the throughput, when the matrix carries the workshop's figures
    peak: Peak | None
    admitted: Admitted | None
    small: SmallReplica | None
    scale_out: ScaleOut | None
    machine: MachineLimit | None


def _peak(off: list[Side]) -> Peak | None:
    if not off:
        return None
    worst = max(off, key=lambda s: 1.0 - s.share(OK))
    return Peak(
        configurations=len(off),
        failing=sum(1.0 - s.share(OK) > 0.01 for s in off),
        worst=worst,
        worst_failed=1.0 - worst.share(OK),
        worst_failures=[
            (kind, n / worst.answered) for kind, n in sorted(worst.step.failures.items()) if n
        ],
    )


def _admitted(on: list[Side]) -> Admitted | None:
    if not on:
        return None
    return Admitted(
        served=[s.step.served_rps for s in on],
        clean=all(s.unrefused_failure_share == 0 for s in on),
        refused_shares=[s.share(REFUSED) for s in on],
        machine_limited=any(s.machine_limited for s in on),
        p95s=[s.step.p95_ms for s in on if s.step.p95_ms is not None],
        refused_p95s=[s.step.refused_p95_ms for s in on if s.step.refused_p95_ms is not None],
    )


def _small(table: list[Row], both: list[Side]) -> SmallReplica | None:
    small = next((r for r in table if r.replicas == 1 and r.on is not None), None)
    if small is None or small.on is None:
        return None
    mem = [s.cell.api_mem_peak_mb for s in both if s.cell.api_mem_peak_mb is not None]
    p95 = small.on.step.p95_ms
    return SmallReplica(
        small,
        small.on,
        within=p95 is not None and p95 <= OK_P95_MS,
        objective_ms=OK_P95_MS,
        mem_peak_mb=max(mem) if mem else None,
    )


def _scale_out(table: list[Row]) -> ScaleOut | None:
    scaled = [r for r in table if r.replicas > 1 and r.on is not None]
    single = [r for r in table if r.replicas == 1 and r.on is not None]
    if not (scaled and single):
        return None
    best_single = max(single, key=lambda r: r.on.step.served_rps if r.on else 0.0)
    best_scaled = max(scaled, key=lambda r: r.on.step.served_rps if r.on else 0.0)
    assert best_single.on is not None and best_scaled.on is not None
    return ScaleOut(best_single, best_single.on, best_scaled, best_scaled.on)


def _machine(both: list[Side]) -> MachineLimit | None:
    busy = [s for s in both if s.machine_limited]
    if not busy:
        return None
    return MachineLimit(
        cells=sorted({s.cell.cell_id for s in busy}),
        saturation=HOST_SATURATION,
        server_p95s=[s.server_p95_ms for s in busy if s.server_p95_ms],
    )


def conclusions(table: list[Row]) -> Conclusions:
    """Which of the workshop's conclusions hold, as the numbers the report's sentences quote."""
    on = [r.on for r in table if r.on is not None]
    off = [r.off for r in table if r.off is not None]
    both = on + off
    return Conclusions(
        measured=bool(both),
        served=[s.step.served_rps for s in both]
        if both and any(r.observation for r in table)
        else None,
        peak=_peak(off),
        admitted=_admitted(on),
        small=_small(table, both),
        scale_out=_scale_out(table),
        machine=_machine(both),
    )
