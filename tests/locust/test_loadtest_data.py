"""Request bodies, model mix and response checks of the load test."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from loadtest import data
from tests.locust.helpers import LOCUST_DIR
from tests.support import PROJECT_ROOT

REAL_CSV = PROJECT_ROOT / "data" / "penguins_size.csv"


def test_finds_the_data_file_in_the_checkout_layout() -> None:
    assert data.find_data_file(None, LOCUST_DIR) == REAL_CSV


def test_finds_the_data_file_next_to_the_locustfile(tmp_path: Path) -> None:
    (tmp_path / "penguins_size.csv").write_text(REAL_CSV.read_text())
    assert data.find_data_file(None, tmp_path) == tmp_path / "penguins_size.csv"


def test_missing_data_file_names_the_places_tried(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="--data-file"):
        data.find_data_file(None, tmp_path)
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        data.find_data_file(str(tmp_path / "nope.csv"), tmp_path)


def test_rows_with_missing_values_are_skipped(tmp_path: Path) -> None:
    csv_path = tmp_path / "p.csv"
    csv_path.write_text(
        "species,island,culmen_length_mm,culmen_depth_mm,flipper_length_mm,body_mass_g,sex\n"
        "Adelie,Torgersen,39.1,18.7,181,3750,MALE\n"
        "Adelie,Torgersen,NA,NA,NA,NA,NA\n"
        "Gentoo,Biscoe,44.5,15.7,217,4875,.\n"
        "Gentoo,Biscoe,46.1,13.2,211,4500,FEMALE\n"
    )
    rows = data.load_rows(csv_path)
    assert [row["sex"] for row in rows] == ["MALE", "FEMALE"]
    assert rows[0] == {
        "island": "Torgersen",
        "culmen_length_mm": 39.1,
        "culmen_depth_mm": 18.7,
        "flipper_length_mm": 181.0,
        "body_mass_g": 3750.0,
        "sex": "MALE",
    }


def test_samples_keep_real_proportions_and_stay_in_range() -> None:
    rows = data.load_rows(REAL_CSV)
    sampler = data.BodySampler(rows, noise=0.05)
    rng = random.Random(7)
    bodies = [sampler.sample(rng) for _ in range(6000)]
    want = Counter(row["island"] for row in rows)
    got = Counter(body["island"] for body in bodies)
    for island, count in want.items():
        assert abs(got[island] / len(bodies) - count / len(rows)) < 0.03
    sexes = Counter(body["sex"] for body in bodies)
    assert set(sexes) == {"MALE", "FEMALE"}
    for name in data.NUMERIC_FEATURES:
        low, high = sampler.ranges[name]
        values = [body[name] for body in bodies]
        assert all(low <= v <= high for v in values)
    real = {tuple(row[n] for n in data.NUMERIC_FEATURES) for row in rows}
    unchanged = sum(tuple(b[n] for n in data.NUMERIC_FEATURES) in real for b in bodies)
    assert unchanged < len(bodies) / 2, "noise should move most bodies off the real rows"
    exact = data.BodySampler(rows, noise=0.0)
    body = exact.sample(rng)
    assert tuple(body[n] for n in data.NUMERIC_FEATURES) in real
    assert set(bodies[0]) == {
        "island",
        "culmen_length_mm",
        "culmen_depth_mm",
        "flipper_length_mm",
        "body_mass_g",
        "sex",
    }


def test_model_mix_parses_and_normalises() -> None:
    assert data.parse_model_mix("lr=0.5,rf=0.3,svm=0.2") == pytest.approx(
        {"lr": 0.5, "rf": 0.3, "svm": 0.2}
    )
    assert data.parse_model_mix("lr=2, rf=2, svm=0") == {"lr": 0.5, "rf": 0.5}


@pytest.mark.parametrize("text", ["", "lr", "lr=x", "lr=-1", "lr=0", "LR!=1"])
def test_bad_model_mix_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        data.parse_model_mix(text)


GOOD = {
    "species": "Gentoo",
    "probabilities": {"Adelie": 0.1, "Chinstrap": 0.1, "Gentoo": 0.8},
    "model": "rf",
    "model_version": "rf-1",
}


def test_a_valid_prediction_passes() -> None:
    assert data.check_prediction(GOOD, "rf") is None


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"species": "Emperor"}, "species"),
        ({"probabilities": {"Adelie": 0.5, "Gentoo": 0.5}}, "cover"),
        ({"probabilities": {"Adelie": 0.5, "Chinstrap": 0.5, "Gentoo": 0.5}}, "sum"),
        ({"species": "Adelie"}, "most probable"),
        ({"model": "lr"}, "asked for"),
        ({"model_version": ""}, "model_version"),
    ],
)
def test_wrong_answers_are_failures(change: dict, fragment: str) -> None:
    assert fragment in data.check_prediction({**GOOD, **change}, "rf")


def test_batch_check_counts_and_checks_each_prediction() -> None:
    batch = {"predictions": [GOOD, GOOD], "model": "rf", "model_version": "rf-1"}
    assert data.check_batch(batch, "rf", 2) is None
    assert "expected 3" in data.check_batch(batch, "rf", 3)
    bad = {**batch, "predictions": [GOOD, {**GOOD, "species": "x"}]}
    assert "prediction 1" in data.check_batch(bad, "rf", 2)
