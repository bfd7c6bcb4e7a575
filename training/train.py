"""One training run: split, cross-validate, fit, compile, check parity, write models/ atomically."""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split

from service.inference import FEATURES, MANIFEST_FILE, load_models
from service.registry import MODELS, EstimatorOptions, ModelRegistry
from training.dataset import (
    CATEGORIES,
    CLASSES,
    NUMERIC_FEATURES,
    TARGET,
    UNITS,
    Dataset,
    load_dataset,
)
from training.errors import OutputError, ParityError
from training.export import compile_pipeline, write_artifact
from training.pipelines import build_pipelines
from training.settings import PROJECT_ROOT, TrainingSettings

METRIC_DIGITS = 6


@dataclass(frozen=True)
class TrainingResult:
    output: Path
    manifest: dict[str, Any]


def check_output(output: Path) -> Path:
    """The resolved output path, or OutputError when it cannot be (re)placed safely."""
    output = output.expanduser().resolve()
    parent = output.parent
    if not parent.is_dir():
        raise OutputError(f"output parent directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"output parent directory {parent} is not writable")
    if output.exists():
        if not output.is_dir():
            raise OutputError(f"output {output} exists and is not a directory")
        # Never swap away a directory that is not a models directory (think --output ~).
        if any(output.iterdir()) and not (output / MANIFEST_FILE).is_file():
            raise OutputError(
                f"output {output} is not empty and holds no {MANIFEST_FILE}; refusing to replace it"
            )
    return output


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path.resolve())


def _feature_schema(dataset: Dataset, fills: dict[str, Any]) -> dict[str, Any]:
    frame = dataset.frame
    return {
        "features": list(FEATURES),
        "target": TARGET,
        "numeric": {
            name: {
                "unit": UNITS[name],
                "observed_min": float(frame[name].min()),
                "observed_max": float(frame[name].max()),
                "imputed_with": float(fills[name]),
            }
            for name in NUMERIC_FEATURES
        },
        "categorical": {
            name: {"values": list(values), "imputed_with": str(fills[name])}
            for name, values in CATEGORIES.items()
        },
        "missing": "null (or NaN) means unknown and is imputed as during training",
    }


def _max_parity_gap(compiled: Any, pipeline: Any, dataset: Dataset) -> float:
    expected = pipeline.predict_proba(dataset.features)
    actual = compiled.predict_proba(dataset.records())
    if actual.shape != expected.shape:
        raise ParityError(f"{compiled.name}: shape {actual.shape} != {expected.shape}")
    return float(np.max(np.abs(actual - expected)))


def _swap_into_place(staging: Path, output: Path) -> None:
    """Replaces output by staging with two renames, restoring the old one if the second fails."""
    retired = output.parent / f".{output.name}.old-{os.getpid()}-{time.monotonic_ns()}"
    for _ in range(5):  # a concurrent run may be swapping too
        moved_old = False
        try:
            if output.exists():
                output.rename(retired)
                moved_old = True
            staging.rename(output)
        except OSError:
            if moved_old and not output.exists():
                retired.rename(output)
            time.sleep(0.2)
            continue
        if moved_old:
            shutil.rmtree(retired, ignore_errors=True)
        return
    raise OutputError(f"could not move the new models into {output}")


@dataclass(frozen=True)
class _Split:
    """The stratified hold-out split and the cross-validation folds of the training part."""

    x_train: Any
    x_test: Any
    y_train: Any
    y_test: Any
    folds: StratifiedKFold


def _split(usable: Dataset, settings: TrainingSettings) -> _Split:
    x_train, x_test, y_train, y_test = train_test_split(
        usable.features,
        usable.target,
        test_size=settings.test_size,
        stratify=usable.target,
        random_state=settings.seed,
    )
    folds = StratifiedKFold(n_splits=settings.cv_folds, shuffle=True, random_state=settings.seed)
    return _Split(x_train, x_test, y_train, y_test, folds)


def _staging_dir(output: Path) -> Path:
    """An empty folder beside `output`, swapped into its place once everything is proven."""
    return Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))


def _make_readable(staging: Path) -> None:
    # mkdtemp makes the directory private (0700); models/ must stay readable by the
    # non-root user of the API image, so apply the usual umask-based mode instead.
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)


def _fit_and_export(
    name: str,
    pipeline: Any,
    registry: ModelRegistry,
    split: _Split,
    staging: Path,
    fills: dict[str, Any],
    log: Any,
) -> dict[str, Any]:
    """Cross-validates, fits, compiles and writes one model; its manifest entry. Adds the
    imputation values its compiled form uses to `fills`."""
    started = time.perf_counter()
    cv_scores = cross_val_score(
        pipeline, split.x_train, split.y_train, cv=split.folds, scoring="accuracy"
    )
    pipeline.fit(split.x_train, split.y_train)
    predicted = pipeline.predict(split.x_test)
    classes = [str(c) for c in pipeline.classes_]
    if tuple(classes) != CLASSES:
        raise ValueError(f"{name}: unexpected classes {classes}")
    arrays = compile_pipeline(pipeline, registry[name])
    joblib.dump(pipeline, staging / f"{name}.joblib")
    sha = write_artifact(staging / f"{name}.npz", arrays)
    for kind in ("numeric", "categorical"):
        fills.update(
            zip(
                arrays[f"{kind}_features"].tolist(),
                arrays[f"{kind}_fill"].tolist(),
                strict=True,
            )
        )
    metrics = {
        "holdout_accuracy": round(float(accuracy_score(split.y_test, predicted)), METRIC_DIGITS),
        "holdout_macro_f1": round(
            float(f1_score(split.y_test, predicted, average="macro")), METRIC_DIGITS
        ),
        "cv_accuracy_mean": round(float(np.mean(cv_scores)), METRIC_DIGITS),
        "cv_accuracy_std": round(float(np.std(cv_scores)), METRIC_DIGITS),
    }
    log(
        f"{name:>4}: holdout accuracy {metrics['holdout_accuracy']:.4f}, "
        f"macro F1 {metrics['holdout_macro_f1']:.4f}, "
        f"CV {metrics['cv_accuracy_mean']:.4f} "
        f"+/- {metrics['cv_accuracy_std']:.4f} "
        f"({time.perf_counter() - started:.1f} s)"
    )
    return {
        "name": name,
        "title": registry[name].title,
        "version": f"{name}-{sha[:12]}",
        "artifact": f"{name}.npz",
        "artifact_sha256": sha,
        "artifact_bytes": (staging / f"{name}.npz").stat().st_size,
        "pipeline": f"{name}.joblib",
        "classes": classes,
        "metrics": metrics,
    }


def _manifest(
    settings: TrainingSettings,
    registry: ModelRegistry,
    entries: dict[str, Any],
    fills: dict[str, Any],
    full: Dataset,
    usable: Dataset,
    split: _Split,
) -> dict[str, Any]:
    return {
        "default_model": registry.default,
        "models": entries,
        "feature_schema": _feature_schema(full, fills),
        "data": {
            "file": _display_path(full.path),
            "sha256": full.sha256,
            "rows": len(full.frame),
        },
        "library_versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "scikit-learn": sklearn.__version__,
            "joblib": joblib.__version__,
        },
        "training": {
            "seed": settings.seed,
            "test_size": settings.test_size,
            "cv_folds": settings.cv_folds,
            "forest_trees": settings.forest_trees,
            "rows_used": len(usable.frame),
            "rows_excluded": len(full.frame) - len(usable.frame),
            "excluded_because": "no body measurement at all",
            "rows_train": len(split.x_train),
            "rows_holdout": len(split.x_test),
            "parity_tolerance": settings.parity_tolerance,
        },
    }


def _check_parity(
    staging: Path,
    pipelines: dict[str, Any],
    registry: ModelRegistry,
    full: Dataset,
    tolerance: float,
    log: Any,
) -> None:
    """Proves the artifacts as the service will load them, on every row of the file."""
    compiled = load_models(staging, registry.names)
    parity: dict[str, float] = {}
    for name, pipeline in pipelines.items():
        parity[name] = _max_parity_gap(compiled[name], pipeline, full)
        if not parity[name] <= tolerance:
            raise ParityError(
                f"{name}: compiled probabilities differ from scikit-learn by {parity[name]:.3g}"
                f" (tolerance {tolerance})"
            )
    log(
        "parity with predict_proba on all rows: "
        + ", ".join(f"{name} {gap:.1e}" for name, gap in parity.items())
    )


def train(
    settings: TrainingSettings, log: Any = print, registry: ModelRegistry = MODELS
) -> TrainingResult:
    """Trains every model of `registry`; on any failure models/ is left exactly as it was."""
    output = check_output(settings.output)
    options = EstimatorOptions(
        seed=settings.seed, forest_trees=settings.forest_trees, cv_folds=settings.cv_folds
    )
    # Before any data is read: a model without a numpy compiler fails here, naming the fix.
    pipelines = build_pipelines(options, registry)
    full = load_dataset(settings.data)
    usable = full.trainable()
    split = _split(usable, settings)
    staging = _staging_dir(output)
    try:
        _make_readable(staging)
        fills: dict[str, Any] = {}
        entries = {
            name: _fit_and_export(name, pipeline, registry, split, staging, fills, log)
            for name, pipeline in pipelines.items()
        }
        manifest = _manifest(settings, registry, entries, fills, full, usable, split)
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
        _check_parity(staging, pipelines, registry, full, settings.parity_tolerance, log)
        _swap_into_place(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return TrainingResult(output=output, manifest=manifest)
