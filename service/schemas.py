"""Request and response bodies. Strict: unknown fields, booleans or strings for numbers,
NaN/Infinity and implausible measurements are refused, each error naming the field."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

ISLANDS = ("Biscoe", "Dream", "Torgersen")
SEXES = ("MALE", "FEMALE")
_ISLAND_BY_KEY = {name.casefold(): name for name in ISLANDS}
_SEX_BY_KEY = {name.casefold(): name for name in SEXES}

# Plausible physical ranges, well outside the observed data (culmen 32-60 mm, depth 13-21.5 mm,
# flipper 172-231 mm, mass 2700-6300 g) so real birds pass and typos such as metres or kg fail.
CULMEN_LENGTH_MM = (10.0, 100.0)
CULMEN_DEPTH_MM = (5.0, 40.0)
FLIPPER_LENGTH_MM = (100.0, 300.0)
BODY_MASS_G = (1000.0, 10000.0)


def _measurement(bounds: tuple[float, float], description: str, example: float) -> object:
    # strict=True refuses booleans and numeric strings; ints are still accepted as numbers.
    return Field(
        ge=bounds[0],
        le=bounds[1],
        strict=True,
        allow_inf_nan=False,
        description=f"{description}, {bounds[0]:g} to {bounds[1]:g}",
        examples=[example],
    )


class PenguinFeatures(BaseModel):
    """One penguin's measurements."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "island": "Biscoe",
                    "culmen_length_mm": 50.0,
                    "culmen_depth_mm": 18.5,
                    "flipper_length_mm": 200.0,
                    "body_mass_g": 4000.0,
                    "sex": "MALE",
                }
            ]
        },
    )

    island: Annotated[
        str,
        Field(
            strict=True,
            description="Biscoe, Dream or Torgersen (any case, surrounding spaces ignored)",
            max_length=32,
            json_schema_extra={"enum": list(ISLANDS)},
        ),
    ]
    culmen_length_mm: Annotated[
        float, _measurement(CULMEN_LENGTH_MM, "Culmen (bill) length in mm", 50.0)
    ]
    culmen_depth_mm: Annotated[
        float, _measurement(CULMEN_DEPTH_MM, "Culmen (bill) depth in mm", 18.5)
    ]
    flipper_length_mm: Annotated[
        float, _measurement(FLIPPER_LENGTH_MM, "Flipper length in mm", 200.0)
    ]
    body_mass_g: Annotated[float, _measurement(BODY_MASS_G, "Body mass in g", 4000.0)]
    # Unknown sex is common in the field data; the model imputes it exactly as in training.
    sex: Annotated[
        str | None,
        Field(
            strict=True,
            description="MALE or FEMALE (any case); null when unknown",
            max_length=32,
            json_schema_extra={"enum": [*SEXES, None]},
        ),
    ] = None

    @field_validator("island")
    @classmethod
    def _canonical_island(cls, value: str) -> str:
        canonical = _ISLAND_BY_KEY.get(value.strip().casefold())
        if canonical is None:
            raise ValueError(f"must be one of {', '.join(ISLANDS)}")
        return canonical

    @field_validator("sex")
    @classmethod
    def _canonical_sex(cls, value: str | None) -> str | None:
        if value is None:
            return None
        canonical = _SEX_BY_KEY.get(value.strip().casefold())
        if canonical is None:
            raise ValueError(f"must be one of {', '.join(SEXES)} or null")
        return canonical


# Every field of a row, the bound a body's size check counts in (service/api.py: json_body).
FIELDS_PER_ROW = len(PenguinFeatures.model_fields)


# The plain row: every field, islands and sexes spelled as the schema answers them, measurements
# as JSON decimals within their bounds. A valid body is ~150 bytes; longer ones are not tried.
_PLAIN_MAX_BYTES = 512
# json's own scanner (C when available): scan_once(text, index) -> (value, end).
_scan_json: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # set in __init__, untyped
_PLAIN_ISLANDS = frozenset(ISLANDS)
_PLAIN_SEXES = frozenset(SEXES)
_PLAIN_FIELDS = frozenset(PenguinFeatures.model_fields)
_PLAIN_MEASUREMENTS = (
    ("culmen_length_mm", *CULMEN_LENGTH_MM),
    ("culmen_depth_mm", *CULMEN_DEPTH_MM),
    ("flipper_length_mm", *FLIPPER_LENGTH_MM),
    ("body_mass_g", *BODY_MASS_G),
)


def plain_features(body: bytes) -> dict[str, object] | None:
    """The fields of a body that is one plain, valid row, as PenguinFeatures would give them;
    None for anything else, which PenguinFeatures then validates (and refuses, naming the field).

    Why: for one row arriving alone, pydantic's validator (with its two Python field
    validators) was a visible part of /predict's CPU (service/README.md, "Remedies tried"). This
    accepts only what the schema accepts unchanged: every field present once (as many commas as
    fields less one, so no repeated key), the canonical island and sex, and measurements that
    json.loads reads as finite floats within their bounds (an int, NaN or an out-of-range value
    goes to the schema, as does anything that would need the schema's normalisation).
    """
    if len(body) > _PLAIN_MAX_BYTES or body.count(b",") != FIELDS_PER_ROW - 1:
        return None
    try:
        # From text: json.loads would also take UTF-16 and UTF-32 bytes, which the schema refuses.
        # The C scanner straight away, without json.loads' Python layers and whitespace regexes:
        # a body with whitespace around the object goes to the schema.
        text = body.decode("utf-8")
        row, end = _scan_json(text, 0)
    except (ValueError, RecursionError, StopIteration):  # UnicodeDecodeError is a ValueError
        return None
    if end != len(text):
        return None
    if type(row) is not dict or row.keys() != _PLAIN_FIELDS:
        return None
    island, sex = row["island"], row["sex"]
    if type(island) is not str or island not in _PLAIN_ISLANDS:
        return None
    if sex is not None and (type(sex) is not str or sex not in _PLAIN_SEXES):
        return None
    for name, low, high in _PLAIN_MEASUREMENTS:
        value = row[name]
        if type(value) is not float or not low <= value <= high:
            return None
    return row


class BatchRequest(BaseModel):
    """Several penguins at once; the upper bound is PENGUIN_MAX_BATCH_SIZE (batch_request)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instances: Annotated[list[PenguinFeatures], Field(min_length=1)]


def batch_request(max_batch: int) -> type[BatchRequest]:
    """BatchRequest with at most `max_batch` instances (PENGUIN_MAX_BATCH_SIZE is a setting,
    so the bound cannot be in the class itself). Pydantic checks a JSON array's length before
    it validates any item, so an oversized batch costs one error, not one per row."""
    limited: type[BatchRequest] = create_model(
        "BatchRequest",
        __base__=BatchRequest,
        __doc__=BatchRequest.__doc__,
        instances=(
            Annotated[list[PenguinFeatures], Field(min_length=1, max_length=max_batch)],
            ...,
        ),
    )
    return limited


class Prediction(BaseModel):
    species: str
    probabilities: dict[str, float]
    model: str
    model_version: str


class BatchPrediction(BaseModel):
    predictions: list[Prediction]
    model: str
    model_version: str


class ErrorItem(BaseModel):
    field: str = Field(description="Dotted path of the offending input, e.g. instances[2].sex")
    message: str
    type: str


class ErrorResponse(BaseModel):
    """The one shape of every 4xx/5xx body."""

    error: str = Field(description="Machine-readable error code, e.g. validation_error")
    message: str
    detail: list[ErrorItem]


class ModelInfo(BaseModel):
    name: str
    title: str
    version: str
    classes: list[str]
    metrics: dict[str, float]
    default: bool


class ModelsResponse(BaseModel):
    default_model: str
    models: list[ModelInfo]


# What evaluates single rows: the C module, or Python and numpy (service/native.py).
Evaluator = Literal["c", "numpy"]


class Health(BaseModel):
    status: Literal["ok"]
    evaluator: Evaluator = Field(
        description="What evaluates single rows in this replica: the C module "
        "(service/_native.c), or Python and numpy when it is not built or is switched off "
        "(PENGUIN_NATIVE_EVALUATORS=false); same answers, more CPU per /predict"
    )


class Readiness(BaseModel):
    status: Literal["ready"]
    models: list[str]
