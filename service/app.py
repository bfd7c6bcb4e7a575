"""The HTTP API: validated single and batch predictions, model listing, probes and metrics.

The request path never builds a DataFrame or touches scikit-learn: service/inference.py holds
numpy-only compiled models. Endpoints are plain `async def` and run the microsecond-scale numpy
work inline, because a threadpool hop would cost more than the work itself.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote_plus

import numpy as np
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ValidationError
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from service.errors import ApiError, install_error_handlers, validation_api_error
from service.logging_config import configure_app_logging
from service.metrics import inference_metrics, render_metrics
from service.middleware import BUFFERED_BODY_KEY, ServiceMiddleware
from service.schemas import (
    BatchPrediction,
    BatchRequest,
    ErrorResponse,
    ModelsResponse,
    PenguinFeatures,
    Prediction,
)
from service.settings import ServiceSettings, get_settings

logger = logging.getLogger("service.app")

_JSON = "application/json"
_Schema = TypeVar("_Schema", bound=BaseModel)
_HEALTH_BODY = b'{"status":"ok"}'


class ServingModel(Protocol):
    """What the API needs from service.inference.CompiledModel."""

    name: str
    title: str
    version: str
    classes: tuple[str, ...]

    def predict_proba(self, rows: Sequence[Mapping[str, object]]) -> np.ndarray: ...


@dataclass
class ServiceState:
    """Everything loaded at start-up; `models` stays empty until loading succeeded."""

    settings: ServiceSettings
    models: dict[str, ServingModel] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    models_body: bytes = b""
    ready_body: bytes = b""

    @property
    def ready(self) -> bool:
        return bool(self.models)

    def install(self, models: Mapping[str, ServingModel], manifest: Mapping[str, Any]) -> None:
        missing = set(_model_names()) - set(models)
        if missing:
            raise RuntimeError(f"models missing from {self.settings.models_dir}: {sorted(missing)}")
        self.manifest = dict(manifest)
        self.models_body = _dumps(_models_listing(models, manifest, self.settings.default_model))
        self.ready_body = _dumps({"status": "ready", "models": sorted(models)})
        # Last: /ready turns 200 only once everything above is in place.
        self.models = dict(models)


def _model_names() -> tuple[str, ...]:
    return ("lr", "rf", "svm")


def _dumps(payload: object) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def _models_listing(
    models: Mapping[str, ServingModel], manifest: Mapping[str, Any], default_model: str
) -> dict[str, Any]:
    entries = manifest.get("models", {}) if isinstance(manifest, Mapping) else {}
    listing = []
    for name in sorted(models):
        model = models[name]
        metrics = entries.get(name, {}).get("metrics", {}) if isinstance(entries, Mapping) else {}
        listing.append(
            {
                "name": name,
                "title": model.title,
                "version": model.version,
                "classes": list(model.classes),
                "metrics": {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)},
                "default": name == default_model,
            }
        )
    return {"default_model": default_model, "models": listing}


def load_serving_models(settings: ServiceSettings) -> tuple[dict[str, ServingModel], dict]:
    """Load the compiled models and manifest; errors name the offending file."""
    # Imported here so that the app module stays importable (and testable with fakes)
    # independently of the inference module.
    from service.inference import load_manifest, load_models

    manifest = load_manifest(settings.models_dir)
    models: dict[str, ServingModel] = dict(load_models(settings.models_dir))
    return models, manifest


def _check_content_type(content_type: str | None) -> None:
    if content_type is None:
        return  # lenient: a bare body is taken as JSON
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == _JSON or (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        return
    raise ApiError(
        415,
        "unsupported_media_type",
        "the request body must be JSON (Content-Type: application/json)",
        [{"field": "content-type", "message": f"got {media_type[:64]!r}", "type": "media_type"}],
    )


def _parse_body(content_type: str | None, body: bytes, schema: type[_Schema]) -> _Schema:
    _check_content_type(content_type)
    if not body.strip():
        raise ApiError(
            400,
            "empty_body",
            "the request body is empty; send a JSON object",
            [{"field": "body", "message": "required", "type": "missing"}],
        )
    try:
        return schema.model_validate_json(body)
    except ValidationError as exc:
        raise validation_api_error(exc) from None


def _model_parameter(query: bytes) -> str | None:
    # Starlette's QueryParams parses every parameter into a multidict; we need one value.
    if not query:
        return None
    for part in query.split(b"&"):
        name, _, value = part.partition(b"=")
        if unquote_plus(name.decode("latin-1")) == "model":
            return unquote_plus(value.decode("latin-1"))
    return None


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == wanted:
            return value.decode("latin-1")
    return None


def _select_model(state: ServiceState, name: str | None) -> ServingModel:
    if not state.ready:
        raise ApiError(503, "not_ready", "models are not loaded yet", headers={"Retry-After": "1"})
    chosen = state.settings.default_model if name is None else name
    model = state.models.get(chosen)
    if model is None:
        valid = ", ".join(sorted(state.models))
        raise ApiError(
            422,
            "unknown_model",
            f"unknown model {chosen[:64]!r}; valid models: {valid}",
            [{"field": "model", "message": f"must be one of {valid}", "type": "enum"}],
        )
    return model


def _predictions(model: ServingModel, rows: list[dict[str, Any]], kind: str) -> list[dict]:
    start = time.perf_counter()
    proba = model.predict_proba(rows)
    latency, rows_counter = inference_metrics(model.name, kind)
    latency.observe(time.perf_counter() - start)
    rows_counter.inc(len(rows))
    classes = model.classes
    out = []
    # Plain Python over .tolist(): for the typical one-row request, numpy calls per row would
    # cost more than they save.
    for row in proba.tolist():
        out.append(
            {
                "species": classes[row.index(max(row))],
                "probabilities": dict(zip(classes, row, strict=True)),
                "model": model.name,
                "model_version": model.version,
            }
        )
    return out


def predict_payload(
    state: ServiceState, query: bytes, content_type: str | None, body: bytes
) -> bytes:
    """POST /predict: the JSON response body, or ApiError."""
    model = _select_model(state, _model_parameter(query))
    features = _parse_body(content_type, body, PenguinFeatures)
    return _dumps(_predictions(model, [features.model_dump()], "single")[0])


def batch_payload(
    state: ServiceState, query: bytes, content_type: str | None, body: bytes
) -> bytes:
    """POST /predict/batch: the JSON response body, or ApiError."""
    model = _select_model(state, _model_parameter(query))
    batch = _parse_body(content_type, body, BatchRequest)
    limit = state.settings.max_batch_size
    if len(batch.instances) > limit:
        raise ApiError(
            422,
            "batch_too_large",
            f"at most {limit} instances per request (PENGUIN_MAX_BATCH_SIZE)",
            [{"field": "instances", "message": f"at most {limit} items", "type": "too_long"}],
        )
    rows = [features.model_dump() for features in batch.instances]
    predictions = _predictions(model, rows, "batch")
    return _dumps({"predictions": predictions, "model": model.name, "model_version": model.version})


PayloadHandler = Callable[[ServiceState, bytes, str | None, bytes], bytes]


class RawJsonEndpoint:
    """A POST endpoint as a bare ASGI app: no Request/Response objects on the hot path.

    ApiError propagates to Starlette's exception middleware, which renders it like any other.
    """

    def __init__(self, state: ServiceState, handler: PayloadHandler) -> None:
        self.state = state
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = scope.get(BUFFERED_BODY_KEY)
        if body is None:  # not behind ServiceMiddleware
            body = await Request(scope, receive).body()
        payload = self.handler(
            self.state, scope.get("query_string", b""), _header(scope, b"content-type"), body
        )
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


# Declared in the OpenAPI document only: FastAPI's per-request parameter solving costs more than
# the prediction itself, so the handlers read the query string directly.
_MODEL_PARAMETER = {
    "name": "model",
    "in": "query",
    "required": False,
    "description": "Model to use (default: PENGUIN_DEFAULT_MODEL)",
    "schema": {"type": "string", "enum": list(_model_names())},
}


_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in (
        (400, "Invalid JSON or empty body"),
        (413, "Body larger than PENGUIN_MAX_BODY_BYTES"),
        (415, "Not JSON"),
        (422, "Invalid field or unknown model"),
        (503, "Models not loaded yet"),
    )
}


def _body_schema(name: str) -> dict[str, Any]:
    return {
        "parameters": [_MODEL_PARAMETER],
        "requestBody": {
            "required": True,
            "content": {_JSON: {"schema": {"$ref": f"#/components/schemas/{name}"}}},
        },
    }


def create_app(
    settings: ServiceSettings | None = None,
    models: Mapping[str, ServingModel] | None = None,
    manifest: Mapping[str, Any] | None = None,
) -> FastAPI:
    """Build the app. Given `models`, it serves them instead of loading from models_dir."""
    settings = settings or get_settings()
    state = ServiceState(settings=settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if not state.ready:
            loaded, loaded_manifest = load_serving_models(settings)
            state.install(loaded, loaded_manifest)
            logger.info(
                "models loaded",
                extra={"models": sorted(loaded), "models_dir": str(settings.models_dir)},
            )
        yield

    app = FastAPI(
        title="Penguin species classifier",
        version="1.0.0",
        description="Predicts the species of a Palmer penguin from its measurements.",
        lifespan=lifespan,
        # Prometheus (service/metrics.py) is our telemetry; FastAPI's OpenTelemetry hooks would
        # only add a provider check to every request.
        telemetry={"tracing": False, "metrics": False},
    )
    app.state.service = state
    if models is not None:
        state.install(models, manifest or {})
    install_error_handlers(app)
    app.add_middleware(ServiceMiddleware, max_body_bytes=settings.max_body_bytes)

    @app.post(
        "/predict",
        summary="Predict one penguin's species",
        responses={200: {"model": Prediction}, **_ERROR_RESPONSES},
        openapi_extra=_body_schema("PenguinFeatures"),
    )
    async def predict(request: Request) -> Response:
        query, content_type = (
            request.scope.get("query_string", b""),
            request.headers.get("content-type"),
        )
        payload = predict_payload(state, query, content_type, await request.body())
        return Response(payload, media_type=_JSON)

    @app.post(
        "/predict/batch",
        summary="Predict several penguins' species, in order",
        responses={200: {"model": BatchPrediction}, **_ERROR_RESPONSES},
        openapi_extra=_body_schema("BatchRequest"),
    )
    async def predict_batch(request: Request) -> Response:
        query, content_type = (
            request.scope.get("query_string", b""),
            request.headers.get("content-type"),
        )
        payload = batch_payload(state, query, content_type, await request.body())
        return Response(payload, media_type=_JSON)

    @app.get(
        "/models",
        summary="Loaded models with versions and metrics",
        responses={200: {"model": ModelsResponse}, 503: _ERROR_RESPONSES[503]},
    )
    async def list_models() -> Response:
        if not state.ready:
            raise ApiError(
                503, "not_ready", "models are not loaded yet", headers={"Retry-After": "1"}
            )
        return Response(state.models_body, media_type=_JSON)

    @app.get("/health", summary="Liveness: the process answers")
    async def health() -> Response:
        return Response(_HEALTH_BODY, media_type=_JSON)

    @app.get(
        "/ready",
        summary="Readiness: 200 once the models are loaded, 503 before",
        responses={503: _ERROR_RESPONSES[503]},
    )
    async def ready() -> Response:
        if not state.ready:
            raise ApiError(
                503, "not_ready", "models are not loaded yet", headers={"Retry-After": "1"}
            )
        return Response(state.ready_body, media_type=_JSON)

    @app.get("/metrics", summary="Prometheus metrics (aggregated over Gunicorn workers)")
    async def metrics() -> Response:
        payload, content_type = render_metrics()
        return Response(payload, media_type=content_type)

    # The hot endpoints are also mounted as bare ASGI routes ahead of FastAPI's: same payload
    # functions, same behaviour, but without FastAPI's per-request dependency solving and
    # Request/Response objects, which together cost more than the prediction itself. The
    # FastAPI routes above stay for /docs (and would serve identically if ever reached).
    app.router.routes[0:0] = [
        Route("/predict", RawJsonEndpoint(state, predict_payload), methods=["POST"]),
        Route("/predict/batch", RawJsonEndpoint(state, batch_payload), methods=["POST"]),
    ]

    def openapi() -> dict[str, Any]:
        # The POST bodies are parsed by hand (faster, and errors stay in our shape), so their
        # schemas are added to the components here for /docs.
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model_cls in (PenguinFeatures, BatchRequest):
                model_schema = model_cls.model_json_schema(
                    ref_template="#/components/schemas/{model}"
                )
                components.update(model_schema.pop("$defs", {}))
                components[model_cls.__name__] = model_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _build_default_app() -> FastAPI:
    configure_app_logging(get_settings().log_level)
    return create_app()


app = _build_default_app()
