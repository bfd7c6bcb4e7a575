"""A bare ASGI app that answers every request with one fixed JSON body.

scripts/bench_service.sh serves it with the same Gunicorn config and worker as the API, on the
same core and in the same run, so each endpoint's throughput is reported as a share of what this
server stack can do at all. It is never deployed.
"""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

_BODY = b'{"status":"ok"}'
_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(_BODY))],
}
_RESPONSE = {"type": "http.response.body", "body": _BODY}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return  # lifespan: nothing to set up (the server goes on without it)
    await send(_START)
    await send(_RESPONSE)
