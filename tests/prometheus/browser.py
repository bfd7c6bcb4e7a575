"""Headless Chromium for the monitoring tests: a page's DOM after its scripts ran, or a
screenshot (flags as in tests/service/test_docs_browser.py)."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

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
        [
            require_command("chromium"),
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def screenshot(profile: Path, url: str, out: Path, size: str = "1200,1100") -> bytes:
    chromium(profile, f"--screenshot={out}", f"--window-size={size}", url, budget_ms=5000)
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE), f"{out} is not a PNG"
    return data


class DevToolsPage:
    """One headless Chromium page driven over the DevTools protocol: extra request headers (the
    lab's basic-auth login, which a URL with embedded credentials cannot carry to the page's own
    fetch() calls), navigation, and JavaScript evaluated in the page."""

    def __init__(self, profile: Path) -> None:
        import websocket  # websocket-client: the DevTools protocol's transport

        self.process = subprocess.Popen(
            [
                require_command("chromium"),
                *FLAGS,
                f"--user-data-dir={profile}",
                "--remote-debugging-port=0",
                "--window-size=1280,1000",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.is_file() or not port_file.read_text().strip():
            assert time.monotonic() < deadline, "Chromium did not open its DevTools port"
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            pages = [t for t in json.load(answer) if t["type"] == "page"]
        self.socket = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=30)
        self._next_id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        self.socket.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self._next_id:
                assert "error" not in message, message
                result: dict[str, Any] = message.get("result", {})
                return result

    def evaluate(self, expression: str) -> Any:
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        return result.get("result", {}).get("value")

    def wait_for_text(self, text: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        body = ""
        while time.monotonic() < deadline:
            body = self.evaluate("document.body ? document.body.innerText : ''") or ""
            if text in body:
                return str(body)
            time.sleep(0.3)
        raise AssertionError(f"{text!r} never appeared; the page shows:\n{body[-2000:]}")

    def close(self) -> None:
        self.socket.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
