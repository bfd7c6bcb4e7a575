"""Schemathesis against the real server: the OpenAPI document tells the truth.

Every check (`--checks all`): no 5xx, every status, content type, header and body as documented,
every schema-valid request accepted and every schema-invalid one refused.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import free_port, require, start_gunicorn, wait_for_http

pytestmark = pytest.mark.integration

SCHEMATHESIS = Path(sys.executable).with_name("st")


def test_schemathesis_finds_nothing(models_dir: Path, tmp_path: Path) -> None:
    require(SCHEMATHESIS.exists(), f"{SCHEMATHESIS} is missing (requirements/dev.txt)")
    port = free_port()
    server = start_gunicorn(port, tmp_path / "gunicorn.log")
    try:
        wait_for_http(f"http://127.0.0.1:{port}/ready", timeout=60)
        result = subprocess.run(
            [
                str(SCHEMATHESIS),
                "run",
                f"http://127.0.0.1:{port}/openapi.json",
                "--checks",
                "all",
                "--mode",
                "all",
                "--max-examples",
                "60",
                "--seed",
                "20261125",
                "--workers",
                "1",
                "--generation-database",
                "none",
                "--no-color",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    # A run that tested nothing must not pass: all six documented operations were exercised.
    assert "Tested: 6" in result.stdout, result.stdout[-2000:]
    assert "No issues found" in result.stdout, result.stdout[-2000:]
