"""One JSON error shape for every refusal: {"error": code, "message": text, "detail": [items]}.

Each item names the offending field, so a client can fix its request without reading logs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

logger = logging.getLogger("service.errors")

# Pydantic reports syntax problems (invalid JSON, bad UTF-8, too deep) with these types.
_SYNTAX_ERROR_TYPES = frozenset({"json_invalid", "json_type"})
_LOCATION_ROOTS = frozenset({"body", "query", "path", "header", "cookie"})


class ApiError(Exception):
    """A refusal the handlers turn into a JSON response with `status`."""

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
        self.headers = headers


def error_body(error: str, message: str, detail: Iterable[dict[str, str]] = ()) -> bytes:
    return json.dumps(
        {"error": error, "message": message, "detail": list(detail)}, separators=(",", ":")
    ).encode()


def error_response(
    status: int,
    error: str,
    message: str,
    detail: Iterable[dict[str, str]] = (),
    headers: dict[str, str] | None = None,
) -> Response:
    return Response(
        error_body(error, message, detail),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


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


def _items(errors: Iterable[dict[str, Any]]) -> list[dict[str, str]]:
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


async def _api_error_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.error, exc.message, exc.detail, exc.headers)


async def _request_validation_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    items = _items(exc.errors())
    fields = sorted({item["field"] for item in items})
    return error_response(422, "validation_error", f"invalid input in: {', '.join(fields)}", items)


async def _http_exception_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)


async def _unexpected_handler(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error_handler)
    app.add_exception_handler(RequestValidationError, _request_validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_exception_handler)
    app.add_exception_handler(Exception, _unexpected_handler)
