"""Request bodies: canonical values pass, implausible ones are refused naming the field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from service.errors import field_name, validation_api_error
from service.schemas import BatchRequest, PenguinFeatures
from tests.support import SEED_BODY


def _refused_fields(body: Any) -> set[str]:
    with pytest.raises(ValidationError) as caught:
        PenguinFeatures.model_validate_json(json.dumps(body))
    return {field_name(error["loc"]) for error in caught.value.errors()}


def test_seed_body_is_accepted_unchanged() -> None:
    assert PenguinFeatures.model_validate(SEED_BODY).model_dump() == SEED_BODY


def test_categories_are_case_insensitive_and_normalised() -> None:
    features = PenguinFeatures.model_validate({**SEED_BODY, "island": " dREAM ", "sex": "female"})
    assert (features.island, features.sex) == ("Dream", "FEMALE")


def test_integers_count_as_numbers_and_sex_may_be_unknown() -> None:
    features = PenguinFeatures.model_validate({**SEED_BODY, "body_mass_g": 4000, "sex": None})
    assert features.body_mass_g == 4000.0 and isinstance(features.body_mass_g, float)
    assert features.sex is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("island", "Atlantis"),
        ("island", 3),
        ("island", None),
        ("sex", "unknown"),
        ("sex", True),
        ("culmen_length_mm", True),
        ("culmen_length_mm", "50.0"),
        ("culmen_length_mm", None),
        ("culmen_length_mm", [50.0]),
        ("culmen_length_mm", 0.05),
        ("culmen_depth_mm", -18.5),
        ("flipper_length_mm", 2000.0),
        ("body_mass_g", 4.0),
        ("body_mass_g", 1e308),
    ],
)
def test_bad_values_name_their_field(field: str, value: Any) -> None:
    assert _refused_fields({**SEED_BODY, field: value}) == {field}


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "9" * 400])
def test_non_finite_and_huge_numbers_are_refused(literal: str) -> None:
    raw = json.dumps({**SEED_BODY, "culmen_depth_mm": 12345.5}).replace("12345.5", literal)
    with pytest.raises(ValidationError) as caught:
        PenguinFeatures.model_validate_json(raw)
    assert {field_name(e["loc"]) for e in caught.value.errors()} == {"culmen_depth_mm"}


def test_unknown_and_missing_fields_are_named() -> None:
    body = {k: v for k, v in SEED_BODY.items() if k != "island"} | {"beak_colour": "orange"}
    assert _refused_fields(body) == {"island", "beak_colour"}


def test_batch_errors_name_the_row() -> None:
    with pytest.raises(ValidationError) as caught:
        BatchRequest.model_validate({"instances": [SEED_BODY, {**SEED_BODY, "sex": "x"}]})
    assert [field_name(e["loc"]) for e in caught.value.errors()] == ["instances[1].sex"]


@pytest.mark.parametrize(
    ("loc", "name"),
    [((), "body"), (("body",), "body"), (("query", "model"), "model"), (("a", 0, "b"), "a[0].b")],
)
def test_field_names(loc: tuple, name: str) -> None:
    assert field_name(loc) == name


@pytest.mark.parametrize("raw", [b"{", b"\xff\xfe{}", b"[" * 5000, b"{'island': 'Biscoe'}"])
def test_syntax_errors_map_to_400(raw: bytes) -> None:
    with pytest.raises(ValidationError) as caught:
        PenguinFeatures.model_validate_json(raw)
    error = validation_api_error(caught.value)
    assert (error.status, error.error) == (400, "invalid_json")


def test_content_errors_map_to_422_without_echoing_input() -> None:
    secret = "x" * 50 + "-do-not-echo"
    with pytest.raises(ValidationError) as caught:
        PenguinFeatures.model_validate({**SEED_BODY, "island": secret})
    error = validation_api_error(caught.value)
    assert (error.status, error.error) == (422, "validation_error")
    assert "island" in error.message
    assert "do-not-echo" not in json.dumps(error.detail)


def test_measurement_bounds_cover_the_real_data() -> None:
    # Every complete row of the shipped data set must pass validation.
    import csv

    from tests.support import PROJECT_ROOT

    path = PROJECT_ROOT / "data" / "penguins_size.csv"
    if not path.exists():
        pytest.skip("data/penguins_size.csv is not there yet")
    numeric = ("culmen_length_mm", "culmen_depth_mm", "flipper_length_mm", "body_mass_g")
    checked = 0
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            values = {name: row[name] for name in numeric}
            if any(v in ("", "NA") for v in values.values()):
                continue
            PenguinFeatures.model_validate(
                {"island": row["island"], **{k: float(v) for k, v in values.items()}}
            )
            checked += 1
    assert checked > 300
