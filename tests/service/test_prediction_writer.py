"""service/routes.py's prediction writer: the JSON text of a prediction, written from a template
by Python or, with the C module, joined in C (service/_native.c). Both must write what json.dumps
writes for the same object."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import pytest

from service import native, routes
from tests.support import require


@dataclass
class _Model:
    name: str
    title: str
    version: str
    classes: tuple[str, ...]


MODELS = [
    _Model("lr", "Logistic regression", "lr-0123abcd", ("Adelie", "Chinstrap", "Gentoo")),
    # JSON escapes and a literal % in every place the template holds text.
    _Model('m"1%s', "odd", "v\\1%r\n", ('A "quoted" %s', "Ünïcode ☃", "tab\there")),
]
ROWS = [
    [0.02403551231174446, 0.9699461372558337, 0.006018350432421892],
    [1.0, 0.0, 0.0],
    [0.1 + 0.2, 0.7, 1e-17],
    [5e-324, sys.float_info.max, 0.5],
    [0.25, 0.5, 0.5],  # a tie: the first largest is the species, as list.index(max()) finds it
    [1 / 3, 1 / 3, 1 / 3],
]


def _expected(model: _Model, row: list[float]) -> bytes:
    text = json.dumps(
        {
            "species": model.classes[row.index(max(row))],
            "probabilities": dict(zip(model.classes, row, strict=True)),
            "model": model.name,
            "model_version": model.version,
        },
        separators=(",", ":"),
    )
    return text.encode()


@pytest.fixture(params=["C", "Python"])
def writer_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "Python":
        monkeypatch.setattr(native, "module", lambda: None)
    else:
        require(
            native.module() is not None,
            "the C module is not built or does not load (python -m service.native)",
        )
    return str(request.param)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_the_writer_writes_what_json_dumps_writes(writer_kind: str, model: _Model) -> None:
    writer = routes._PredictionWriter(model)
    assert (writer._native is not None) == (writer_kind == "C")
    for row in ROWS:
        assert writer.write(row) == _expected(model, row), row


def test_the_c_writer_refuses_a_row_of_the_wrong_length() -> None:
    require(native.module() is not None, "the C module is not built or does not load")
    writer = routes._PredictionWriter(MODELS[0])
    with pytest.raises(ValueError, match="3 floats"):
        writer.write([0.5, 0.5])
    with pytest.raises(TypeError):
        writer.write([0.5, "0.25", 0.25])  # type: ignore[list-item]


def test_the_c_writer_refuses_fragments_it_cannot_use() -> None:
    module = native.module()
    require(module is not None, "the C module is not built or does not load")
    assert module is not None
    with pytest.raises(ValueError, match="labels"):
        module.Writer(b"{", (b'"a"', b'"b"'), (b'"a":',), b"}")
    with pytest.raises(TypeError, match="bytes"):
        module.Writer(b"{", ('"a"',), (b'"a":',), b"}")
    with pytest.raises(ValueError, match="classes"):
        module.Writer(b"{", (), (), b"}")
