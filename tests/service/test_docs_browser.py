"""/docs in a real headless Chromium with every host but loopback unresolvable: Swagger UI and
ReDoc must render from the assets the service serves itself, as on a machine without internet."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import free_port, require_command, start_gunicorn, wait_for_http

pytestmark = pytest.mark.integration

# Any name but 127.0.0.1 fails to resolve, so a page that needs a CDN stays blank.
OFFLINE_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)


@pytest.fixture(scope="module")
def docs_server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    server = start_gunicorn(port, tmp_path_factory.mktemp("docs") / "gunicorn.log")
    try:
        wait_for_http(f"http://127.0.0.1:{port}/ready", timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def _chromium(tmp_path: Path, *args: str) -> str:
    binary = require_command("chromium")
    profile = tmp_path / "profile"  # a fresh profile: nothing cached from an earlier visit
    result = subprocess.run(
        [
            binary,
            *OFFLINE_FLAGS,
            f"--user-data-dir={profile}",
            "--virtual-time-budget=15000",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_swagger_ui_renders_the_predict_operation_offline(docs_server: str, tmp_path: Path) -> None:
    dom = _chromium(tmp_path, "--dump-dom", f"{docs_server}/docs")
    assert 'data-path="/predict"' in dom, dom[-2000:]
    assert "Predict one penguin's species" in dom
    assert 'data-path="/predict/batch"' in dom


def test_redoc_renders_the_predict_operation_offline(docs_server: str, tmp_path: Path) -> None:
    dom = _chromium(tmp_path, "--dump-dom", f"{docs_server}/redoc")
    assert "Predict one penguin's species" in dom, dom[-2000:]
    assert "/predict/batch" in dom
