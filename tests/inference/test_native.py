"""service/native.py: building and loading the C one-row evaluators, and falling back to numpy.

Their results are checked against scikit-learn by tests/inference/test_inference.py, which runs
every test with and without them."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import pytest

from service import native
from tests.support import SEED_BODY, require


def test_build_compiles_and_the_library_loads(tmp_path: Path) -> None:
    library = native.build(library=tmp_path / "lib.so")
    assert library.is_file()
    assert not (tmp_path / "lib.so.partial").exists()
    assert native.load(library) is not None


def test_build_skips_an_up_to_date_library(tmp_path: Path) -> None:
    library = native.build(library=tmp_path / "lib.so")
    before = library.stat().st_mtime_ns
    time.sleep(0.01)
    native.build(library=library)
    assert library.stat().st_mtime_ns == before
    # A newer source is built again.
    source = tmp_path / "evaluate.c"
    source.write_text(native.SOURCE.read_text())
    os.utime(library, (0, 0))
    native.build(source=source, library=library)
    assert library.stat().st_mtime_ns != before


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


def test_a_missing_library_means_numpy_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="service.native"):
        assert native.load(tmp_path / "missing.so") is None
    assert "python -m service.native" in caplog.text


def test_calls_refuse_arrays_c_cannot_read(tmp_path: Path) -> None:
    lib = native.load(native.build(library=tmp_path / "lib.so"))
    assert lib is not None
    strided = np.zeros((3, 4))[:, ::2]
    coef3 = np.zeros(3)
    with pytest.raises(ValueError, match="C-contiguous"):
        native.NativeCall(lib.logistic_proba, 2, 3, [2, strided, np.zeros(3), 3])
    with pytest.raises(ValueError, match="float32"):
        native.NativeCall(lib.logistic_proba, 2, 3, [2, np.zeros((3, 2), np.float32), coef3, 3])
    with pytest.raises(TypeError, match="str"):
        native.NativeCall(lib.logistic_proba, 2, 3, [2, "coef", np.zeros(3), 3])


def test_logistic_regression_by_hand(tmp_path: Path) -> None:
    # softmax([1 * 1 + 2 * 0, 0, -1]) for x = (1, 2), coefficients ((1, 0), (0, 0), (0, 0)),
    # intercepts (0, 0, -1): a known answer independent of the trained models.
    lib = native.load(native.build(library=tmp_path / "lib.so"))
    assert lib is not None
    coef = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    call = native.NativeCall(lib.logistic_proba, 2, 3, [2, coef, np.array([0.0, 0.0, -1.0]), 3])
    exps = np.exp([1.0, 0.0, -1.0])
    np.testing.assert_allclose(call.call([1.0, 2.0]), exps / exps.sum(), rtol=0, atol=1e-15)


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
        "the C evaluators are not built or do not load (python -m service.native)",
    )
    for name, model in numpy_models.items():
        assert getattr(model, "native", "absent") is None
        np.testing.assert_allclose(
            model.predict_proba_one(row),
            native_models[name].predict_proba_one(row),
            rtol=0,
            atol=1e-12,
        )
