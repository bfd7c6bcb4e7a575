"""A stand-in for the API behind Nginx on loopback: /ready answers 200, or 503 while `down`."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ReadyServer(ThreadingHTTPServer):
    down = False

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class ReadyHandler(BaseHTTPRequestHandler):
    server: ReadyServer

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        status = 503 if self.server.down or self.path != "/ready" else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass
