"""service/schemas.py: plain_features takes exactly the plain rows PenguinFeatures accepts
unchanged, with the same values, and leaves everything else to the schema."""

from __future__ import annotations

import json

import pytest

from service.schemas import PenguinFeatures, plain_features
from tests.support import SEED_BODY

ROW: dict[str, object] = dict(SEED_BODY)


def _body(row: dict[str, object]) -> bytes:
    return json.dumps(row).encode()


@pytest.mark.parametrize(
    "row",
    [
        ROW,
        {**ROW, "sex": None},
        {**ROW, "island": "Torgersen", "sex": "FEMALE"},
        {**ROW, "culmen_length_mm": 10.0, "body_mass_g": 10000.0},  # the bounds themselves
    ],
)
def test_a_plain_row_gives_the_schemas_values(row: dict[str, object]) -> None:
    body = _body(row)
    assert plain_features(body) == PenguinFeatures.model_validate_json(body).__dict__


@pytest.mark.parametrize(
    "body",
    [
        _body({**ROW, "island": "biscoe"}),  # valid, but the schema normalises it
        _body({**ROW, "island": " Biscoe "}),
        _body({**ROW, "sex": "male"}),
        _body({**ROW, "culmen_length_mm": 50}),  # an int: the schema converts it
        _body({k: v for k, v in ROW.items() if k != "sex"}),  # sex left out: the default
        _body({**ROW, "sex": True}),
        _body({**ROW, "sex": {}}),  # unhashable: no set lookup
        _body({**ROW, "island": []}),
        _body({**ROW, "culmen_depth_mm": "18.5"}),
        _body({**ROW, "flipper_length_mm": 1000.0}),
        _body({**ROW, "body_mass_g": None}),
        _body({**ROW, "extra": 1.0}),
        _body({**ROW, "island": "Atlantis"}),
        b'{"island": "Biscoe", "island": "Dream", "culmen_length_mm": 50.0,'
        b' "culmen_depth_mm": 18.5, "flipper_length_mm": 200.0, "body_mass_g": 4000.0}',
        _body(ROW).replace(b"50.0", b"NaN"),
        _body(ROW).replace(b"4000.0", b"Infinity"),
        _body(ROW).decode().encode("utf-16"),
        _body(ROW).decode().encode("utf-32-le"),
        b"\xef\xbb\xbf" + _body(ROW),  # a UTF-8 byte order mark
        _body(ROW)[:-1],  # not JSON
        b"[" + _body(ROW) + b"]",
        b"[" * 2000 + b"]" * 2000,
        _body(ROW) + b" " * 600,  # longer than any plain row
    ],
)
def test_anything_else_is_left_to_the_schema(body: bytes) -> None:
    assert plain_features(body) is None
