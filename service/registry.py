"""The model set, defined once: each model's name, title, estimator factory and numpy compiler.

Training builds and compiles what is listed here, the service serves it, and the benchmark
measures it; adding a model is one `ModelSpec` below plus retraining (`python -m training`).

This module imports nothing outside the standard library at import time: the service image has
no scikit-learn, so each factory imports it only when training calls it. Tools that must not
import service code at all (the locustfile, the matrix) read the trained models/manifest.json,
whose "models" object has one key per name here, or ask a running API (GET /models).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

# Names appear in URLs (?model=), metric labels and file names: keep them plain.
_NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,31}")


@dataclass(frozen=True)
class EstimatorOptions:
    """What a training run passes to every estimator factory."""

    seed: int
    forest_trees: int
    cv_folds: int


@dataclass(frozen=True)
class ModelSpec:
    """One model; `compiler` names its numpy compiler (training/export.py) and evaluator."""

    name: str
    title: str
    compiler: str
    build_estimator: Callable[[EstimatorOptions], Any]


class ModelRegistry:
    """An ordered, validated set of ModelSpec with a default model."""

    def __init__(self, specs: Iterable[ModelSpec], default: str) -> None:
        self._specs: dict[str, ModelSpec] = {}
        for spec in specs:
            if not _NAME_PATTERN.fullmatch(spec.name):
                raise ValueError(f"model name {spec.name!r} must match {_NAME_PATTERN.pattern}")
            if spec.name in self._specs:
                raise ValueError(f"model {spec.name!r} is registered twice")
            self._specs[spec.name] = spec
        if default not in self._specs:
            raise ValueError(f"default model {default!r} is not one of {list(self._specs)}")
        self.default = default

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._specs)

    def __getitem__(self, name: str) -> ModelSpec:
        return self._specs[name]

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def with_model(self, spec: ModelSpec) -> ModelRegistry:
        """A new registry with one more model (the default stays)."""
        return ModelRegistry([*self, spec], self.default)


def logistic_regression(options: EstimatorOptions) -> Any:
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    return LogisticRegression(C=1.0, max_iter=2000, random_state=options.seed)


def random_forest(options: EstimatorOptions) -> Any:
    from sklearn.ensemble import RandomForestClassifier  # type: ignore[import-untyped]

    return RandomForestClassifier(
        n_estimators=options.forest_trees, random_state=options.seed, n_jobs=1
    )


def calibrated_svm(options: EstimatorOptions) -> Any:
    """RBF SVC with sigmoid-calibrated probabilities.

    SVC(probability=True) is deprecated in scikit-learn 1.9. Sigmoid calibration over
    cross-validated decision values gives the probabilities instead; ensemble=False keeps a
    single SVC fitted on all training rows, so there is one SVC to export. The calibrators read
    SVC.decision_function, so decision_function_shape matters: "ovr" (the default) gives one
    column per class, as calibration assumes; training/export.py refuses anything else.
    """
    from sklearn.calibration import CalibratedClassifierCV  # type: ignore[import-untyped]
    from sklearn.model_selection import StratifiedKFold  # type: ignore[import-untyped]
    from sklearn.svm import SVC  # type: ignore[import-untyped]

    return CalibratedClassifierCV(
        SVC(kernel="rbf", C=1.0, gamma="scale", random_state=options.seed),
        method="sigmoid",
        cv=StratifiedKFold(n_splits=options.cv_folds, shuffle=True, random_state=options.seed),
        ensemble=False,
    )


MODELS = ModelRegistry(
    [
        ModelSpec("lr", "Logistic regression", "logistic", logistic_regression),
        ModelSpec("rf", "Random forest", "forest", random_forest),
        ModelSpec(
            "svm", "Support vector machine (RBF, sigmoid-calibrated)", "rbf_svc", calibrated_svm
        ),
    ],
    default="lr",
)
