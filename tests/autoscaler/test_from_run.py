"""The autoscaler's target from a matrix run's summary.csv: a real quick run of 2026-11-26, frozen
in tests/docs/fixtures (docs/quick-run is replaced by each new run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoscaler.from_run import NoKnee, main, target_rps_per_replica
from tests.support import PROJECT_ROOT

QUICK_RUN = PROJECT_ROOT / "tests" / "docs" / "fixtures" / "quick-run"


def test_one_replica_cell_gives_70_percent_of_its_knee() -> None:
    # r1-c0.1-m256M: knee 637.4 req/s on one replica.
    assert target_rps_per_replica(QUICK_RUN, 0.1, "256M") == pytest.approx(446.2)


def test_several_replica_counts_keep_the_lowest_knee_per_replica() -> None:
    # At 0.05 CPU: one replica 275.8, two replicas 747.0 / 2 = 373.5: the lower one counts.
    assert target_rps_per_replica(QUICK_RUN, 0.05, "256M") == pytest.approx(193.1)


def test_memory_is_compared_as_a_size() -> None:
    assert target_rps_per_replica(QUICK_RUN, 0.1, "256MiB") == pytest.approx(446.2)


def test_limits_the_run_did_not_measure_are_a_clear_error() -> None:
    with pytest.raises(NoKnee, match=r"no measured knee at 1 CPU / 512M .*0\.05 CPU / 256M"):
        target_rps_per_replica(QUICK_RUN, 1.0, "512M")


def test_cli_prints_the_target_and_fails_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(QUICK_RUN), "--cpus", "0.1", "--memory", "256M"]) == 0
    assert capsys.readouterr().out.strip() == "446.2"
    assert main([str(tmp_path), "--cpus", "0.1", "--memory", "256M"]) == 2
    assert "summary.csv does not exist" in capsys.readouterr().err
