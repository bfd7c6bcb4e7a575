"""/health says which path evaluates single rows (the C module or numpy), and a replica that
runs without the C module says so loudly at start-up."""

from __future__ import annotations

import logging
import warnings

import pytest

from service import native
from service.app import create_app
from service.settings import ServiceSettings
from tests.service.conftest import FakeModel
from tests.support import require

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

LOUD = "NOT THE C MODULE"


def _health(settings: ServiceSettings, fake_models: dict[str, FakeModel]) -> dict:
    client = TestClient(create_app(settings, models=fake_models, manifest={}))
    response = client.get("/health")
    assert response.status_code == 200
    body: dict = response.json()
    return body


def test_health_reports_the_c_module_when_it_is_loaded(
    fake_models: dict[str, FakeModel], caplog: pytest.LogCaptureFixture
) -> None:
    require(native.module() is not None, "the C module is not built (python -m service.native)")
    with caplog.at_level(logging.WARNING):
        assert _health(ServiceSettings(), fake_models) == {"status": "ok", "evaluator": "c"}
    assert LOUD not in caplog.text


def test_switched_off_is_numpy_and_warned(
    fake_models: dict[str, FakeModel], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        body = _health(ServiceSettings(native_evaluators=False), fake_models)
    assert body["evaluator"] == "numpy"
    assert LOUD in caplog.text and "PENGUIN_NATIVE_EVALUATORS=false" in caplog.text


def test_a_missing_module_is_numpy_and_warned(
    fake_models: dict[str, FakeModel],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(native, "module", lambda: None)
    with caplog.at_level(logging.WARNING):
        body = _health(ServiceSettings(), fake_models)
    assert body["evaluator"] == "numpy"
    assert LOUD in caplog.text and native.LIBRARY.name in caplog.text
