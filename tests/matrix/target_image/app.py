"""A tiny model API that is not the penguin service, for the matrix's target tests: the standard
library's HTTP server on port 8080 with GET /healthz and POST /score, which answers 201 after a
fixed amount of CPU work per request (so a CPU limit gives it a finite knee). No /metrics."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = 8080
# Iterations of arithmetic per /score: about a millisecond or two of one core.
WORK = 20_000


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Nginx's upstream connections expect

    def _reply(self, status: int, payload: object) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        if self.path == "/healthz":
            self._reply(200, {"status": "ok"})
        else:
            self._reply(404, {"detail": "not found"})

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        try:
            features = json.loads(self.rfile.read(length))["features"]
        except (ValueError, KeyError, TypeError):
            self._reply(422, {"detail": "a JSON body with features, please"})
            return
        if self.path != "/score":
            self._reply(404, {"detail": "not found"})
            return
        total = 0.0
        for index in range(WORK):
            total += (index % 7) * 0.5
        self._reply(201, {"score": sum(features) + total * 0.0})

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()
