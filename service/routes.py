"""The endpoints: predictions, model listing, probes, metrics, and the documentation.

Each handler is declared once, with what the OpenAPI document says about it (service/api.py).
The request path never builds a DataFrame or touches scikit-learn: service/inference.py holds
numpy-only compiled models.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from service import native, openapi
from service.api import Call, Endpoint, QueryParameter, dumps
from service.errors import ApiError, not_ready
from service.metrics import UPDATES, inference_metrics, render_metrics
from service.registry import ModelRegistry
from service.schemas import (
    FIELDS_PER_ROW,
    BatchPrediction,
    Health,
    ModelsResponse,
    PenguinFeatures,
    Prediction,
    Readiness,
    batch_request,
    plain_features,
)
from service.settings import ServiceSettings

_PREDICT_ERRORS = (400, 413, 414, 415, 422, 503)


class ServingModel(Protocol):
    """What the API needs from service.inference.CompiledModel."""

    name: str
    title: str
    version: str
    classes: tuple[str, ...]

    def predict_proba(self, rows: Sequence[Mapping[str, object]]) -> np.ndarray: ...

    def predict_proba_one(self, row: Mapping[str, object]) -> list[float]: ...


@dataclass
class ServiceState:
    """Everything loaded at start-up; `models` stays empty until loading succeeded."""

    settings: ServiceSettings
    registry: ModelRegistry
    models: dict[str, ServingModel] = field(default_factory=dict)
    models_body: bytes = b""
    ready_body: bytes = b""

    @property
    def ready(self) -> bool:
        return bool(self.models)

    def install(self, models: Mapping[str, ServingModel], manifest: Mapping[str, Any]) -> None:
        missing = set(self.registry.names) - set(models)
        if missing:
            raise RuntimeError(f"models missing from {self.settings.models_dir}: {sorted(missing)}")
        default = self.settings.default_model
        self.models_body = dumps(_models_listing(models, manifest, default))
        self.ready_body = dumps({"status": "ready", "models": sorted(models)})
        # Last: /ready turns 200 only once everything above is in place.
        self.models = dict(models)

    def model(self, name: str | None) -> ServingModel:
        if not self.models:
            raise not_ready()
        chosen = self.settings.default_model if name is None else name
        model = self.models.get(chosen)
        if model is None:
            valid = ", ".join(sorted(self.models))
            raise ApiError(
                422,
                "unknown_model",
                f"unknown model {chosen[:64]!r}; valid models: {valid}",
                [{"field": "model", "message": f"must be one of {valid}", "type": "enum"}],
            )
        return model


def _models_listing(
    models: Mapping[str, ServingModel], manifest: Mapping[str, Any], default_model: str
) -> dict[str, Any]:
    entries = manifest.get("models", {})
    listing = []
    for name in sorted(models):
        model = models[name]
        entry = entries.get(name, {}) if isinstance(entries, Mapping) else {}
        metrics = entry.get("metrics", {}) if isinstance(entry, Mapping) else {}
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


class _PredictionWriter:
    """Writes one model's prediction objects as JSON bytes from a template made at load time.

    json.dumps over a fresh dict per row cost more than the model itself; the template holds
    the JSON-escaped class names, model name and version, and floats are written as repr()
    writes them, which is what json.dumps writes for them too. With the C module
    (service/_native.c) the same fragments are joined in C, one call per row instead of Python's
    %-formatting and encoding; without it, Python's formatting does the same.
    """

    def __init__(self, model: ServingModel) -> None:
        literal = json.dumps  # a JSON string literal, escapes and quotes included
        self.classes = model.classes
        head = '{"species":'
        species = [literal(label) for label in model.classes]
        # labels[k] goes before probability k: the object's opening, then a comma per class.
        labels = [
            (',"probabilities":{' if k == 0 else ",") + f"{literal(label)}:"
            for k, label in enumerate(model.classes)
        ]
        tail = f'}},"model":{literal(model.name)},"model_version":{literal(model.version)}}}'
        self._species = species  # substituted as arguments: no %-escaping
        self._template = (
            head.replace("%", "%%")
            + "%s"
            + "".join(label.replace("%", "%%") + "%r" for label in labels)
            + tail.replace("%", "%%")
        )
        module = native.module()
        self._native: Any = (
            None
            if module is None
            else module.Writer(
                head.encode(),
                tuple(text.encode() for text in species),
                tuple(label.encode() for label in labels),
                tail.encode(),
            ).write
        )

    def write(self, row: list[float]) -> bytes:
        """The prediction object for one row of probabilities in `classes` order."""
        if self._native is not None:
            written: bytes = self._native(row)
            return written
        return (self._template % (self._species[row.index(max(row))], *row)).encode()


def _prediction(model: ServingModel, row: dict[str, Any]) -> bytes:
    """One row's prediction object as JSON bytes; records the inference metrics."""
    start = time.perf_counter()
    proba = model.predict_proba_one(row)
    _record_inference(model.name, "single", start, 1)
    return _writer(model).write(proba)


def _predictions(model: ServingModel, rows: list[dict[str, Any]]) -> list[bytes]:
    """Each row's prediction object as JSON bytes, in order; records the inference metrics."""
    start = time.perf_counter()
    proba = model.predict_proba(rows)
    _record_inference(model.name, "batch", start, len(rows))
    write = _writer(model).write
    # Plain Python over .tolist(): numpy calls per row would cost more than they save.
    return [write(row) for row in proba.tolist()]


def _record_inference(model_name: str, kind: str, start: float, rows: int) -> None:
    latency, rows_counter = inference_metrics(model_name, kind)
    UPDATES.observe(latency, time.perf_counter() - start)
    UPDATES.add(rows_counter, rows)


_writers: dict[tuple[str, str], _PredictionWriter] = {}


def _writer(model: ServingModel) -> _PredictionWriter:
    key = (model.name, model.version)
    writer = _writers.get(key)
    if writer is None or writer.classes != model.classes:
        writer = _writers[key] = _PredictionWriter(model)
    return writer


def endpoints(state: ServiceState, title: str) -> list[Endpoint]:
    """Every endpoint of the API, bound to `state`."""
    settings = state.settings
    model_parameter = QueryParameter(
        "model",
        "Model to use (default: PENGUIN_DEFAULT_MODEL, here "
        f"{settings.default_model}); see GET /models",
        {"type": "string", "enum": list(state.registry.names)},
    )
    max_batch = settings.max_batch_size
    batch_schema = batch_request(max_batch)

    def batch_too_large() -> ApiError:
        return ApiError(
            422,
            "batch_too_large",
            f"at most {max_batch} instances per request (PENGUIN_MAX_BATCH_SIZE)",
            [{"field": "instances", "message": f"at most {max_batch} items", "type": "too_long"}],
        )

    def predict(call: Call) -> bytes:
        model = state.model(call.query("model"))
        row = plain_features(call.checked_body(FIELDS_PER_ROW))
        if row is None:
            # The validated fields as they are (a flat model: the same as model_dump(), cheaper).
            row = call.json_body(PenguinFeatures, FIELDS_PER_ROW).__dict__
        return _prediction(model, row)

    def predict_batch(call: Call) -> bytes:
        model = state.model(call.query("model"))
        try:
            batch = call.json_body(batch_schema, max_batch * FIELDS_PER_ROW)
        except ApiError as error:
            # The schema's max_length, checked before any row is validated: the one error then.
            if any(
                item["field"] == "instances" and item["type"] == "too_long" for item in error.detail
            ):
                raise batch_too_large() from None
            raise
        rows = [features.model_dump() for features in batch.instances]
        predictions = b",".join(_predictions(model, rows))
        tail = dumps({"model": model.name, "model_version": model.version})[1:]
        return b'{"predictions":[' + predictions + b"]," + tail

    def list_models(_call: Call) -> bytes:
        if not state.ready:
            raise not_ready()
        return state.models_body

    health_body = dumps(
        {"status": "ok", "evaluator": native.active_evaluator(settings.native_evaluators)}
    )

    def health(_call: Call) -> bytes:
        return health_body

    def ready(_call: Call) -> bytes:
        if not state.ready:
            raise not_ready()
        return state.ready_body

    def metrics(_call: Call) -> bytes:
        return render_metrics()[0]

    declared = [
        Endpoint(
            "POST",
            "/predict",
            predict,
            "Predict one penguin's species",
            body=PenguinFeatures,
            response=Prediction,
            query=(model_parameter,),
            errors=_PREDICT_ERRORS,
        ),
        Endpoint(
            "POST",
            "/predict/batch",
            predict_batch,
            "Predict several penguins' species, in order",
            description=f"1 to {max_batch} instances (PENGUIN_MAX_BATCH_SIZE).",
            body=batch_schema,
            response=BatchPrediction,
            query=(model_parameter,),
            errors=_PREDICT_ERRORS,
        ),
        Endpoint(
            "GET",
            "/models",
            list_models,
            "Loaded models with versions and metrics",
            response=ModelsResponse,
            errors=(503,),
        ),
        Endpoint("GET", "/health", health, "Liveness: the process answers", response=Health),
        Endpoint(
            "GET",
            "/ready",
            ready,
            "Readiness: 200 once the models are loaded, 503 before",
            response=Readiness,
            errors=(503,),
        ),
        Endpoint(
            "GET",
            "/metrics",
            metrics,
            "Prometheus metrics (text exposition format, summed over Gunicorn workers)",
            media_type=render_metrics()[1],
        ),
    ]
    return declared + _documentation(declared, title)


def _documentation(documented: list[Endpoint], title: str) -> list[Endpoint]:
    description = "Predicts the species of a Palmer penguin from its measurements."
    document = openapi.openapi_document(documented, title, "1.0.0", description)
    document_body = dumps(document)
    swagger_page = openapi.swagger_ui_page(title)
    redoc_page = openapi.redoc_page(title)

    def openapi_json(_call: Call) -> bytes:
        return document_body

    def swagger_ui(_call: Call) -> bytes:
        return swagger_page

    def redoc(_call: Call) -> bytes:
        return redoc_page

    pages = [
        Endpoint("GET", openapi.OPENAPI_PATH, openapi_json, "OpenAPI document", in_schema=False),
        Endpoint(
            "GET",
            openapi.DOCS_PATH,
            swagger_ui,
            "Swagger UI",
            media_type="text/html; charset=utf-8",
            in_schema=False,
        ),
        Endpoint(
            "GET",
            openapi.REDOC_PATH,
            redoc,
            "ReDoc",
            media_type="text/html; charset=utf-8",
            in_schema=False,
        ),
    ]
    for name, media_type in openapi.ASSETS.items():
        content = openapi.asset(name)

        def serve_asset(_call: Call, content: bytes = content) -> bytes:
            return content

        pages.append(
            Endpoint(
                "GET",
                f"{openapi.ASSETS_PATH}/{name}",
                serve_asset,
                name,
                media_type=media_type,
                in_schema=False,
            )
        )
    return pages
