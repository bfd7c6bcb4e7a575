"""Headless Chromium for the monitoring tests: a page's DOM after its scripts ran, or a
screenshot (flags as in tests/service/test_docs_browser.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support import require_command

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--hide-scrollbars",
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chromium(profile: Path, *args: str, budget_ms: int = 10000) -> str:
    """Runs Chromium once with a fresh profile; its stdout (--dump-dom prints the DOM there)."""
    result = subprocess.run(
        [require_command("chromium"), *FLAGS, f"--user-data-dir={profile}",
         f"--virtual-time-budget={budget_ms}", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def screenshot(profile: Path, url: str, out: Path, size: str = "1200,1100") -> bytes:
    chromium(profile, f"--screenshot={out}", f"--window-size={size}", url, budget_ms=5000)
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE), f"{out} is not a PNG"
    return data
