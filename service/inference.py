"""Numpy-only evaluators for the compiled models that `python -m training` exports.

The request path must stay light (the API worker targets ~60 MB RSS) and fast (tens of
microseconds per row), so it never imports scikit-learn, scipy or pandas and never builds a
DataFrame. Each fitted scikit-learn pipeline is exported as plain float64/int arrays in an `.npz`
(no pickle) and re-evaluated here with the same arithmetic scikit-learn uses; the training step
refuses to write models whose compiled probabilities drift more than 1e-5 from `predict_proba`.

Artifact layout (keys of each `.npz`, written by training/export.py):
  format, kind, classes                      format version, "logistic" | "forest" | "svm", labels
  numeric_features, numeric_fill,            SimpleImputer(median) then StandardScaler
  numeric_mean, numeric_scale
  categorical_features, categorical_fill,    SimpleImputer(most_frequent) then OneHotEncoder;
  categorical_categories                     categories padded with "" to one 2-D array
  logistic: coef, intercept
  forest:   node_feature, node_threshold, node_children, leaf_proba, roots, max_depth
  svm:      support_vectors, pair_coef, intercept, gamma, calibration_a, calibration_b
"""

from __future__ import annotations

import hashlib
import json
import math
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

FEATURES = (
    "island",
    "culmen_length_mm",
    "culmen_depth_mm",
    "flipper_length_mm",
    "body_mass_g",
    "sex",
)
MANIFEST_FILE = "manifest.json"
ARTIFACT_FORMAT = 1
MODEL_NAMES = ("lr", "rf", "svm")


class ModelLoadError(RuntimeError):
    """A model file is missing, corrupt or inconsistent with the manifest (the message names it)."""


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


class _Preprocessor:
    """Replicates ColumnTransformer([numeric: median + scale, categorical: impute + one-hot]).

    Output column order is the ColumnTransformer's: scaled numeric features, then each categorical
    feature's one-hot block in category order.
    """

    def __init__(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.numeric_features = tuple(str(name) for name in arrays["numeric_features"])
        self.numeric_fill = np.asarray(arrays["numeric_fill"], dtype=np.float64)
        self.numeric_mean = np.asarray(arrays["numeric_mean"], dtype=np.float64)
        self.numeric_scale = np.asarray(arrays["numeric_scale"], dtype=np.float64)
        self.categorical_features = tuple(str(name) for name in arrays["categorical_features"])
        fills = [str(value) for value in arrays["categorical_fill"]]
        grid = arrays["categorical_categories"]
        n_numeric = len(self.numeric_features)
        if not (
            self.numeric_fill.shape
            == self.numeric_mean.shape
            == self.numeric_scale.shape
            == (n_numeric,)
            and len(fills) == len(self.categorical_features) == grid.shape[0]
        ):
            raise ValueError("preprocessing arrays have inconsistent shapes")
        # value -> output column, per categorical feature; the imputed value maps like any other.
        self._columns: list[dict[str, int]] = []
        self._fill_column: list[int] = []
        offset = n_numeric
        for row, fill in zip(grid, fills, strict=True):
            categories = [str(value) for value in row if str(value) != ""]
            columns = {value: offset + index for index, value in enumerate(categories)}
            if fill not in columns:
                raise ValueError(f"imputation value {fill!r} is not a known category")
            self._columns.append(columns)
            self._fill_column.append(columns[fill])
            offset += len(categories)
        self.n_output = offset
        expected = set(self.numeric_features) | set(self.categorical_features)
        if expected != set(FEATURES):
            raise ValueError(f"artifact features {sorted(expected)} differ from {list(FEATURES)}")

    def transform(self, rows: Sequence[Mapping[str, object]]) -> np.ndarray:
        n_rows = len(rows)
        numeric = np.empty((n_rows, len(self.numeric_features)), dtype=np.float64)
        out = np.zeros((n_rows, self.n_output), dtype=np.float64)
        for i, row in enumerate(rows):
            for j, name in enumerate(self.numeric_features):
                value = row.get(name)
                numeric[i, j] = math.nan if value is None else float(value)  # type: ignore[arg-type]
            for k, name in enumerate(self.categorical_features):
                value = row.get(name)
                if _is_missing(value):
                    out[i, self._fill_column[k]] = 1.0
                    continue
                column = self._columns[k].get(str(value))
                if column is None:
                    known = ", ".join(sorted(self._columns[k]))
                    raise ValueError(f"{name}={value!r} is not one of: {known}")
                out[i, column] = 1.0
        missing = np.isnan(numeric)
        if missing.any():
            numeric = np.where(missing, self.numeric_fill, numeric)
        # Same two in-place steps as StandardScaler.transform, so results are bit-identical.
        numeric -= self.numeric_mean
        numeric /= self.numeric_scale
        out[:, : numeric.shape[1]] = numeric
        return out


class CompiledModel:
    """A fitted pipeline in compiled form: `predict_proba` over dict rows, numpy only."""

    kind = ""

    def __init__(
        self, name: str, title: str, version: str, arrays: Mapping[str, np.ndarray]
    ) -> None:
        self.name = name
        self.title = title
        self.version = version
        self.classes: tuple[str, ...] = tuple(str(label) for label in arrays["classes"])
        self._pre = _Preprocessor(arrays)

    def predict_proba(self, rows: Sequence[Mapping[str, object]]) -> np.ndarray:
        """Class probabilities, shape (len(rows), len(classes)), columns in `classes` order.

        Rows are keyed by FEATURES with canonical values; None or NaN is imputed as in training.
        Raises ValueError for an unknown category or a non-numeric measurement.
        """
        if len(rows) == 0:
            return np.zeros((0, len(self.classes)), dtype=np.float64)
        return self._proba(self._pre.transform(rows))

    def predict(self, rows: Sequence[Mapping[str, object]]) -> list[str]:
        """Most probable class label per row."""
        return [self.classes[index] for index in self.predict_proba(rows).argmax(axis=1)]

    def _proba(self, features: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, version={self.version!r})"


class LogisticModel(CompiledModel):
    """Multinomial logistic regression: softmax(X @ coef.T + intercept)."""

    kind = "logistic"

    def __init__(
        self, name: str, title: str, version: str, arrays: Mapping[str, np.ndarray]
    ) -> None:
        super().__init__(name, title, version, arrays)
        self._coef_t = np.ascontiguousarray(np.asarray(arrays["coef"], dtype=np.float64).T)
        self._intercept = np.asarray(arrays["intercept"], dtype=np.float64)
        if self._coef_t.shape != (self._pre.n_output, len(self.classes)):
            raise ValueError(f"coef has shape {self._coef_t.T.shape}")

    def _proba(self, features: np.ndarray) -> np.ndarray:
        decision = features @ self._coef_t + self._intercept
        # sklearn.utils.extmath.softmax: shift by the row max, exponentiate, normalise.
        decision -= decision.max(axis=1, keepdims=True)
        np.exp(decision, out=decision)
        decision /= decision.sum(axis=1, keepdims=True)
        return decision


class ForestModel(CompiledModel):
    """Random forest evaluated over all trees at once.

    All trees' nodes live in one set of arrays (children are global indices, a leaf points to
    itself), so one traversal step for every (row, tree) pair is a few fancy-indexing operations,
    repeated max_depth times, with no Python loop over trees or nodes.
    """

    kind = "forest"

    def __init__(
        self, name: str, title: str, version: str, arrays: Mapping[str, np.ndarray]
    ) -> None:
        super().__init__(name, title, version, arrays)
        self._feature = np.asarray(arrays["node_feature"], dtype=np.intp)
        self._threshold = np.asarray(arrays["node_threshold"], dtype=np.float64)
        # children[2 * node] is the left child, children[2 * node + 1] the right one.
        self._children = np.asarray(arrays["node_children"], dtype=np.intp)
        self._leaf_proba = np.asarray(arrays["leaf_proba"], dtype=np.float64)
        self._roots = np.asarray(arrays["roots"], dtype=np.intp)
        self._max_depth = int(arrays["max_depth"])
        n_nodes = self._feature.shape[0]
        if not (
            self._threshold.shape == (n_nodes,)
            and self._children.shape == (2 * n_nodes,)
            and self._leaf_proba.shape == (n_nodes, len(self.classes))
            and self._roots.ndim == 1
            and self._roots.size > 0
        ):
            raise ValueError("forest arrays have inconsistent shapes")
        if n_nodes and (
            self._feature.min() < 0
            or self._feature.max() >= self._pre.n_output
            or self._children.min() < 0
            or self._children.max() >= n_nodes
            or self._roots.max() >= n_nodes
        ):
            raise ValueError("forest node indices are out of range")

    def _proba(self, features: np.ndarray) -> np.ndarray:
        # sklearn trees compare float32 features against float64 thresholds.
        flat = features.astype(np.float32).astype(np.float64).ravel()
        n_rows, n_features = features.shape
        row_offset = (np.arange(n_rows, dtype=np.intp) * n_features)[:, None]
        node = np.broadcast_to(self._roots, (n_rows, self._roots.size))
        feature, threshold, children = self._feature, self._threshold, self._children
        for _ in range(self._max_depth):
            values = flat[row_offset + feature[node]]
            node = children[2 * node + (values > threshold[node])]
        # Leaf distributions are stored normalised per tree; the forest is their plain mean.
        return self._leaf_proba[node].mean(axis=1)


class SvmModel(CompiledModel):
    """RBF SVC wrapped in CalibratedClassifierCV(method="sigmoid", ensemble=False).

    Reproduces: one-vs-one decision values, SVC's "ovr" decision transform (votes plus confidences
    squashed into (-1/3, 1/3)), one sigmoid per class, and the normalisation of the result.
    """

    kind = "svm"

    def __init__(
        self, name: str, title: str, version: str, arrays: Mapping[str, np.ndarray]
    ) -> None:
        super().__init__(name, title, version, arrays)
        self._support = np.asarray(arrays["support_vectors"], dtype=np.float64)
        # pair_coef[s, p]: dual coefficient of support vector s in the classifier of pair p.
        self._pair_coef = np.asarray(arrays["pair_coef"], dtype=np.float64)
        self._intercept = np.asarray(arrays["intercept"], dtype=np.float64)
        self._gamma = float(arrays["gamma"])
        self._a = np.asarray(arrays["calibration_a"], dtype=np.float64)
        self._b = np.asarray(arrays["calibration_b"], dtype=np.float64)
        n_classes = len(self.classes)
        n_pairs = n_classes * (n_classes - 1) // 2
        if not (
            n_classes > 2
            and self._support.ndim == 2
            and self._support.shape[1] == self._pre.n_output
            and self._pair_coef.shape == (self._support.shape[0], n_pairs)
            and self._intercept.shape == (n_pairs,)
            and self._a.shape == self._b.shape == (n_classes,)
        ):
            raise ValueError("svm arrays have inconsistent shapes")
        pairs = [(i, j) for i in range(n_classes) for j in range(i + 1, n_classes)]
        self._pair_first = np.array([i for i, _ in pairs], dtype=np.intp)
        self._pair_second = np.array([j for _, j in pairs], dtype=np.intp)
        # sum_of_confidences = ovo @ confidence_map, as sklearn's _ovr_decision_function builds it.
        self._confidence_map = np.zeros((n_pairs, n_classes))
        self._confidence_map[np.arange(n_pairs), self._pair_first] = 1.0
        self._confidence_map[np.arange(n_pairs), self._pair_second] = -1.0

    def _decision_ovr(self, features: np.ndarray) -> np.ndarray:
        diff = features[:, None, :] - self._support[None, :, :]
        kernel = np.exp(-self._gamma * np.einsum("ijk,ijk->ij", diff, diff))
        ovo = kernel @ self._pair_coef + self._intercept
        n_rows, n_classes = ovo.shape[0], len(self.classes)
        votes = np.zeros((n_rows, n_classes))
        rows = np.arange(n_rows)[:, None]
        winner = np.where(ovo < 0, self._pair_second, self._pair_first)
        np.add.at(votes, (np.broadcast_to(rows, winner.shape), winner), 1.0)
        confidences = ovo @ self._confidence_map
        return votes + confidences / (3 * (np.abs(confidences) + 1))

    def _proba(self, features: np.ndarray) -> np.ndarray:
        decision = self._decision_ovr(features)
        # _SigmoidCalibration.predict: expit(-(a * f + b)).
        proba = 1.0 / (1.0 + np.exp(self._a * decision + self._b))
        total = proba.sum(axis=1, keepdims=True)
        uniform = np.full_like(proba, 1.0 / proba.shape[1])
        return np.divide(proba, total, out=uniform, where=total != 0)


_KINDS: dict[str, type[CompiledModel]] = {
    cls.kind: cls for cls in (LogisticModel, ForestModel, SvmModel)
}


def load_manifest(models_dir: Path) -> dict[str, Any]:
    """Reads models_dir/manifest.json; raises ModelLoadError naming the file when unusable."""
    path = Path(models_dir) / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(
            f"{path} is missing; train the models first: python -m training"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"{path} is unreadable or not valid JSON: {error}") from error
    if not isinstance(manifest, dict) or not isinstance(manifest.get("models"), dict):
        raise ModelLoadError(f"{path} has no 'models' object")
    return manifest


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except FileNotFoundError:
        raise ModelLoadError(f"{path} is missing; retrain: python -m training") from None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:
        raise ModelLoadError(f"{path} is corrupt ({error}); retrain: python -m training") from error


def load_model(models_dir: Path, name: str, entry: Mapping[str, Any]) -> CompiledModel:
    """Loads one manifest entry's artifact, checking its checksum and structure."""
    try:
        path = Path(models_dir) / str(entry["artifact"])
        title, version = str(entry["title"]), str(entry["version"])
        expected_sha = entry.get("artifact_sha256")
    except (KeyError, TypeError) as error:
        raise ModelLoadError(f"manifest entry for {name!r} is incomplete: {error}") from error
    if expected_sha is not None and path.is_file():
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        if actual != expected_sha:
            raise ModelLoadError(
                f"{path} does not match the checksum in the manifest (corrupt or replaced); "
                "retrain: python -m training"
            )
    arrays = _read_arrays(path)
    try:
        if int(arrays["format"]) != ARTIFACT_FORMAT:
            raise ValueError(f"format {int(arrays['format'])}, expected {ARTIFACT_FORMAT}")
        kind = str(arrays["kind"])
        if kind not in _KINDS:
            raise ValueError(f"unknown model kind {kind!r}")
        model = _KINDS[kind](name, title, version, arrays)
        if list(model.classes) != list(entry.get("classes", model.classes)):
            raise ValueError(f"classes {list(model.classes)} differ from the manifest's")
    except (KeyError, ValueError, TypeError, IndexError) as error:
        raise ModelLoadError(f"{path} is not a valid compiled model: {error}") from error
    return model


def load_models(models_dir: Path) -> dict[str, CompiledModel]:
    """Loads every model the manifest lists (keys "lr", "rf", "svm") from models_dir."""
    manifest = load_manifest(models_dir)
    entries = manifest["models"]
    missing = [name for name in MODEL_NAMES if name not in entries]
    if missing:
        raise ModelLoadError(
            f"{Path(models_dir) / MANIFEST_FILE} lists no model {', '.join(missing)}"
        )
    return {name: load_model(models_dir, name, entries[name]) for name in entries}
