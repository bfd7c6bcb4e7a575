"""The worked example's service (examples/tutorial-api/), in-process with Starlette's TestClient
in the host virtualenv (it has FastAPI, scikit-learn and pandas): the model trained from the
project's data as the image's build stage trains it, unpickled at start, answering /predict."""

from __future__ import annotations

import csv
import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from fastapi.testclient import TestClient

from tests.support import PROJECT_ROOT

EXAMPLE = PROJECT_ROOT / "examples" / "tutorial-api"
DATA = PROJECT_ROOT / "data" / "penguins_size.csv"
FEATURES = ("island", "culmen_length_mm", "culmen_depth_mm", "flipper_length_mm", "body_mass_g")


def _load(name: str) -> ModuleType:
    """One of the example's files as a module of its own (it is not a package of ours)."""
    spec = importlib.util.spec_from_file_location(f"tutorial_api_{name}", EXAMPLE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tutorial") / "model.pkl"
    _load("train").main([str(DATA), str(path)])
    return path


@pytest.fixture
def client(model_file: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("MODEL_PATH", str(model_file))
    app = _load("main").app
    with TestClient(app) as started:  # runs the lifespan: the model is unpickled at start
        yield started


def _rows() -> list[dict[str, str]]:
    with DATA.open(encoding="utf-8", newline="") as handle:
        return [
            row
            for row in csv.DictReader(handle)
            if "NA" not in row.values() and row["sex"] in ("MALE", "FEMALE")
        ]


def test_health_and_one_prediction(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    body = (EXAMPLE / "bodies" / "one.json").read_text()
    answer = client.post("/predict", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 200
    payload = answer.json()
    assert payload["species"] in ("Adelie", "Chinstrap", "Gentoo")
    assert 1 / 3 < payload["probability"] <= 1


def test_it_predicts_the_real_penguins(client: TestClient) -> None:
    rows = _rows()
    right = 0
    for row in rows[::4]:
        body = {name: row[name] for name in FEATURES} | {"sex": row["sex"]}
        answer = client.post("/predict", json=body)
        assert answer.status_code == 200, answer.text
        right += answer.json()["species"] == row["species"]
    assert right / len(rows[::4]) >= 0.95


def test_bad_input_is_a_422_naming_the_field(client: TestClient) -> None:
    answer = client.post(
        "/predict",
        json={
            "island": "Mars",
            "culmen_length_mm": 40,
            "culmen_depth_mm": 18,
            "flipper_length_mm": 190,
            "body_mass_g": 3700,
            "sex": "MALE",
        },
    )
    assert answer.status_code == 422
    assert [item["loc"] for item in answer.json()["detail"]] == [["body", "island"]]


def test_every_requirement_is_pinned() -> None:
    lines = [
        line
        for line in (EXAMPLE / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines and all(
        re.fullmatch(r"[A-Za-z0-9.-]+==[0-9][0-9A-Za-z.]*", line) for line in lines
    )
    names = {line.split("==")[0].lower() for line in lines}
    assert {"fastapi", "uvicorn", "scikit-learn", "pandas", "numpy"} <= names
