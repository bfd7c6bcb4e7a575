"""The autoscaler's target from a matrix run: the knee per replica at the stack's CPU and memory
limits, with headroom.

A run's summary.csv (matrix/report/report.py writes it) holds one row per measured cell; the
knee is the highest rate a cell served within the objective. Divided by the cell's replicas it
is what one replica can take; 70 % of it leaves room for a spike while new replicas start.
Where the run measured several replica counts at these limits, the lowest knee per replica is
kept: scaling out is rarely perfectly linear, and a target too high only shows as refusals.

    python -m autoscaler.from_run results/<run> --cpus 0.5 --memory 512M   # prints the target
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

from matrix.config import memory_bytes

HEADROOM = 0.7
SUMMARY = "summary.csv"
KNEE_COLUMN = "knee_rps_median"


class NoKnee(ValueError):
    """The run has no usable knee at the asked limits."""


def knee_per_replica(summary: Path, cpus: float, memory: str) -> float:
    """The lowest measured knee per replica among the cells at `cpus` and `memory`."""
    wanted_memory = memory_bytes(memory)
    knees: list[float] = []
    available: set[str] = set()
    with summary.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row.get("status") != "measured" or not row.get(KNEE_COLUMN):
                continue
            available.add(f"{float(row['cpus']):g} CPU / {row['memory']}")
            same_cpus = math.isclose(float(row["cpus"]), cpus, rel_tol=1e-6)
            if same_cpus and memory_bytes(row["memory"]) == wanted_memory:
                knees.append(float(row[KNEE_COLUMN]) / int(row["replicas"]))
    if not knees:
        measured = ", ".join(sorted(available)) or "none"
        raise NoKnee(
            f"{summary} has no measured knee at {cpus:g} CPU / {memory} (measured: {measured})"
        )
    return min(knees)


def target_rps_per_replica(
    run: Path, cpus: float, memory: str, headroom: float = HEADROOM
) -> float:
    """AUTOSCALE_TARGET_RPS_PER_REPLICA for a stack at these limits, from run/summary.csv."""
    summary = run / SUMMARY if run.is_dir() else run
    if not summary.is_file():
        raise NoKnee(f"{summary} does not exist (a matrix run's directory has one)")
    return round(knee_per_replica(summary, cpus, memory) * headroom, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m autoscaler.from_run",
        description="Prints the autoscaler's target req/s per replica from a matrix run.",
    )
    parser.add_argument("run", type=Path, help="results/<run> (or its summary.csv)")
    parser.add_argument("--cpus", type=float, required=True, help="the api's CPU limit (API_CPUS)")
    parser.add_argument("--memory", required=True, help="the api's memory limit (API_MEMORY)")
    parser.add_argument("--headroom", type=float, default=HEADROOM, help="share of the knee")
    args = parser.parse_args(argv)
    if not 0 < args.headroom <= 1:
        parser.error("--headroom takes a share in (0, 1]")
    try:
        print(f"{target_rps_per_replica(args.run, args.cpus, args.memory, args.headroom):g}")
    except (NoKnee, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
