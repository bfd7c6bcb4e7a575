"""service/native.py: building and loading the C one-row path (service/_native.c over
service/evaluate.c), its encoding of rows, and falling back to Python and numpy.

Its results are checked against scikit-learn by tests/inference/test_inference.py, which runs
every test with and without it."""

from __future__ import annotations

import enum
import logging
import math
import os
import time
from collections import OrderedDict
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from service import native
from service.inference import CompiledModel, load_models
from tests.support import SEED_BODY, require


@pytest.fixture(scope="module")
def module(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    built = native.load(native.build(library=tmp_path_factory.mktemp("native") / "lib.so"))
    assert built is not None
    return built


@pytest.fixture(scope="module")
def c_models(models_dir: Path) -> dict[str, CompiledModel]:
    loaded = load_models(models_dir)
    require(
        all(model.native is not None for model in loaded.values()),
        "the C module is not built or does not load (python -m service.native)",
    )
    return loaded


def test_build_compiles_and_the_module_loads(tmp_path: Path) -> None:
    library = native.build(library=tmp_path / "lib.so")
    assert library.is_file()
    assert not (tmp_path / "lib.so.partial").exists()
    loaded = native.load(library)
    assert loaded is not None
    assert hasattr(loaded, "Evaluator")


def test_build_skips_an_up_to_date_library(tmp_path: Path) -> None:
    library = native.build(library=tmp_path / "lib.so")
    before = library.stat().st_mtime_ns
    time.sleep(0.01)
    native.build(library=library)
    assert library.stat().st_mtime_ns == before
    # A newer source is built again (a copy elsewhere still finds evaluate.c).
    source = tmp_path / "copy.c"
    source.write_text(native.SOURCE.read_text())
    os.utime(library, (0, 0))
    native.build(source=source, library=library)
    assert library.stat().st_mtime_ns != before


def test_a_newer_evaluate_c_means_a_rebuild(tmp_path: Path) -> None:
    library = native.build(library=tmp_path / "lib.so")
    # Older than evaluate.c (but newer than nothing else): rebuilt.
    evaluators = native.EVALUATORS.stat().st_mtime
    os.utime(library, (evaluators - 10, evaluators - 10))
    native.build(library=library)
    assert library.stat().st_mtime >= evaluators


def test_a_compile_error_is_reported_with_the_compiler_output(tmp_path: Path) -> None:
    source = tmp_path / "broken.c"
    source.write_text("this is not C\n")
    with pytest.raises(native.NativeError, match="failed") as raised:
        native.build(source=source, library=tmp_path / "lib.so")
    assert "broken.c" in str(raised.value)
    assert not (tmp_path / "lib.so").exists()
    assert not (tmp_path / "lib.so.partial").exists()


def test_a_missing_compiler_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.raises(native.NativeError, match="no-such-cc"):
        native.build(library=tmp_path / "lib.so")


def test_missing_python_headers_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native.sysconfig, "get_paths", lambda: {"include": str(tmp_path)})
    with pytest.raises(native.NativeError, match="python3-dev") as raised:
        native.build(library=tmp_path / "lib.so")
    assert str(tmp_path) in str(raised.value)
    assert not (tmp_path / "lib.so").exists()


def test_the_header_check_says_whether_python_h_is_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # scripts/lib/common.sh asks this before building, and installs python3-dev when it fails.
    assert native.main(["--check-headers"]) == 0
    assert (Path(capsys.readouterr().out.strip()) / "Python.h").is_file()
    monkeypatch.setattr(native.sysconfig, "get_paths", lambda: {"include": str(tmp_path)})
    assert native.main(["--check-headers"]) == 1
    assert "python3-dev" in capsys.readouterr().err


def test_a_missing_library_means_numpy_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="service.native"):
        assert native.load(tmp_path / "missing.so") is None
    assert "python -m service.native" in caplog.text


def test_a_library_that_does_not_load_means_numpy_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = tmp_path / "lib.so"
    broken.write_bytes(b"not a shared object")
    with caplog.at_level(logging.WARNING, logger="service.native"):
        assert native.load(broken) is None
    assert "does not load" in caplog.text


def _logistic(
    module: ModuleType,
    kind: str = "logistic",
    arguments: list[object] | None = None,
    categorical: list[tuple[str, dict[str, int], int]] | None = None,
) -> native.NativeCall:
    """x = (a, b) scaled as (x - 1) / 2, then island one-hot in columns 2 and 3 (fill: 2)."""
    return native.NativeCall(
        module,
        kind,
        4,
        3,
        arguments or [4, np.zeros((3, 4)), np.array([0.0, 0.0, -1.0]), 3],
        [("a", 5.0, 1.0, 2.0), ("b", 7.0, 1.0, 2.0)],
        categorical or [("island", {"Biscoe": 2, "Dream": 3}, 2)],
    )


def test_calls_refuse_arrays_c_cannot_read(module: ModuleType) -> None:
    strided = np.zeros((3, 8))[:, ::2]
    with pytest.raises(ValueError, match="C-contiguous"):
        _logistic(module, arguments=[4, strided, np.zeros(3), 3])
    with pytest.raises(ValueError, match="float32"):
        _logistic(module, arguments=[4, np.zeros((3, 4), np.float32), np.zeros(3), 3])
    with pytest.raises(TypeError, match="str"):
        _logistic(module, arguments=[4, "coef", np.zeros(3), 3])


def test_the_module_refuses_what_it_cannot_use(module: ModuleType) -> None:
    with pytest.raises(ValueError, match="unknown evaluator kind"):
        _logistic(module, kind="tree")
    with pytest.raises(TypeError):  # one argument short of the logistic evaluator's four
        _logistic(module, arguments=[4, np.zeros((3, 4)), np.zeros(3)])
    # A one-hot column outside the encoded row, or on top of a numeric one, would write past
    # the row or corrupt it: refused when the model is bound, not at request time.
    with pytest.raises(ValueError, match="output column"):
        _logistic(module, categorical=[("island", {"Biscoe": 4}, 2)])
    with pytest.raises(ValueError, match="output column"):
        _logistic(module, categorical=[("island", {"Biscoe": 1}, 2)])
    with pytest.raises(ValueError, match="fill column"):
        _logistic(module, categorical=[("island", {"Biscoe": 2}, 9)])
    with pytest.raises(ValueError, match="sizes"):
        native.NativeCall(module, "logistic", 0, 3, [0, np.zeros(3), np.zeros(3), 3], [], [])


def test_logistic_regression_by_hand(module: ModuleType) -> None:
    # softmax([1 * 1 + 2 * 0, 0, -1]) for x = (1, 2), coefficients ((1, 0), (0, 0), (0, 0)),
    # intercepts (0, 0, -1): a known answer independent of the trained models.
    coef = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    call = native.NativeCall(
        module, "logistic", 2, 3, [2, coef, np.array([0.0, 0.0, -1.0]), 3], [], []
    )
    exps = np.exp([1.0, 0.0, -1.0])
    np.testing.assert_allclose(call.call([1.0, 2.0]), exps / exps.sum(), rtol=0, atol=1e-15)


def test_rows_are_encoded_by_hand(module: ModuleType) -> None:
    # The decision of class k is coefficient row k times the encoded row: identity rows read
    # the encoding back through softmax. Coefficients pick (scaled a, scaled b, Biscoe, Dream).
    coef = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 3.0]])
    call = _logistic(module, arguments=[4, coef, np.zeros(3), 3])

    def expected(a: float, b: float, biscoe: float, dream: float) -> list[float]:
        exps = np.exp([a, b, biscoe + 3.0 * dream])
        return list(exps / exps.sum())

    cases = [
        ({"a": 3.0, "b": 5.0, "island": "Dream"}, expected(1.0, 2.0, 0.0, 1.0)),
        # None, NaN and an absent key are imputed with the fill (5 and 7 -> 2 and 3).
        ({"a": None, "b": math.nan, "island": "Biscoe"}, expected(2.0, 3.0, 1.0, 0.0)),
        ({"island": None}, expected(2.0, 3.0, 1.0, 0.0)),
        ({}, expected(2.0, 3.0, 1.0, 0.0)),
    ]
    for row, proba in cases:
        got = call.row(row)
        assert got is not None, row
        np.testing.assert_allclose(got, proba, rtol=0, atol=1e-15)


def test_unusual_rows_are_left_to_python(module: ModuleType) -> None:
    call = _logistic(module, arguments=[4, np.eye(3, 4), np.zeros(3), 3])

    class Island(enum.StrEnum):
        BISCOE = "Biscoe"

    usual = {"a": 3.0, "b": 5.0, "island": "Dream"}
    assert call.row(usual) is not None
    for change in (
        {"a": 3},  # an int: Python converts it
        {"a": math.inf},  # Python raises, naming the field
        {"a": "3.0"},
        {"island": "Atlantis"},  # unknown category: Python raises
        {"island": Island.BISCOE},  # a str subclass: Python looks up its text
        {"island": ["Dream"]},
    ):
        assert call.row({**usual, **change}) is None, change
    assert call.row(OrderedDict(usual)) is None  # not a plain dict


def test_the_c_row_path_matches_python_encoding(c_models: dict[str, CompiledModel]) -> None:
    rows = [
        dict(SEED_BODY),
        {**SEED_BODY, "island": "Dream", "sex": None, "culmen_length_mm": math.nan},
        {**SEED_BODY, "island": "Torgersen", "sex": "FEMALE", "body_mass_g": None},
        {key: value for key, value in SEED_BODY.items() if key != "sex"},
    ]
    for name, model in c_models.items():
        assert model.native is not None
        for row in rows:
            by_c = model.native.row(row)
            assert by_c is not None, (name, row)
            by_python = model.native.call(model._pre.transform_row(row))
            assert by_c == by_python, (name, row)


def test_unusual_rows_get_pythons_answer_or_error(c_models: dict[str, CompiledModel]) -> None:
    for model in c_models.values():
        assert model.native is not None
        with_int = {**SEED_BODY, "body_mass_g": 4000}
        assert model.native.row(with_int) is None
        assert model.predict_proba_one(with_int) == model.predict_proba_one(dict(SEED_BODY))
        for bad in ({"island": "Atlantis"}, {"culmen_length_mm": math.inf}):
            with pytest.raises(ValueError, match=next(iter(bad))):
                model.predict_proba_one({**SEED_BODY, **bad})


def test_the_setting_switches_single_rows_to_numpy(models_dir: Path) -> None:
    from service.app import load_serving_models
    from service.registry import MODELS
    from service.settings import ServiceSettings

    row = dict(SEED_BODY)
    numpy_models, _ = load_serving_models(
        ServiceSettings(models_dir=models_dir, native_evaluators=False), MODELS
    )
    native_models, _ = load_serving_models(ServiceSettings(models_dir=models_dir), MODELS)
    require(
        all(getattr(m, "native", None) is not None for m in native_models.values()),
        "the C module is not built or does not load (python -m service.native)",
    )
    for name, model in numpy_models.items():
        assert getattr(model, "native", "absent") is None
        np.testing.assert_allclose(
            model.predict_proba_one(row),
            native_models[name].predict_proba_one(row),
            rtol=0,
            atol=1e-12,
        )
