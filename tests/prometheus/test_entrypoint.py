"""prometheus/entrypoint.sh: the command line it gives Prometheus, read from a stand-in binary."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support import PROJECT_ROOT, require_command

ENTRYPOINT = PROJECT_ROOT / "prometheus" / "entrypoint.sh"


def prometheus_args(tmp_path: Path) -> list[str]:
    """Runs the entrypoint's default command with a `prometheus` that records its arguments."""
    require_command("envsubst")  # the entrypoint renders its template with it
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "args"
    stub = bin_dir / "prometheus"
    stub.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\n')
    stub.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PROMETHEUS_TEMPLATE": str(PROJECT_ROOT / "prometheus" / "prometheus.yml.template"),
        "PROMETHEUS_RUNTIME_DIR": str(tmp_path / "run"),
        "PROMETHEUS_DATA_DIR": str(tmp_path / "data"),
    }
    subprocess.run(["bash", str(ENTRYPOINT), "prometheus"], env=env, check=True, timeout=30)
    return record.read_text().splitlines()


def test_prometheus_runs_without_the_lifecycle_api(tmp_path: Path) -> None:
    # /-/quit and /-/reload would let anyone with the UI login stop or reconfigure it.
    args = prometheus_args(tmp_path)
    assert any(arg.startswith("--config.file=") for arg in args)
    assert not [arg for arg in args if "lifecycle" in arg]
