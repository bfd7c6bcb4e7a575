"""service/inference.py: parity with scikit-learn on every row, inputs, clear load errors."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest

from service.inference import (
    FEATURES,
    CompiledModel,
    ModelLoadError,
    _largest_rounding_to_at_most,
    load_manifest,
    load_models,
)
from service.registry import MODELS
from tests.support import PROJECT_ROOT, require
from training.dataset import load_dataset
from training.export import write_artifact

TOLERANCE = 1e-5
MODEL_NAMES = MODELS.names
TYPICAL = {
    "Adelie": {
        "island": "Torgersen",
        "culmen_length_mm": 39.1,
        "culmen_depth_mm": 18.7,
        "flipper_length_mm": 181.0,
        "body_mass_g": 3750.0,
        "sex": "MALE",
    },
    "Chinstrap": {
        "island": "Dream",
        "culmen_length_mm": 49.5,
        "culmen_depth_mm": 18.4,
        "flipper_length_mm": 195.0,
        "body_mass_g": 3600.0,
        "sex": "FEMALE",
    },
    "Gentoo": {
        "island": "Biscoe",
        "culmen_length_mm": 47.5,
        "culmen_depth_mm": 15.0,
        "flipper_length_mm": 218.0,
        "body_mass_g": 4950.0,
        "sex": "FEMALE",
    },
}


@pytest.fixture(scope="module", params=["native", "numpy"])
def models(request: pytest.FixtureRequest, models_dir: Path) -> dict[str, CompiledModel]:
    """The models, once with the C one-row evaluators (service/evaluate.c) and once without, so
    every test here checks both one-row paths (the batch path is numpy in both)."""
    loaded = load_models(models_dir)
    if request.param == "numpy":
        for model in loaded.values():
            model.native = None
    else:
        require(
            all(model.native is not None for model in loaded.values()),
            "the C evaluators are not built or do not load (python -m service.native)",
        )
    return loaded


@pytest.fixture(scope="module")
def dataset():
    return load_dataset(PROJECT_ROOT / "data" / "penguins_size.csv")


@pytest.fixture(scope="module")
def expected(models_dir: Path, dataset) -> dict[str, np.ndarray]:
    """scikit-learn's predict_proba on every row of the data set, per model."""
    return {
        name: joblib.load(models_dir / f"{name}.joblib").predict_proba(dataset.features)
        for name in MODEL_NAMES
    }


def _copy_models(models_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "models"
    shutil.copytree(models_dir, target)
    return target


def _rewrite_manifest(directory: Path, change: Any) -> None:
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    change(manifest)
    path.write_text(json.dumps(manifest), encoding="utf-8")


def test_loads_the_three_models_with_manifest_metadata(
    models: dict[str, CompiledModel], models_dir: Path
) -> None:
    manifest = load_manifest(models_dir)
    assert set(models) == set(MODEL_NAMES)
    for name, model in models.items():
        entry = manifest["models"][name]
        assert isinstance(model, CompiledModel)
        assert (model.name, model.title, model.version) == (
            name,
            entry["title"],
            entry["version"],
        )
        assert model.classes == ("Adelie", "Chinstrap", "Gentoo")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_matches_predict_proba_on_every_row_one_at_a_time(
    name: str, models: dict[str, CompiledModel], dataset, expected: dict[str, np.ndarray]
) -> None:
    model = models[name]
    for index, row in enumerate(dataset.records()):
        actual = model.predict_proba([row])
        assert actual.shape == (1, 3)
        assert actual.dtype == np.float64
        gap = np.max(np.abs(actual[0] - expected[name][index]))
        assert gap <= TOLERANCE, f"{name} row {index} {row}: off by {gap}"


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("batch", [2, 3, 7, 64, 344])
def test_matches_predict_proba_in_batches(
    name: str,
    batch: int,
    models: dict[str, CompiledModel],
    dataset,
    expected: dict[str, np.ndarray],
) -> None:
    records = dataset.records()
    parts = [
        models[name].predict_proba(records[start : start + batch])
        for start in range(0, len(records), batch)
    ]
    actual = np.vstack(parts)
    assert np.max(np.abs(actual - expected[name])) <= TOLERANCE


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_one_row_probabilities_lie_in_zero_to_one(
    name: str, models: dict[str, CompiledModel], dataset
) -> None:
    # Rounding must not push a certain prediction past 1 (clients check the range).
    for row in dataset.records():
        proba = models[name].predict_proba_one(row)
        assert all(0.0 <= value <= 1.0 for value in proba), (row, proba)


def test_the_data_set_exercises_the_imputers(dataset) -> None:
    # Parity on every row only proves imputation if rows with missing values are among them.
    records = dataset.records()
    assert sum(row["sex"] is None for row in records) == 11
    assert sum(row["body_mass_g"] is None for row in records) == 2


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_nan_and_absent_keys_mean_missing_like_none(
    name: str, models: dict[str, CompiledModel]
) -> None:
    model = models[name]
    none_row = {feature: None for feature in FEATURES} | {"island": "Dream"}
    nan_row = {feature: math.nan for feature in FEATURES} | {"island": "Dream"}
    sparse_row = {"island": "Dream"}
    np.testing.assert_array_equal(model.predict_proba([none_row]), model.predict_proba([nan_row]))
    np.testing.assert_array_equal(
        model.predict_proba([none_row]), model.predict_proba([sparse_row])
    )


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_canonical_rows_match_sklearn_and_classify_typical_birds(
    name: str, models: dict[str, CompiledModel], models_dir: Path
) -> None:
    import pandas as pd

    pipeline = joblib.load(models_dir / f"{name}.joblib")
    rows = list(TYPICAL.values())
    frame = pd.DataFrame(rows, columns=list(FEATURES))
    actual = models[name].predict_proba(rows)
    assert np.max(np.abs(actual - pipeline.predict_proba(frame))) <= TOLERANCE
    np.testing.assert_allclose(actual.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert models[name].predict(rows) == list(TYPICAL)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_integers_are_accepted_as_measurements(name: str, models: dict[str, CompiledModel]) -> None:
    as_float = TYPICAL["Gentoo"]
    as_int = {
        k: (int(v) if isinstance(v, float) and v.is_integer() else v) for k, v in as_float.items()
    }
    np.testing.assert_array_equal(
        models[name].predict_proba([as_float]), models[name].predict_proba([as_int])
    )


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_extreme_but_finite_inputs_give_valid_probabilities(
    name: str, models: dict[str, CompiledModel]
) -> None:
    rows = [
        TYPICAL["Adelie"] | {"culmen_length_mm": 1e4, "body_mass_g": 1e6},
        TYPICAL["Gentoo"] | {"flipper_length_mm": 0.0, "culmen_depth_mm": -50.0},
    ]
    proba = models[name].predict_proba(rows)
    assert np.isfinite(proba).all()
    assert ((proba >= 0) & (proba <= 1)).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_empty_input_gives_an_empty_result(name: str, models: dict[str, CompiledModel]) -> None:
    assert models[name].predict_proba([]).shape == (0, 3)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"island": "Atlantis"}, "island='Atlantis' is not one of"),
        ({"sex": "male"}, "sex='male' is not one of"),
        ({"body_mass_g": "heavy"}, "not a number"),
        ({"body_mass_g": [4000]}, "not a number"),
        ({"culmen_length_mm": math.inf}, "not finite"),
        ({"island": ["Dream"]}, "is not one of"),
    ],
)
def test_non_canonical_values_raise_value_error(
    models: dict[str, CompiledModel], change: dict[str, object], message: str
) -> None:
    row = TYPICAL["Adelie"] | change
    for model in models.values():
        with pytest.raises(ValueError, match=message):
            model.predict_proba([row])


def test_the_module_does_not_import_scikit_learn_scipy_or_pandas(models_dir: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from service.inference import load_models; "
        f"m = load_models(Path({str(models_dir)!r})); "
        "m['rf'].predict_proba([{'island': 'Dream'}]); "
        "print(sorted({n.split('.')[0] for n in sys.modules} & {'sklearn', 'scipy', 'pandas'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "[]"


def test_missing_models_directory_names_the_manifest(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"manifest\.json is missing.*python -m training"):
        load_models(tmp_path / "nowhere")


def test_unreadable_manifest_names_the_file(models_dir: Path, tmp_path: Path) -> None:
    target = _copy_models(models_dir, tmp_path)
    (target / "manifest.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match=r"manifest\.json is unreadable"):
        load_models(target)


def test_manifest_without_a_model_is_rejected(models_dir: Path, tmp_path: Path) -> None:
    target = _copy_models(models_dir, tmp_path)
    _rewrite_manifest(target, lambda m: m["models"].pop("svm"))
    with pytest.raises(ModelLoadError, match="lists no model svm"):
        load_models(target, MODELS.names)


def test_missing_artifact_names_the_file(models_dir: Path, tmp_path: Path) -> None:
    target = _copy_models(models_dir, tmp_path)
    (target / "rf.npz").unlink()
    with pytest.raises(ModelLoadError, match=r"rf\.npz is missing"):
        load_models(target)


def test_truncated_artifact_fails_its_checksum(models_dir: Path, tmp_path: Path) -> None:
    target = _copy_models(models_dir, tmp_path)
    data = (target / "svm.npz").read_bytes()
    (target / "svm.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match=r"svm\.npz does not match the checksum"):
        load_models(target)


def test_garbage_artifact_without_checksum_names_the_file(models_dir: Path, tmp_path: Path) -> None:
    target = _copy_models(models_dir, tmp_path)
    (target / "lr.npz").write_bytes(b"this is not a zip file")
    _rewrite_manifest(target, lambda m: m["models"]["lr"].pop("artifact_sha256"))
    with pytest.raises(ModelLoadError, match=r"lr\.npz is corrupt"):
        load_models(target)


def _rewrite_artifact(target: Path, name: str, change: Any) -> None:
    with np.load(target / f"{name}.npz", allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    change(arrays)
    sha = write_artifact(target / f"{name}.npz", arrays)
    _rewrite_manifest(target, lambda m: m["models"][name].update(artifact_sha256=sha))


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        ("lr", lambda a: a.update(coef=a["coef"][:, :4]), "coef has shape"),
        ("rf", lambda a: a.pop("roots"), "roots"),
        ("rf", lambda a: a.update(node_children=a["node_children"] + 10**6), "out of range"),
        ("rf", lambda a: a.update(roots=np.zeros_like(a["roots"])), "separate trees"),
        ("rf", lambda a: a.update(max_depth=np.array(2)), "deeper than max_depth=2"),
        ("svm", lambda a: a.update(calibration_a=a["calibration_a"][:2]), "inconsistent"),
        ("lr", lambda a: a.update(kind=np.array("boosting")), "unknown model kind"),
        ("lr", lambda a: a.update(format=np.array(99)), "format 99"),
        ("lr", lambda a: a.update(classes=np.array(["a", "b", "c"])), "differ from the manifest"),
    ],
)
def test_structurally_invalid_artifact_names_the_file(
    models_dir: Path, tmp_path: Path, name: str, change: Any, message: str
) -> None:
    target = _copy_models(models_dir, tmp_path)
    _rewrite_artifact(target, name, change)
    with pytest.raises(
        ModelLoadError, match=rf"{name}\.npz is not a valid compiled model.*{message}"
    ):
        load_models(target)


def test_artifact_needing_pickle_is_refused(models_dir: Path, tmp_path: Path) -> None:
    target = _copy_models(models_dir, tmp_path)
    path = target / "lr.npz"
    with np.load(path, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    arrays["classes"] = np.array(["Adelie", "Chinstrap", "Gentoo"], dtype=object)
    np.savez(path, **arrays)  # object arrays are pickled: a loader must not unpickle them
    _rewrite_manifest(target, lambda m: m["models"]["lr"].pop("artifact_sha256"))
    with pytest.raises(ModelLoadError, match=r"lr\.npz is corrupt"):
        load_models(target)


def _rows_on_forest_thresholds(pipeline: Any) -> list[dict[str, object]]:
    """Rows whose scaled measurements sit on, and in the float32 gaps around, split thresholds.

    sklearn's trees round features to float32 and then compare `x <= threshold` in float64, so
    these are the rows where a different rounding or comparison would pick another leaf.
    """
    pre = pipeline.named_steps["preprocess"]
    scaler = pre.named_transformers_["numeric"].named_steps["scale"]
    numeric = [str(name) for name in pre.transformers_[0][2]]
    targets: dict[int, set[float]] = {j: set() for j in range(len(numeric))}
    for tree in (estimator.tree_ for estimator in pipeline.named_steps["model"].estimators_):
        for feature, threshold in zip(tree.feature, tree.threshold, strict=True):
            if 0 <= feature < len(numeric):
                t = float(threshold)
                t32 = np.float32(t)
                below = float(np.nextafter(t32, np.float32(-np.inf)))
                above = float(np.nextafter(t32, np.float32(np.inf)))
                # t itself, the float32 neighbours, and midpoints between them.
                targets[int(feature)].update(
                    {
                        t,
                        float(t32),
                        below,
                        above,
                        (t + float(t32)) / 2,
                        (t + above) / 2,
                        (t + below) / 2,
                    }
                )
    rows = []
    for j, scaled in targets.items():
        for value in sorted(scaled):
            raw = value * float(scaler.scale_[j]) + float(scaler.mean_[j])
            for nudged in (
                raw,
                float(np.nextafter(raw, -np.inf)),
                float(np.nextafter(raw, np.inf)),
            ):
                for base in TYPICAL.values():
                    rows.append(base | {numeric[j]: nudged})
    return rows


def test_forest_matches_predict_proba_on_split_thresholds(
    models: dict[str, CompiledModel], models_dir: Path
) -> None:
    import pandas as pd

    pipeline = joblib.load(models_dir / "rf.joblib")
    rows = _rows_on_forest_thresholds(pipeline)
    expected = pipeline.predict_proba(pd.DataFrame(rows, columns=list(FEATURES)))
    one_at_a_time = np.vstack([models["rf"].predict_proba([row]) for row in rows])
    assert np.max(np.abs(one_at_a_time - expected)) <= TOLERANCE
    for batch in (3, 100):  # the table and the walk strategies
        parts = [
            models["rf"].predict_proba(rows[start : start + batch])
            for start in range(0, len(rows), batch)
        ]
        assert np.max(np.abs(np.vstack(parts) - expected)) <= TOLERANCE


def test_forest_rounding_bounds_split_where_float32_rounding_does() -> None:
    # The single-row forest path goes right when x > b(t), sklearn when float32(x) > t: the
    # same exactly when b(t) rounds to at most t and the next float64 above it does not.
    rng = np.random.default_rng(0)
    below = rng.standard_normal(10_000).astype(np.float32)
    above = np.nextafter(below, np.float32(np.inf))
    thresholds = np.concatenate(
        [
            rng.standard_normal(10_000) * 10,
            below.astype(np.float64),  # on float32 values
            (below.astype(np.float64) + above.astype(np.float64)) / 2,  # on rounding ties
            [0.0, -0.0, 1e-45, -1e-45, 3e38, -3e38],
        ]
    )
    bounds = _largest_rounding_to_at_most(thresholds)
    assert (bounds.astype(np.float32) <= thresholds).all()
    assert (np.nextafter(bounds, np.inf).astype(np.float32) > thresholds).all()
