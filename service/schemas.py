"""Request and response bodies. Strict: unknown fields, booleans or strings for numbers,
NaN/Infinity and implausible measurements are refused, each error naming the field."""

from __future__ import annotations

from typing import Annotated, Literal

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
