"""The load test sends a target's own requests (--target-requests, the matrix's file for a
service that is not ours): each with its method, path, headers and body, picked by weight, and
counts an answer as a success on its expected status only."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from matrix.measure.loadgen import locust_executable
from tests.locust.helpers import LOCUST_DIR

# What the recording server answers per path: /missing is 404, which its request does not expect.
STATUS = {"/predict": 201, "/info": 200, "/missing": 404}


class Recorder(ThreadingHTTPServer):
    seen: list[tuple[str, str, str, bytes]]


class Handler(BaseHTTPRequestHandler):
    server: Recorder
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.seen.append((self.command, self.path, self.headers.get("X-Api-Key", ""), body))
        self.send_response(STATUS.get(self.path, 500))
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST = _answer  # noqa: N815 (the names http.server calls)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def recording_server() -> Iterator[Recorder]:
    server = Recorder(("127.0.0.1", 0), Handler)
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_the_open_model_sends_the_targets_requests_and_judges_their_status(
    tmp_path: Path,
) -> None:
    requests = tmp_path / "target_requests.json"
    requests.write_text(
        json.dumps(
            {
                "requests": [
                    {
                        "method": "POST",
                        "path": "/predict",
                        "body": {"x": [1, 2]},
                        "headers": {"X-Api-Key": "k1"},
                        "expect_status": 201,
                        "weight": 6,
                    },
                    {"method": "GET", "path": "/info", "weight": 3},
                    {"method": "GET", "path": "/missing", "weight": 1},
                ]
            }
        )
    )
    step_log = tmp_path / "steps.jsonl"
    with recording_server() as server:
        host = f"http://127.0.0.1:{server.server_address[1]}"
        result = subprocess.run(
            [
                locust_executable(),
                "-f",
                str(LOCUST_DIR / "locustfile.py"),
                "--headless",
                "--only-summary",
                "--host",
                host,
                "--target-requests",
                str(requests),
                "--load-profile",
                "staircase",
                "--start-rate",
                "40",
                "--step-rate",
                "40",
                "--max-rate",
                "40",
                "--step-seconds",
                "4",
                "--settle-seconds",
                "0.5",
                "--max-failure-ratio",
                "1",
                "--min-completion-ratio",
                "0.01",
                "--step-log",
                str(step_log),
                "--run-time",
                "60s",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=100,
            check=False,
        )
        seen = list(server.seen)
    assert step_log.is_file(), result.stderr[-2000:]
    steps = [
        json.loads(line)
        for line in step_log.read_text().splitlines()
        if '"histogram"' in line and '"event": "step"' in line
    ]
    assert len(steps) == 1, result.stderr[-2000:]
    step = steps[0]
    posts = [s for s in seen if s[0] == "POST"]
    # Every request as given: the POST with its body and header, the GETs without a body.
    assert posts and all(s[1:] == ("/predict", "k1", b'{"x": [1, 2]}') for s in posts)
    assert {s[1] for s in seen if s[0] == "GET"} == {"/info", "/missing"}
    assert all(s[3] == b"" for s in seen if s[0] == "GET")
    # Picked by weight: 60 % / 30 % / 10 % of about 150 requests.
    shares = {path: sum(1 for s in seen if s[1] == path) / len(seen) for path in STATUS}
    assert 0.45 < shares["/predict"] < 0.75 and 0.03 < shares["/missing"] < 0.2, shares
    # 201 on /predict and 200 on /info count as successes; the unexpected 404 as a failure.
    assert step["failures"] == {"HTTP 404": step["failed"]} and step["failed"] > 0
    assert step["ok"] > 0 and step["ok"] + step["failed"] <= len(seen)
