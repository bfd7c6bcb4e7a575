"""The API app: settings, model loading at start-up, and the endpoints of service/routes.py.

`gunicorn -c service/gunicorn_conf.py service.app:app` serves the module-level `app`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from service import native
from service.api import Api
from service.logging_config import configure_app_logging
from service.registry import MODELS, ModelRegistry
from service.routes import ServiceState, ServingModel, endpoints
from service.settings import ServiceSettings, get_settings

logger = logging.getLogger("service.app")

TITLE = "Penguin species classifier"


def load_serving_models(
    settings: ServiceSettings, registry: ModelRegistry
) -> tuple[dict[str, ServingModel], dict[str, Any]]:
    """Load the compiled models and manifest; errors name the offending file."""
    # Imported here so that the app module stays importable (and testable with fakes)
    # independently of the inference module.
    from service.inference import load_manifest, load_models

    manifest = load_manifest(settings.models_dir)
    loaded = load_models(settings.models_dir, registry.names)
    if not settings.native_evaluators:
        for model in loaded.values():
            model.native = None
    models: dict[str, ServingModel] = dict(loaded)
    return models, manifest


def create_app(
    settings: ServiceSettings | None = None,
    models: Mapping[str, ServingModel] | None = None,
    manifest: Mapping[str, Any] | None = None,
    registry: ModelRegistry = MODELS,
) -> Api:
    """Build the app. Given `models`, it serves them instead of loading from models_dir."""
    settings = settings or get_settings()
    if settings.default_model not in registry:
        raise ValueError(f"default model {settings.default_model!r} is not in the registry")
    state = ServiceState(settings=settings, registry=registry)
    evaluator = native.active_evaluator(settings.native_evaluators)
    if evaluator != "c":
        # Loud on purpose: the same answers, but more CPU per /predict, so a capacity figure
        # measured on such a replica is not the C module's (/health says which path served).
        logger.warning(
            "ONE-ROW PREDICTIONS USE PYTHON AND NUMPY, NOT THE C MODULE (%s): more CPU per "
            "/predict; GET /health reports evaluator=numpy",
            "PENGUIN_NATIVE_EVALUATORS=false"
            if not settings.native_evaluators
            else f"{native.LIBRARY.name} is not built or does not load, see above",
        )

    def startup() -> None:
        if not state.ready:
            loaded, loaded_manifest = load_serving_models(settings, registry)
            state.install(loaded, loaded_manifest)
            logger.info(
                "models loaded",
                extra={
                    "models": sorted(loaded),
                    "models_dir": str(settings.models_dir),
                    "evaluator": evaluator,
                },
            )

    if models is not None:
        state.install(models, manifest or {})
    return Api(
        endpoints(state, TITLE),
        max_body_bytes=settings.max_body_bytes,
        max_drain_bytes=settings.max_drain_bytes,
        startup=startup,
    )


def _build_default_app() -> Api:
    configure_app_logging(get_settings().log_level)
    return create_app()


app = _build_default_app()
