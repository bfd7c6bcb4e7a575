"""One JSON error shape for every refusal: {"error": code, "message": text, "detail": [items]}.

Each item names the offending field, so a client can fix its request without reading logs. An
answer lists at most MAX_LISTED_ERRORS items and says how many more there were: a hostile body can
hold thousands of mistakes, and rendering each of them cost more than the request was worth (a
210 MB answer for a 1 MiB body, issue 21).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError

# Pydantic reports syntax problems (invalid JSON, bad UTF-8, too deep) with these types.
_SYNTAX_ERROR_TYPES = frozenset({"json_invalid", "json_type"})
_LOCATION_ROOTS = frozenset({"body", "query", "path", "header", "cookie"})
# The items an answer lists; the rest are counted in one last item of type MORE_ERRORS.
MAX_LISTED_ERRORS = 20
MORE_ERRORS = "more_errors"
# A location part longer than this (an unknown key can be as long as the body) is cut: errors
# name the field without echoing the input.
_MAX_NAME_PART = 64


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
            text = str(part)
            if len(text) > _MAX_NAME_PART:
                text = text[:_MAX_NAME_PART] + "..."
            name += f".{text}" if name else text
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
    """Map a pydantic error from parsing a body: bad JSON is 400, bad content is 422.

    The detail lists the first MAX_LISTED_ERRORS errors, then one item counting the others."""
    # include_input=False: never echo (possibly huge or hostile) input back.
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    listed = _items(errors[:MAX_LISTED_ERRORS])
    more = len(errors) - len(listed)
    if more:
        listed.append({"field": "body", "message": f"{more} more errors", "type": MORE_ERRORS})
    if any(e.get("type") in _SYNTAX_ERROR_TYPES for e in errors):
        return ApiError(400, "invalid_json", "the request body is not valid JSON", listed)
    fields = sorted({item["field"] for item in listed if item["type"] != MORE_ERRORS})
    message = f"invalid input in: {', '.join(fields)}"
    if more:
        message += f" and {more} more errors"
    return ApiError(422, "validation_error", message, listed)
