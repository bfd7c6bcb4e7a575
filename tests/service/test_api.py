"""The app in-process against the real trained models (models/, trained when missing)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.app import create_app
from service.settings import ServiceSettings
from tests.service.conftest import CLASSES
from tests.support import SEED_BODY

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

MODELS = ("lr", "rf", "svm")


@pytest.fixture(scope="module")
def manifest(models_dir: Path) -> dict:
    return json.loads((models_dir / "manifest.json").read_text())


@pytest.fixture(scope="module")
def client(models_dir: Path) -> Iterator[TestClient]:
    app = create_app(ServiceSettings(models_dir=models_dir))
    # The context runs the lifespan, which loads the models exactly as a worker does.
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def test_ready_once_models_are_loaded(client: TestClient) -> None:
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.json()["models"] == list(MODELS)


@pytest.mark.parametrize("model", MODELS)
def test_seed_body_predicts_a_species(client: TestClient, manifest: dict, model: str) -> None:
    response = client.post(f"/predict?model={model}", json=SEED_BODY)
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == model
    assert body["model_version"] == manifest["models"][model]["version"]
    assert set(body["probabilities"]) == set(CLASSES)
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-9)
    assert body["species"] == max(body["probabilities"], key=body["probabilities"].get)


def test_textbook_penguins_are_recognised(client: TestClient) -> None:
    # Typical birds of each species (medians of the data set), which every model gets right.
    typical = {
        "Adelie": {
            **SEED_BODY,
            "island": "Torgersen",
            "culmen_length_mm": 38.8,
            "culmen_depth_mm": 18.4,
            "flipper_length_mm": 190.0,
            "body_mass_g": 3700.0,
        },
        "Gentoo": {
            **SEED_BODY,
            "culmen_length_mm": 47.3,
            "culmen_depth_mm": 15.0,
            "flipper_length_mm": 216.0,
            "body_mass_g": 5000.0,
        },
        "Chinstrap": {
            **SEED_BODY,
            "island": "Dream",
            "culmen_length_mm": 49.5,
            "culmen_depth_mm": 18.4,
            "flipper_length_mm": 196.0,
            "body_mass_g": 3700.0,
        },
    }
    for model in MODELS:
        for species, body in typical.items():
            assert client.post(f"/predict?model={model}", json=body).json()["species"] == species


@pytest.mark.parametrize("model", MODELS)
def test_batch_matches_single_predictions_in_order(client: TestClient, model: str) -> None:
    rows = [
        SEED_BODY,
        {**SEED_BODY, "island": "Dream", "sex": None},
        {**SEED_BODY, "island": "torgersen", "culmen_length_mm": 39, "sex": "female"},
    ]
    batch = client.post(f"/predict/batch?model={model}", json={"instances": rows})
    assert batch.status_code == 200
    singles = [client.post(f"/predict?model={model}", json=row).json() for row in rows]
    predictions = batch.json()["predictions"]
    assert len(predictions) == len(singles)
    for got, want in zip(predictions, singles, strict=True):
        # Vectorised maths may differ from the single-row path in the last bits only.
        assert got["probabilities"] == pytest.approx(want["probabilities"], rel=1e-9, abs=1e-12)
        assert {**got, "probabilities": None} == {**want, "probabilities": None}


def test_full_size_batch_is_served(client: TestClient) -> None:
    response = client.post("/predict/batch?model=rf", json={"instances": [SEED_BODY] * 1000})
    assert response.status_code == 200
    assert len(response.json()["predictions"]) == 1000


def test_models_lists_manifest_versions_and_metrics(client: TestClient, manifest: dict) -> None:
    body = client.get("/models").json()
    assert body["default_model"] == "lr"
    listed = {entry["name"]: entry for entry in body["models"]}
    assert set(listed) == set(MODELS)
    for name, entry in listed.items():
        assert entry["version"] == manifest["models"][name]["version"]
        assert entry["metrics"] == pytest.approx(manifest["models"][name]["metrics"])
        assert entry["default"] is (name == "lr")


def test_bad_input_on_the_real_app_is_a_4xx(client: TestClient) -> None:
    for content in (b"", b"{", b"\x80\x81", b"[" * 10_000, b'{"island": 1}', b"9" * 5000):
        response = client.post("/predict", content=content)
        assert 400 <= response.status_code < 500, (content[:20], response.text)
    assert client.get("/health").status_code == 200
