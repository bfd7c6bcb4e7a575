"""The OpenAPI document, built from the endpoint declarations the app serves (service/api.py),
and the interactive documentation pages, whose assets ship in the image (fastapi-offline's copy
of Swagger UI and ReDoc), so /docs works on a machine without internet.

The two pages are written here rather than taken from FastAPI's helpers: no service module
imports FastAPI or Starlette's application code, so a worker does not load them
(service/README.md, "Why the service has its own ASGI layer")."""

from __future__ import annotations

import html
import importlib.util
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from service.api import JSON, Endpoint
from service.schemas import ErrorResponse

OPENAPI_VERSION = "3.1.0"
OPENAPI_PATH = "/openapi.json"
DOCS_PATH = "/docs"
REDOC_PATH = "/redoc"
ASSETS_PATH = "/docs/assets"


def _assets_dir() -> Path:
    # Located without importing fastapi_offline, which would build a FastAPI app class we never use.
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("fastapi-offline is not installed (requirements/service.txt)")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


ASSETS_DIR = _assets_dir()
# Asset file -> media type; the docs pages load exactly these.
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}

ERROR_DESCRIPTIONS = {
    400: "Invalid JSON, empty body or malformed Content-Length",
    404: "Unknown path",
    405: "Method not allowed on this path",
    413: "Body larger than PENGUIN_MAX_BODY_BYTES",
    414: "Query string longer than the API reads (service/api.py: MAX_QUERY_BYTES)",
    415: "Body is not JSON",
    422: "Invalid field, unknown model, too many instances or values",
    503: "Models not loaded yet",
}
_REF = "#/components/schemas/{model}"


def openapi_document(
    endpoints: Iterable[Endpoint], title: str, version: str, description: str
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `endpoints` (those with in_schema)."""
    documented = [endpoint for endpoint in endpoints if endpoint.in_schema]
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorResponse, "serialization")]
    for endpoint in documented:
        if endpoint.body is not None:
            models.append((endpoint.body, "validation"))
        if endpoint.response is not None:
            models.append((endpoint.response, "serialization"))
    schemas, top = models_json_schema(models, ref_template=_REF)
    # model -> {"$ref": ...}; no model is used both as a body and as a response.
    refs: dict[Any, dict[str, Any]] = {model: dict(ref) for (model, _), ref in schemas.items()}
    error_ref = refs[ErrorResponse]
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in documented:
        operation: dict[str, Any] = {
            "summary": endpoint.summary,
            "operationId": endpoint.handler.__name__,
        }
        if endpoint.description:
            operation["description"] = endpoint.description
        if endpoint.query:
            operation["parameters"] = [
                {
                    "name": parameter.name,
                    "in": "query",
                    "required": False,
                    "description": parameter.description,
                    "schema": parameter.schema,
                }
                for parameter in endpoint.query
            ]
        if endpoint.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {JSON: {"schema": refs[endpoint.body]}},
            }
        media_type = endpoint.media_type.split(";", 1)[0]
        success_schema = (
            refs[endpoint.response] if endpoint.response is not None else {"type": "string"}
        )
        responses: dict[str, Any] = {
            "200": {
                "description": "Successful response",
                "content": {media_type: {"schema": success_schema}},
            }
        }
        for status in endpoint.errors:
            responses[str(status)] = {
                "description": ERROR_DESCRIPTIONS[status],
                "content": {JSON: {"schema": error_ref}},
            }
        operation["responses"] = responses
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = operation
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
        "components": {"schemas": top.get("$defs", {})},
    }


# Swagger UI's standalone layout with the options FastAPI's docs page sets (deep links, the
# extensions shown), and ReDoc's standalone page without its web fonts (none offline).
_SWAGGER_UI_PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link type="text/css" rel="stylesheet" href="{assets}/swagger-ui.css">
<link rel="shortcut icon" href="{assets}/favicon.png">
<title>{title} - Swagger UI</title>
</head>
<body>
<div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script>
const ui = SwaggerUIBundle({{
  url: "{openapi}",
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
}})
</script>
</body>
</html>
"""
_REDOC_PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="shortcut icon" href="{assets}/favicon.png">
<title>{title} - ReDoc</title>
<style>body {{ margin: 0; padding: 0; }}</style>
</head>
<body>
<noscript>ReDoc needs JavaScript to show the documentation.</noscript>
<redoc spec-url="{openapi}"></redoc>
<script src="{assets}/redoc.standalone.js"></script>
</body>
</html>
"""


def _page(template: str, title: str) -> bytes:
    return template.format(
        title=html.escape(title), assets=ASSETS_PATH, openapi=OPENAPI_PATH
    ).encode("utf-8")


def swagger_ui_page(title: str) -> bytes:
    return _page(_SWAGGER_UI_PAGE, title)


def redoc_page(title: str) -> bytes:
    return _page(_REDOC_PAGE, title)


def asset(name: str) -> bytes:
    return (ASSETS_DIR / name).read_bytes()
