"""Compiles fitted pipelines into the numpy arrays service/inference.py evaluates.

Artifacts are written byte-for-byte deterministically (fixed zip timestamps, sorted keys), so the
same training run gives the same checksum, and the checksum is the model version.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from service.inference import ARTIFACT_FORMAT
from service.registry import ModelSpec

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def _preprocessing_arrays(pipeline: Pipeline) -> dict[str, np.ndarray]:
    pre = pipeline.named_steps["preprocess"]
    numeric = pre.named_transformers_["numeric"]
    categorical = pre.named_transformers_["categorical"]
    numeric_features = [str(n) for n in pre.transformers_[0][2]]
    categorical_features = [str(n) for n in pre.transformers_[1][2]]
    categories = [[str(c) for c in cats] for cats in categorical.named_steps["onehot"].categories_]
    width = max(len(cats) for cats in categories)
    return {
        "numeric_features": np.array(numeric_features),
        "numeric_fill": np.asarray(numeric.named_steps["impute"].statistics_, dtype=np.float64),
        "numeric_mean": np.asarray(numeric.named_steps["scale"].mean_, dtype=np.float64),
        "numeric_scale": np.asarray(numeric.named_steps["scale"].scale_, dtype=np.float64),
        "categorical_features": np.array(categorical_features),
        "categorical_fill": np.array(
            [str(v) for v in categorical.named_steps["impute"].statistics_]
        ),
        # Padded with "" so the ragged lists fit one (pickle-free) unicode array.
        "categorical_categories": np.array(
            [cats + [""] * (width - len(cats)) for cats in categories]
        ),
    }


def _logistic_arrays(model: LogisticRegression) -> dict[str, np.ndarray]:
    if model.coef_.shape[0] < 3:
        raise ValueError("only the multinomial (3+ classes) logistic regression is compiled")
    return {
        "coef": np.asarray(model.coef_, dtype=np.float64),
        "intercept": np.asarray(model.intercept_, dtype=np.float64),
    }


def _forest_arrays(model: RandomForestClassifier) -> dict[str, np.ndarray]:
    features, thresholds, children, leaf_proba, roots = [], [], [], [], []
    offset = 0
    max_depth = 0
    for tree in (estimator.tree_ for estimator in model.estimators_):
        n = tree.node_count
        own = np.arange(n) + offset
        leaf = tree.children_left < 0
        left = np.where(leaf, own, tree.children_left + offset)
        right = np.where(leaf, own, tree.children_right + offset)
        features.append(np.where(leaf, 0, tree.feature))
        thresholds.append(np.where(leaf, 0.0, tree.threshold))
        children.append(np.stack([left, right], axis=1).ravel())
        # DecisionTreeClassifier.predict_proba: the leaf's class weights divided by their sum.
        value = np.asarray(tree.value[:, 0, :], dtype=np.float64)
        normalizer = value.sum(axis=1)[:, None]
        normalizer[normalizer == 0.0] = 1.0
        leaf_proba.append(value / normalizer)
        roots.append(offset)
        max_depth = max(max_depth, int(tree.max_depth))
        offset += n
    return {
        "node_feature": np.concatenate(features).astype(np.int32),
        "node_threshold": np.concatenate(thresholds).astype(np.float64),
        "node_children": np.concatenate(children).astype(np.int32),
        "leaf_proba": np.concatenate(leaf_proba),
        "roots": np.array(roots, dtype=np.int32),
        "max_depth": np.array(max_depth, dtype=np.int64),
    }


def _svm_arrays(model: CalibratedClassifierCV) -> dict[str, np.ndarray]:
    if len(model.calibrated_classifiers_) != 1:
        raise ValueError("expected CalibratedClassifierCV(ensemble=False): one calibrated SVC")
    calibrated = model.calibrated_classifiers_[0]
    svc = calibrated.estimator
    if svc.decision_function_shape != "ovr" or svc.kernel != "rbf":
        raise ValueError("only an RBF SVC with decision_function_shape='ovr' is compiled")
    if list(svc.classes_) != list(model.classes_):
        raise ValueError("SVC and calibrator class orders differ")
    n_classes = len(svc.classes_)
    n_support = [int(n) for n in svc.n_support_]
    starts = np.concatenate([[0], np.cumsum(n_support)])
    dual = np.asarray(svc.dual_coef_, dtype=np.float64)
    pairs = [(i, j) for i in range(n_classes) for j in range(i + 1, n_classes)]
    # libsvm's one-vs-one layout: in the (i, j) classifier, class i's support vectors weigh with
    # dual_coef[j - 1] and class j's with dual_coef[i]; every other vector contributes nothing.
    pair_coef = np.zeros((dual.shape[1], len(pairs)))
    for p, (i, j) in enumerate(pairs):
        pair_coef[starts[i] : starts[i + 1], p] = dual[j - 1, starts[i] : starts[i + 1]]
        pair_coef[starts[j] : starts[j + 1], p] = dual[i, starts[j] : starts[j + 1]]
    return {
        "support_vectors": np.asarray(svc.support_vectors_, dtype=np.float64),
        "pair_coef": pair_coef,
        "intercept": np.asarray(svc.intercept_, dtype=np.float64),
        "gamma": np.array(float(svc._gamma)),
        "calibration_a": np.array([float(c.a_) for c in calibrated.calibrators]),
        "calibration_b": np.array([float(c.b_) for c in calibrated.calibrators]),
    }


@dataclass(frozen=True)
class Compiler:
    """Turns one fitted estimator type into the arrays of one service/inference.py evaluator."""

    estimator_type: type
    arrays: Callable[[Any], dict[str, np.ndarray]]


# Keyed by ModelSpec.compiler; each key is also an evaluator kind in service/inference.py.
COMPILERS: dict[str, Compiler] = {
    "logistic": Compiler(LogisticRegression, _logistic_arrays),
    "forest": Compiler(RandomForestClassifier, _forest_arrays),
    "rbf_svc": Compiler(CalibratedClassifierCV, _svm_arrays),
}


def check_compilable(spec: ModelSpec, estimator: object) -> None:
    """TypeError naming the model, its estimator and the fix, unless `spec.compiler` fits it."""
    compiler = COMPILERS.get(spec.compiler)
    estimator_name = type(estimator).__name__
    known = ", ".join(f"{kind} ({c.estimator_type.__name__})" for kind, c in COMPILERS.items())
    if compiler is None:
        raise TypeError(
            f"model {spec.name!r} ({estimator_name}): no numpy compiler named "
            f"{spec.compiler!r}; use one of {known} in service/registry.py, or add a compiler "
            "to training/export.py and an evaluator to service/inference.py"
        )
    if not isinstance(estimator, compiler.estimator_type):
        raise TypeError(
            f"model {spec.name!r}: the numpy compiler {spec.compiler!r} compiles "
            f"{compiler.estimator_type.__name__}, not {estimator_name}; pick the compiler that "
            f"fits in service/registry.py ({known}), or add a compiler for {estimator_name} "
            "to training/export.py and an evaluator to service/inference.py"
        )


def compile_pipeline(pipeline: Pipeline, spec: ModelSpec) -> dict[str, np.ndarray]:
    """Arrays describing the fitted pipeline (see the layout in service/inference.py)."""
    model = pipeline.named_steps["model"]
    check_compilable(spec, model)
    arrays = COMPILERS[spec.compiler].arrays(model)
    arrays["kind"] = np.array(spec.compiler)
    arrays.update(_preprocessing_arrays(pipeline))
    arrays["classes"] = np.array([str(c) for c in model.classes_])
    arrays["format"] = np.array(ARTIFACT_FORMAT, dtype=np.int64)
    return arrays


def write_artifact(path: Path, arrays: dict[str, np.ndarray]) -> str:
    """Writes a deterministic, pickle-free .npz; returns its sha256."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w") as member:
                np.lib.format.write_array(member, np.asarray(arrays[key]), allow_pickle=False)
    content = buffer.getvalue()
    path.write_bytes(content)
    return hashlib.sha256(content).hexdigest()
