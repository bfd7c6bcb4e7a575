"""The live console (prometheus/consoles/penguins.html) rendered by a real Prometheus that
scrapes a real replica, and shown in a real headless Chromium."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.prometheus.browser import chromium, screenshot
from tests.prometheus.prometheus_runner import RunningPrometheus, start_prometheus, wait_for_value
from tests.support import (
    PROJECT_ROOT,
    SEED_BODY,
    free_port,
    require,
    start_gunicorn,
    wait_for_http,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningPrometheus, str]]:
    require(
        (PROJECT_ROOT / "models" / "manifest.json").is_file(),
        "models/ is not trained (scripts/test.sh runs ensure_models)",
    )
    work = tmp_path_factory.mktemp("console")
    port = free_port()
    replica = start_gunicorn(port, work / "gunicorn.log", workers=2)
    prometheus = None
    try:
        wait_for_http(f"http://127.0.0.1:{port}/ready", timeout=60)
        prometheus = start_prometheus(work, {"api": [f"127.0.0.1:{port}"]})
        assert wait_for_value(prometheus, 'sum(up{job="api"})', 1) == 1
        with httpx.Client(timeout=10) as client:
            # A 4xx series must exist for a scrape before rate() can see it grow.
            assert client.post(f"http://127.0.0.1:{port}/predict", content=b"{").status_code == 400
            time.sleep(1.5)
            for _ in range(30):
                assert client.post(f"http://127.0.0.1:{port}/predict", json=SEED_BODY).is_success
            assert client.post(f"http://127.0.0.1:{port}/predict", content=b"{").status_code == 400
        time.sleep(2.5)  # two scrapes after the last request
        yield prometheus, f"127.0.0.1:{port}"
    finally:
        if prometheus is not None:
            prometheus.stop()
        replica.send_signal(signal.SIGTERM)
        replica.wait(timeout=30)


def test_console_renders_every_section_with_the_replica(
    scraped: tuple[RunningPrometheus, str],
) -> None:
    prometheus, instance = scraped
    page = httpx.get(f"{prometheus.url}/consoles/penguins.html", timeout=10)
    assert page.status_code == 200, page.text[-2000:]
    html = page.text
    assert "error executing template" not in html and "<no value>" not in html, html[-2000:]
    assert '<meta http-equiv="refresh" content="3">' in html  # live by default
    for section in (
        "API replicas (server side)",
        "Errors by status",
        "Nginx",
        "Locust (load generator)",
        "Host",
    ):
        assert section in html
    row = html.split(f"<td>{instance}", 1)[1].split("</tr>", 1)[0]
    cells = re.findall(r"<td>([^<]*)</td>", row)
    # requests/s, p50, p95, 5xx/s, in flight, CPU, memory: all figures, none missing.
    assert len(cells) == 7 and "-" not in cells, cells
    assert float(cells[0]) > 0 and float(cells[2]) >= float(cells[1]) > 0
    assert float(cells[6]) > 10  # MiB: the replica's cgroup (or the host's, outside one)
    assert re.search(r"<td>400</td><td>/predict</td>", html)


def test_console_in_headless_chromium(
    scraped: tuple[RunningPrometheus, str], tmp_path: Path
) -> None:
    prometheus, instance = scraped
    # Without its reload: Chromium's virtual time would never settle on a page that reloads.
    url = f"{prometheus.url}/consoles/penguins.html?refresh=off"
    dom = chromium(tmp_path / "dom", "--dump-dom", url, budget_ms=3000)
    assert "API replicas (server side)" in dom and instance in dom
    assert 'http-equiv="refresh"' not in dom
    out = tmp_path / "console.png"
    screenshot(tmp_path / "shot", url, out)
    with Image.open(out) as image:
        assert image.size == (1200, 1100)
        # Not a blank page: the tables' borders and text make many distinct colours.
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 16) or []) > 20
