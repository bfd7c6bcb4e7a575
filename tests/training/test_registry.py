"""The model registry is the one place a model is defined: a model added there is trained,
compiled and served end to end; one the numpy compiler cannot handle fails training early."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

from service.app import create_app
from service.inference import EVALUATOR_KINDS
from service.registry import MODELS, EstimatorOptions, ModelRegistry, ModelSpec
from service.settings import ServiceSettings
from tests.support import SEED_BODY
from training.export import COMPILERS
from training.settings import TrainingSettings
from training.train import train

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def _strong_logistic(options: EstimatorOptions) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=100.0, max_iter=5000, random_state=options.seed)


def _nearest_neighbours(_options: EstimatorOptions) -> Any:
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier()


def _quiet(_message: str) -> None:
    pass


def test_every_compiler_has_a_numpy_evaluator() -> None:
    assert set(COMPILERS) == set(EVALUATOR_KINDS)
    assert {spec.compiler for spec in MODELS} <= set(COMPILERS)


def test_a_model_added_to_a_registry_is_trained_and_served(tmp_path: Path) -> None:
    extra = ModelSpec("lr_c100", "Logistic regression, C=100", "logistic", _strong_logistic)
    registry = MODELS.with_model(extra)
    output = tmp_path / "models"
    result = train(TrainingSettings(output=output, forest_trees=5), log=_quiet, registry=registry)
    assert list(result.manifest["models"]) == [*MODELS.names, "lr_c100"]
    assert result.manifest["models"]["lr_c100"]["title"] == "Logistic regression, C=100"

    app = create_app(ServiceSettings(models_dir=output), registry=registry)
    with TestClient(app) as client:
        response = client.post("/predict?model=lr_c100", json=SEED_BODY)
        assert response.status_code == 200, response.text
        assert response.json()["model"] == "lr_c100"
        assert response.json()["species"] in {"Adelie", "Chinstrap", "Gentoo"}
        listed = {entry["name"] for entry in client.get("/models").json()["models"]}
        assert listed == {*MODELS.names, "lr_c100"}
        document = client.get("/openapi.json").json()
        parameter = document["paths"]["/predict"]["post"]["parameters"][0]
        assert parameter["schema"]["enum"] == [*MODELS.names, "lr_c100"]
    # The standard registry's service still starts from the bigger models directory.
    with TestClient(create_app(ServiceSettings(models_dir=output))) as client:
        assert client.get("/ready").status_code == 200


@pytest.mark.parametrize(
    ("compiler", "message"),
    [
        ("logistic", r"compiles LogisticRegression, not KNeighborsClassifier"),
        ("knn", r"no numpy compiler named 'knn'"),
    ],
)
def test_a_model_without_a_compiler_fails_training_before_fitting(
    tmp_path: Path, compiler: str, message: str
) -> None:
    registry = ModelRegistry(
        [*MODELS, ModelSpec("knn", "k nearest neighbours", compiler, _nearest_neighbours)],
        MODELS.default,
    )
    output = tmp_path / "models"
    with pytest.raises(TypeError, match=message) as raised:
        train(TrainingSettings(output=output), log=_quiet, registry=registry)
    assert "'knn'" in str(raised.value)
    assert "training/export.py" in str(raised.value)
    assert not output.exists()


def test_registry_refuses_duplicates_bad_names_and_an_unknown_default() -> None:
    spec = MODELS["lr"]
    with pytest.raises(ValueError, match="twice"):
        ModelRegistry([spec, spec], "lr")
    with pytest.raises(ValueError, match="must match"):
        ModelRegistry([ModelSpec("L R", "x", "logistic", _strong_logistic)], "L R")
    with pytest.raises(ValueError, match="default model 'xgb'"):
        ModelRegistry([spec], "xgb")


def test_the_service_refuses_a_manifest_without_a_registered_model(models_dir: Path) -> None:
    extra = ModelSpec("lr_c100", "Logistic regression, C=100", "logistic", _strong_logistic)
    app = create_app(ServiceSettings(models_dir=models_dir), registry=MODELS.with_model(extra))
    with pytest.raises(Exception, match="lists no model lr_c100"), TestClient(app):
        pass
