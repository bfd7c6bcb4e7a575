"""One JSON error shape for every refusal: {"error": code, "message": text, "detail": [items]}.

Each item names the offending field, so a client can fix its request without reading logs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError

# Pydantic reports syntax problems (invalid JSON, bad UTF-8, too deep) with these types.
_SYNTAX_ERROR_TYPES = frozenset({"json_invalid", "json_type"})
_LOCATION_ROOTS = frozenset({"body", "query", "path", "header", "cookie"})


class ApiError(Exception):
    """A refusal that the app answers with `status` and the JSON error body."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        detail: Sequence[dict[str, str]] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.detail = list(detail)
        self.headers = headers or {}

    def body(self) -> bytes:
        return error_body(self.error, self.message, self.detail)


def error_body(error: str, message: str, detail: Iterable[dict[str, str]] = ()) -> bytes:
    return json.dumps(
        {"error": error, "message": message, "detail": list(detail)}, separators=(",", ":")
    ).encode()


def not_ready() -> ApiError:
    return ApiError(503, "not_ready", "models are not loaded yet", headers={"Retry-After": "1"})


def field_name(loc: Sequence[Any]) -> str:
    """("instances", 3, "sex") -> "instances[3].sex"; the empty location is the whole body."""
    parts = list(loc)
    if parts and parts[0] in _LOCATION_ROOTS and len(parts) > 1:
        parts = parts[1:]
    name = ""
    for part in parts:
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += f".{part}" if name else str(part)
    return name or "body"


def _items(errors: Iterable[Any]) -> list[dict[str, str]]:
    return [
        {
            "field": field_name(e.get("loc", ())),
            "message": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in errors
    ]


def validation_api_error(exc: ValidationError) -> ApiError:
    """Map a pydantic error from parsing a body: bad JSON is 400, bad content is 422."""
    # include_input=False: never echo (possibly huge or hostile) input back.
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    if any(e.get("type") in _SYNTAX_ERROR_TYPES for e in errors):
        return ApiError(400, "invalid_json", "the request body is not valid JSON", _items(errors))
    fields = sorted({field_name(e.get("loc", ())) for e in errors})
    return ApiError(
        422, "validation_error", f"invalid input in: {', '.join(fields)}", _items(errors)
    )
