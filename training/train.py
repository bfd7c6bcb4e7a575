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
    x_all, y_all = usable.features, usable.target
    x_train, x_test, y_train, y_test = train_test_split(
        x_all, y_all, test_size=settings.test_size, stratify=y_all, random_state=settings.seed
    )
    folds = StratifiedKFold(n_splits=settings.cv_folds, shuffle=True, random_state=settings.seed)

    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))
    try:
        # mkdtemp makes the directory private (0700); models/ must stay readable by the
        # non-root user of the API image, so apply the usual umask-based mode instead.
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)
        entries: dict[str, Any] = {}
        fills: dict[str, Any] = {}
        for name, pipeline in pipelines.items():
            started = time.perf_counter()
            cv_scores = cross_val_score(pipeline, x_train, y_train, cv=folds, scoring="accuracy")
            pipeline.fit(x_train, y_train)
            predicted = pipeline.predict(x_test)
            classes = [str(c) for c in pipeline.classes_]
            if tuple(classes) != CLASSES:
                raise ValueError(f"{name}: unexpected classes {classes}")
            arrays = compile_pipeline(pipeline, registry[name])
            joblib.dump(pipeline, staging / f"{name}.joblib")
            sha = write_artifact(staging / f"{name}.npz", arrays)
            fills.update(
                zip(
                    arrays["numeric_features"].tolist(),
                    arrays["numeric_fill"].tolist(),
                    strict=True,
                )
            )
            fills.update(
                zip(
                    arrays["categorical_features"].tolist(),
                    arrays["categorical_fill"].tolist(),
                    strict=True,
                )
            )
            entries[name] = {
                "name": name,
                "title": registry[name].title,
                "version": f"{name}-{sha[:12]}",
                "artifact": f"{name}.npz",
                "artifact_sha256": sha,
                "artifact_bytes": (staging / f"{name}.npz").stat().st_size,
                "pipeline": f"{name}.joblib",
                "classes": classes,
                "metrics": {
                    "holdout_accuracy": round(
                        float(accuracy_score(y_test, predicted)), METRIC_DIGITS
                    ),
                    "holdout_macro_f1": round(
                        float(f1_score(y_test, predicted, average="macro")), METRIC_DIGITS
                    ),
                    "cv_accuracy_mean": round(float(np.mean(cv_scores)), METRIC_DIGITS),
                    "cv_accuracy_std": round(float(np.std(cv_scores)), METRIC_DIGITS),
                },
            }
            log(
                f"{name:>4}: holdout accuracy {entries[name]['metrics']['holdout_accuracy']:.4f}, "
                f"macro F1 {entries[name]['metrics']['holdout_macro_f1']:.4f}, "
                f"CV {entries[name]['metrics']['cv_accuracy_mean']:.4f} "
                f"+/- {entries[name]['metrics']['cv_accuracy_std']:.4f} "
                f"({time.perf_counter() - started:.1f} s)"
            )

        manifest: dict[str, Any] = {
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
                "rows_train": len(x_train),
                "rows_holdout": len(x_test),
                "parity_tolerance": settings.parity_tolerance,
            },
        }
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")

        # Prove the artifacts as the service will load them, on every row of the file.
        compiled = load_models(staging, registry.names)
        parity: dict[str, float] = {}
        for name, pipeline in pipelines.items():
            parity[name] = _max_parity_gap(compiled[name], pipeline, full)
            if not parity[name] <= settings.parity_tolerance:
                raise ParityError(
                    f"{name}: compiled probabilities differ from scikit-learn by {parity[name]:.3g}"
                    f" (tolerance {settings.parity_tolerance})"
                )
        log(
            "parity with predict_proba on all rows: "
            + ", ".join(f"{name} {gap:.1e}" for name, gap in parity.items())
        )
        _swap_into_place(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return TrainingResult(output=output, manifest=manifest)
