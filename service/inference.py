"""Numpy evaluators for the compiled models that `python -m training` exports, and for single
rows the C module of service/_native.c when it is built (service/native.py).

The request path must stay light (the API worker targets ~60 MB RSS) and fast (tens of
microseconds per row), so it never imports scikit-learn, scipy or pandas and never builds a
DataFrame. Each fitted scikit-learn pipeline is exported as plain float64/int arrays in an `.npz`
(no pickle) and re-evaluated here with the same arithmetic scikit-learn uses; the training step
refuses to write models whose compiled probabilities drift more than 1e-5 from `predict_proba`.

Artifact layout (keys of each `.npz`, written by training/export.py):
  format, kind, classes                      format version, evaluator kind (EVALUATOR_KINDS),
                                             class labels
  numeric_features, numeric_fill,            SimpleImputer(median) then StandardScaler
  numeric_mean, numeric_scale
  categorical_features, categorical_fill,    SimpleImputer(most_frequent) then OneHotEncoder;
  categorical_categories                     categories padded with "" to one 2-D array
  logistic: coef, intercept
  forest:   node_feature, node_threshold, node_children, leaf_proba, roots, max_depth
  rbf_svc:  support_vectors, pair_coef, intercept, gamma, calibration_a, calibration_b
"""

from __future__ import annotations

import hashlib
import json
import math
import operator
import zipfile
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from service import native

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
# Above this, math.exp overflows (np.exp would return inf).
_EXP_MAX = math.log(np.finfo(np.float64).max)
# Below this, ||x||^2 and each x.s of the SVM's expanded distance are finite; above it, no
# kernel value exp(-gamma ||x - s||^2) is distinguishable from 0.
_SQUARE_LIMIT = 1e300


# The C one-row evaluators (service/evaluate.c), or None: then one-row predictions use numpy.
_NATIVE = native.module()


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
        self._numeric_params = [
            (name, float(fill), float(mean), float(scale))
            for name, fill, mean, scale in zip(
                self.numeric_features,
                self.numeric_fill,
                self.numeric_mean,
                self.numeric_scale,
                strict=True,
            )
        ]
        expected = set(self.numeric_features) | set(self.categorical_features)
        if expected != set(FEATURES):
            raise ValueError(f"artifact features {sorted(expected)} differ from {list(FEATURES)}")

    def transform(self, rows: Sequence[Mapping[str, object]]) -> np.ndarray:
        # Plain Python floats, one numpy conversion at the end: for a single-row request the
        # per-call overhead of numpy would cost more than the arithmetic.
        encoded = [self.transform_row(row) for row in rows]
        return np.array(encoded, dtype=np.float64).reshape(len(rows), self.n_output)

    def transform_row(self, row: Mapping[str, object]) -> list[float]:
        """One row's encoded features as plain floats. IEEE float64 makes (value - mean) / scale
        here bit-identical to StandardScaler's two in-place steps."""
        values = [0.0] * self.n_output
        for j, (name, fill, mean, scale) in enumerate(self._numeric_params):
            value = row.get(name)
            if type(value) is float and value - value == 0.0:
                # The usual case, a finite float (x - x is NaN for inf and NaN): no conversion.
                values[j] = (value - mean) / scale
                continue
            if value is None or value != value:  # None or NaN: impute
                measured = fill
            else:
                try:
                    measured = float(value)  # type: ignore[arg-type]
                except (TypeError, ValueError):
                    raise ValueError(f"{name}={value!r} is not a number") from None
                if not math.isfinite(measured):
                    if measured != measured:
                        measured = fill
                    else:
                        # scikit-learn's imputer rejects infinity too.
                        raise ValueError(f"{name}={value!r} is not finite")
            values[j] = (measured - mean) / scale
        for k, name in enumerate(self.categorical_features):
            value = row.get(name)
            if type(value) is str:  # the usual case, a known category
                column = self._columns[k].get(value)
                if column is not None:
                    values[column] = 1.0
                    continue
            if _is_missing(value):
                values[self._fill_column[k]] = 1.0
                continue
            try:
                column = self._columns[k].get(value)  # type: ignore[call-overload]
            except TypeError:  # unhashable, e.g. a list
                column = None
            if column is None and isinstance(value, str):
                # A str-based Enum hashes by member name, not by its value: look up the text.
                column = self._columns[k].get(str.__str__(value))
            if column is None:
                known = ", ".join(sorted(self._columns[k]))
                raise ValueError(f"{name}={value!r} is not one of: {known}")
            values[column] = 1.0
        return values

    def native_parameters(
        self,
    ) -> tuple[Sequence[tuple[str, float, float, float]], list[tuple[str, dict[str, int], int]]]:
        """What the C one-row path needs to encode a row as transform_row does: (name, fill,
        mean, scale) per numeric column in order, and (name, {category: column}, fill column)
        per categorical feature. Not copies: native.NativeCall converts them once."""
        categorical = [
            (name, self._columns[k], self._fill_column[k])
            for k, name in enumerate(self.categorical_features)
        ]
        return self._numeric_params, categorical


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
        # Set by each model when the C library is loaded (see predict_proba_one), after its
        # arrays passed the checks above: the C code trusts their shapes and indices.
        self.native: native.NativeCall | None = None

    def predict_proba(self, rows: Sequence[Mapping[str, object]]) -> np.ndarray:
        """Class probabilities, shape (len(rows), len(classes)), columns in `classes` order.

        Rows are keyed by FEATURES with canonical values; None or NaN is imputed as in training.
        Raises ValueError for an unknown category or a non-numeric measurement.
        """
        if len(rows) == 0:
            return np.zeros((0, len(self.classes)), dtype=np.float64)
        if len(rows) == 1:
            return np.array([self.predict_proba_one(rows[0])], dtype=np.float64)
        return self._proba(self._pre.transform(rows))

    def predict_proba_one(self, row: Mapping[str, object]) -> list[float]:
        """One row's class probabilities as plain floats in `classes` order: predict_proba's
        first row, without the array. This is the /predict path, where a few numpy calls on a
        one-row input cost more than the arithmetic (numpy's per-call overhead, and more so
        with the caches cold between requests). So the row goes to the C module when it is
        loaded (service/_native.c: the encoding, then the model's evaluator in
        service/evaluate.c), and otherwise to the Python encoder and a numpy path with as few
        calls as each model can manage (_proba_of_one)."""
        native_path = self.native
        if native_path is not None:
            proba = native_path.row(row)
            if proba is not None:
                return proba
            # Not the usual validated row (an int, an Enum, infinity, an unknown category...):
            # encoded in Python, which converts or raises as documented, then evaluated in C.
            return native_path.call(self._pre.transform_row(row))
        return self._proba_of_one(self._pre.transform_row(row))

    def _native_call(
        self, n_inputs: int, n_outputs: int, arguments: Sequence[object]
    ) -> native.NativeCall | None:
        """The model's C one-row path, over the evaluator of its `kind`, or None without the
        C module."""
        if _NATIVE is None:
            return None
        numeric, categorical = self._pre.native_parameters()
        return native.NativeCall(
            _NATIVE, self.kind, n_inputs, n_outputs, arguments, numeric, categorical
        )

    def predict(self, rows: Sequence[Mapping[str, object]]) -> list[str]:
        """Most probable class label per row."""
        return [self.classes[index] for index in self.predict_proba(rows).argmax(axis=1)]

    def _proba(self, features: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _proba_of_one(self, values: list[float]) -> list[float]:
        """The single-row path over the encoded features; models override it where fewer numpy
        calls are cheaper."""
        one: list[float] = self._proba(np.array([values], dtype=np.float64))[0].tolist()
        return one

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
        self.native = self._native_call(
            self._pre.n_output,
            len(self.classes),
            [
                self._pre.n_output,
                np.ascontiguousarray(self._coef_t.T),
                np.ascontiguousarray(self._intercept),
                len(self.classes),
            ],
        )
        # For the single-row path: one (coefficients, intercept) pair per class, as floats.
        self._class_rows = tuple(
            (tuple(row), float(bias))
            for row, bias in zip(self._coef_t.T.tolist(), self._intercept.tolist(), strict=True)
        )

    def _proba_of_one(self, values: list[float]) -> list[float]:
        # A 3 x 9 product and a softmax: plain Python, no numpy call at all (operator.mul is
        # a C function; float.__mul__, a slot wrapper, costs twice as much per element).
        # Summation order differs from BLAS by rounding only (~1e-16).
        decision = [sum(map(operator.mul, values, row)) + bias for row, bias in self._class_rows]
        top = max(decision)
        exps = [math.exp(value - top) for value in decision]
        total = sum(exps)
        return [value / total for value in exps]

    def _proba(self, features: np.ndarray) -> np.ndarray:
        decision = features @ self._coef_t + self._intercept
        # sklearn.utils.extmath.softmax: shift by the row max, exponentiate, normalise.
        decision -= decision.max(axis=1, keepdims=True)
        np.exp(decision, out=decision)
        decision /= decision.sum(axis=1, keepdims=True)
        return decision


class ForestModel(CompiledModel):
    """Random forest evaluated over all trees at once, without a Python loop over trees or nodes.

    All trees' nodes live in one set of arrays (children are global indices and a leaf points to
    itself). At load time the nodes are renumbered breadth-first so that every node's two
    children are adjacent: the successor of a node is then `first_child + went_right`, one
    addition instead of a select. Walking from the roots is max_depth gather steps over
    (rows x trees), and leaves simply stay put.

    sklearn compares float32 features against float64 thresholds (`x <= t` goes left). For a
    float32 x that is exactly `x <= floor32(t)`, floor32(t) being the largest float32 not above
    t, so thresholds are stored rounded down to float32 and the comparison stays in float32.

    A single row takes another way, with bit vectors over all leaves (QuickScorer, Lucchese et
    al., 2015) held in Python ints; see _proba_of_one.
    """

    kind = "forest"
    # Up to this many rows, the whole-table strategy is faster (measured: 4 rows 2x, 16 rows even).
    table_max_rows = 8

    def __init__(
        self, name: str, title: str, version: str, arrays: Mapping[str, np.ndarray]
    ) -> None:
        super().__init__(name, title, version, arrays)
        feature = np.asarray(arrays["node_feature"], dtype=np.intp)
        threshold = np.asarray(arrays["node_threshold"], dtype=np.float64)
        # children[2 * node] is the left child, children[2 * node + 1] the right one.
        children = np.asarray(arrays["node_children"], dtype=np.intp)
        leaf_proba = np.asarray(arrays["leaf_proba"], dtype=np.float64)
        roots = np.asarray(arrays["roots"], dtype=np.intp)
        self._max_depth = int(arrays["max_depth"])
        n_nodes = feature.shape[0]
        if not (
            n_nodes > 0
            and threshold.shape == (n_nodes,)
            and children.shape == (2 * n_nodes,)
            and leaf_proba.shape == (n_nodes, len(self.classes))
            and roots.ndim == 1
            and roots.size > 0
            and 0 <= self._max_depth <= n_nodes
        ):
            raise ValueError("forest arrays have inconsistent shapes")
        if (
            feature.min() < 0
            or feature.max() >= self._pre.n_output
            or children.min() < 0
            or children.max() >= n_nodes
            or roots.min() < 0
            or roots.max() >= n_nodes
        ):
            raise ValueError("forest node indices are out of range")
        # sklearn's thresholds lie between float32 feature values; the float32 rounding bounds
        # of the single-row path rely on that.
        split = children[0::2] != np.arange(n_nodes)
        if not (np.abs(threshold[split]) < np.finfo(np.float32).max).all():
            raise ValueError("forest thresholds lie outside the float32 range")
        order = self._breadth_first(roots, children[0::2], children[1::2])
        position = np.empty(n_nodes, dtype=np.intp)
        position[order] = np.arange(order.size)
        leaf = children[0::2][order] == order
        n_kept = order.size
        self._n_nodes = n_kept
        self._roots = position[roots]
        self._first_child = np.where(leaf, np.arange(n_kept), position[children[0::2][order]])
        self._feature = np.where(leaf, 0, feature[order])
        floor = threshold[order].astype(np.float32)
        above = floor.astype(np.float64) > threshold[order]
        floor[above] = np.nextafter(floor[above], np.float32(-np.inf))
        # A leaf never goes right, so its successor is itself.
        floor[leaf] = np.inf
        self._threshold32 = floor
        # Pre-divided by the number of trees, class-major so one gather serves every class;
        # sklearn sums then divides, which differs by rounding only (~1e-16).
        self._leaf_proba_t = np.ascontiguousarray((leaf_proba[order] / roots.size).T)
        self._prepare_one_row(feature, threshold, children, leaf_proba, roots)
        self.native = self._native_call(
            self._pre.n_output,
            len(self.classes),
            [
                np.ascontiguousarray(feature, dtype=np.intc),
                np.ascontiguousarray(threshold),
                np.ascontiguousarray(children, dtype=np.intc),
                np.ascontiguousarray(leaf_proba),
                np.ascontiguousarray(roots, dtype=np.intc),
                int(roots.size),
                self._max_depth,
                len(self.classes),
            ],
        )

    def _prepare_one_row(
        self,
        feature: np.ndarray,
        threshold: np.ndarray,
        children: np.ndarray,
        leaf_proba: np.ndarray,
        roots: np.ndarray,
    ) -> None:
        """The single-row path's tables (the node arrays are already proven to be trees).

        Leaves are numbered left to right within each tree, tree after tree, and a set of
        leaves is a Python int with one bit per leaf. A row that goes right at a split rules
        out the leaves under the split's left child. For each feature, the splits on it are
        sorted by threshold, and entry k of its list is the set of leaves still possible once
        the row has gone right at the first k of them.

        sklearn goes right when float32(x) > t. Rounding is monotone, so that is x > b(t), b(t)
        being the largest float64 that still rounds to at most t: the splits hold b(t), and a
        row's values need no float32 conversion.
        """
        left, right = children[0::2].tolist(), children[1::2].tolist()
        features, thresholds = feature.tolist(), _largest_rounding_to_at_most(threshold).tolist()
        leaves: list[int] = []
        splits: list[list[tuple[float, int]]] = [[] for _ in range(self._pre.n_output)]
        tree_starts = 0
        for root in roots.tolist():
            tree_starts |= 1 << len(leaves)
            # Depth first, left before right. (node, first leaf) marks a node whose left
            # subtree has just been numbered: its leaves run from that first leaf up to here.
            pending: list[tuple[int, int]] = [(root, -1)]
            while pending:
                node, first = pending.pop()
                if first >= 0:
                    left_leaves = (1 << len(leaves)) - (1 << first)
                    splits[features[node]].append((thresholds[node], left_leaves))
                elif left[node] == node:
                    leaves.append(node)
                else:
                    pending += [(right[node], -1), (node, len(leaves)), (left[node], -1)]
        self._all_leaves = (1 << len(leaves)) - 1
        self._tree_starts = tree_starts
        self._split_bounds: list[list[float]] = []
        self._possible_leaves: list[list[int]] = []
        for feature_splits in splits:
            feature_splits.sort(key=lambda split: split[0])
            possible = self._all_leaves
            sets = [possible]
            for _, left_leaves in feature_splits:
                possible &= ~left_leaves
                sets.append(possible)
            self._split_bounds.append([bound for bound, _ in feature_splits])
            self._possible_leaves.append(sets)
        self._n_leaves = len(leaves)
        self._leaf_bytes = (len(leaves) + 7) // 8
        self._leaf_proba_by_leaf = np.ascontiguousarray(leaf_proba[leaves].T)
        self._n_trees = float(roots.size)

    def _breadth_first(self, roots: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """Node ids in the new order: each tree breadth-first, a node's children side by side.

        Also proves the arrays describe trees no deeper than max_depth (a cycle or a shared node
        would otherwise make the walk ambiguous).
        """
        left_list, right_list = left.tolist(), right.tolist()
        seen = [False] * len(left_list)
        order: list[int] = []
        for root in roots.tolist():
            if seen[root]:
                raise ValueError("forest nodes do not form separate trees")
            seen[root] = True
            order.append(root)
            level = [root]
            depth = 0
            while level:
                inner = [node for node in level if left_list[node] != node]
                if inner and depth == self._max_depth:
                    raise ValueError(f"a tree is deeper than max_depth={self._max_depth}")
                level = []
                for node in inner:
                    for child in (left_list[node], right_list[node]):
                        if seen[child]:
                            raise ValueError("forest nodes do not form separate trees")
                        seen[child] = True
                    order.append(left_list[node])
                    order.append(right_list[node])
                    level.append(left_list[node])
                    level.append(right_list[node])
                depth += 1
        return np.array(order, dtype=np.intp)

    def _proba_of_one(self, values: list[float]) -> list[float]:
        """Bit-vector evaluation: per feature one bisect and one AND over every tree's leaves,
        then four numpy calls to add up the reached leaves' probabilities (the breadth-first
        walk takes a dozen small ones)."""
        possible = self._all_leaves
        for value, bounds, sets in zip(
            values, self._split_bounds, self._possible_leaves, strict=True
        ):
            # The row goes right exactly at the splits with b(t) < x: the first
            # bisect_left(bounds, x) of them.
            possible &= sets[bisect_left(bounds, value)]
        # In each tree the leaf reached is the leftmost one still possible (every leaf left
        # of it lies under the left child of a split where the row went right). The lowest
        # set bit of each tree's bits, all trees at once: adding 1 at every tree's first leaf
        # to the complement carries through the ruled-out leaves and stops at the first
        # possible one, so the carry never crosses into the next tree.
        reached = possible & ((possible ^ self._all_leaves) + self._tree_starts)
        hit = np.unpackbits(
            np.frombuffer(reached.to_bytes(self._leaf_bytes, "little"), dtype=np.uint8),
            count=self._n_leaves,
            bitorder="little",
        )
        # Summed, then divided by the number of trees, as sklearn does: where every tree says
        # 1.0 the sum is exactly the number of trees and the probability exactly 1 (summing
        # pre-divided 0.01s can give 1.0000000000000004).
        summed: list[float] = self._leaf_proba_by_leaf.dot(hit).tolist()
        return [value / self._n_trees for value in summed]

    def _proba(self, features: np.ndarray) -> np.ndarray:
        # sklearn trees compare float32 features (see the class docstring).
        features = features.astype(np.float32)
        if features.shape[0] <= self.table_max_rows:
            leaves = self._leaves_by_table(features)
        else:
            leaves = self._leaves_by_walk(features)
        # (take/add.reduce: the same work as fancy indexing/sum with less per-call overhead.)
        summed: np.ndarray = np.add.reduce(self._leaf_proba_t.take(leaves, axis=1), axis=2)
        return summed.T

    def _leaves_by_table(self, features: np.ndarray) -> np.ndarray:
        """Few rows: decide every node at once, then follow the resulting successor table.

        A handful of large numpy calls beats max_depth rounds of several small ones when the
        per-call overhead dominates, i.e. for small batches.
        """
        n_rows = features.shape[0]
        # base[r]: where row r's copy of the successor table starts in the flattened table.
        base = (np.arange(n_rows, dtype=np.intp) * self._n_nodes)[:, None]
        step = self._first_child + (features.take(self._feature, axis=1) > self._threshold32)
        step += base
        step = step.reshape(-1)
        node = self._roots + base
        for _ in range(self._max_depth):
            node = step.take(node)
        return node - base

    def _leaves_by_walk(self, features: np.ndarray) -> np.ndarray:
        """Many rows: walk (rows x trees) positions down max_depth levels, touching only them."""
        n_rows, n_features = features.shape
        flat = features.reshape(-1)
        row_base = (np.arange(n_rows, dtype=np.intp) * n_features)[:, None]
        node = np.broadcast_to(self._roots, (n_rows, self._roots.size))
        for _ in range(self._max_depth):
            went_right = flat.take(row_base + self._feature.take(node)) > self._threshold32.take(
                node
            )
            node = self._first_child.take(node) + went_right
        return node


def _largest_rounding_to_at_most(threshold: np.ndarray) -> np.ndarray:
    """Per threshold t, the largest float64 x with float32(x) <= t (round to nearest even)."""
    below = threshold.astype(np.float32)
    below = np.where(below > threshold, np.nextafter(below, np.float32(-np.inf)), below)
    above = np.nextafter(below, np.float32(np.inf))
    # Exact: the sum of two float32 values fits a float64's significand.
    middle = (below.astype(np.float64) + above.astype(np.float64)) / 2
    # The midpoint itself rounds to the neighbour with the even significand.
    bound: np.ndarray = np.where(
        middle.astype(np.float32) <= threshold, middle, np.nextafter(middle, -np.inf)
    )
    return bound


class SvmModel(CompiledModel):
    """RBF SVC wrapped in CalibratedClassifierCV(method="sigmoid", ensemble=False).

    Reproduces: one-vs-one decision values, SVC's "ovr" decision transform (votes plus confidences
    squashed into (-1/3, 1/3)), one sigmoid per class, and the normalisation of the result.
    """

    kind = "rbf_svc"

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
            raise ValueError("rbf_svc arrays have inconsistent shapes")
        pairs = [(i, j) for i in range(n_classes) for j in range(i + 1, n_classes)]
        first = np.zeros((n_pairs, n_classes))
        second = np.zeros((n_pairs, n_classes))
        first[np.arange(n_pairs), [i for i, _ in pairs]] = 1.0
        second[np.arange(n_pairs), [j for _, j in pairs]] = 1.0
        # sklearn's _ovr_decision_function with predictions = (ovo < 0), confidences = -ovo:
        # pair (i, j) votes for j when its value is negative, otherwise for i, and adds its value
        # to class i's confidence and subtracts it from class j's. As matrices: a vote table and
        # a confidence map, the latter folded into one matmul together with the ovo values.
        self._vote_base = first.sum(axis=0)
        self._vote_swing = second - first
        confidence_map = first - second
        self._n_pairs = n_pairs
        self._kernel_weights = np.hstack([self._pair_coef, self._pair_coef @ confidence_map])
        self._kernel_bias = np.concatenate([self._intercept, self._intercept @ confidence_map])
        # ||x - s||^2 = ||x||^2 + ||s||^2 - 2 x.s, with the support-vector terms precomputed.
        self._support_t2 = np.ascontiguousarray(2.0 * self._support.T)
        self._support_sq = np.einsum("ij,ij->i", self._support, self._support)
        # Single-row path: -gamma * ||x - s||^2 = 2 gamma x.s - gamma ||x||^2 - gamma ||s||^2,
        # so with x extended by (||x||^2, 1) one product gives every support vector's exponent:
        # the matrix's rows are 2 gamma s, then -gamma, then -gamma ||s||^2. Its extra last
        # column is all zeros, so that kernel value is exp(0) = 1 and the matching last row of
        # the weights adds the bias. Three numpy calls for the kernel and the scores (np.dot:
        # for a vector and a small matrix it has a fraction of matmul's fixed cost); the few
        # per-class scalars after them are plain Python.
        n_support, n_features = self._support.shape
        exponent = np.zeros((n_features + 2, n_support + 1))
        exponent[:n_features, :n_support] = 2.0 * self._gamma * self._support.T
        exponent[n_features, :n_support] = -self._gamma
        exponent[n_features + 1, :n_support] = -self._gamma * self._support_sq
        self._exponent_of_one = exponent
        self._weights_of_one = np.vstack([self._kernel_weights, self._kernel_bias])
        self._pairs = tuple(pairs)
        self._calibration = tuple(zip(self._a.tolist(), self._b.tolist(), strict=True))
        self.native = self._native_call(
            n_features,
            n_classes,
            [
                n_features,
                np.ascontiguousarray(self._support),
                n_support,
                np.ascontiguousarray(self._pair_coef),
                np.ascontiguousarray(self._intercept),
                self._gamma,
                np.ascontiguousarray(self._a),
                np.ascontiguousarray(self._b),
                n_classes,
                np.zeros(n_support),  # scratch: kernel values
                np.zeros(n_pairs),  # scratch: one-vs-one values
            ],
        )

    def _decision_ovr(self, features: np.ndarray) -> np.ndarray:
        sq_dist = features @ self._support_t2
        sq_dist -= self._support_sq
        sq_dist -= np.einsum("ij,ij->i", features, features)[:, None]
        # sq_dist now holds -||x - s||^2; rounding can make it slightly positive for x == s.
        np.minimum(sq_dist, 0.0, out=sq_dist)
        kernel = np.exp(self._gamma * sq_dist)
        scores = kernel @ self._kernel_weights + self._kernel_bias
        ovo, confidences = scores[:, : self._n_pairs], scores[:, self._n_pairs :]
        votes = self._vote_base + (ovo < 0) @ self._vote_swing
        decision: np.ndarray = votes + confidences / (3.0 * np.abs(confidences) + 3.0)
        return decision

    def _proba_of_one(self, values: list[float]) -> list[float]:
        """The same arithmetic as _decision_ovr and _proba, for one row.

        The squared distance is expanded as in _decision_ovr; unlike there, a rounding that
        leaves an exponent slightly above 0 is not clamped, since exp then errs by the same
        ~1e-16 as it would below 0.
        """
        square = sum(map(operator.mul, values, values))
        if square < _SQUARE_LIMIT:
            kernel = np.exp(np.dot(np.array([*values, square, 1.0]), self._exponent_of_one))
            scores = np.dot(kernel, self._weights_of_one).tolist()
        else:
            # An absurd input (||x||^2 may even be inf): every exact kernel value underflows
            # to 0, leaving the biases; the expanded form could give inf - inf instead.
            scores = self._kernel_bias.tolist()
        n_pairs = self._n_pairs
        votes = [0.0] * len(self._calibration)
        for pair, (i, j) in enumerate(self._pairs):
            votes[j if scores[pair] < 0 else i] += 1.0
        proba = []
        for k, (a, b) in enumerate(self._calibration):
            confidence = scores[n_pairs + k]
            exponent = a * (votes[k] + confidence / (3.0 * abs(confidence) + 3.0)) + b
            # math.exp raises where np.exp gives inf, and 1 / (1 + inf) is 0.
            proba.append(1.0 / (1.0 + math.exp(exponent)) if exponent < _EXP_MAX else 0.0)
        total = sum(proba)
        if total == 0.0:
            return [1.0 / len(proba)] * len(proba)
        return [value / total for value in proba]

    def _proba(self, features: np.ndarray) -> np.ndarray:
        decision = self._decision_ovr(features)
        # _SigmoidCalibration.predict: expit(-(a * f + b)), then CalibratedClassifierCV divides
        # by the row sum, falling back to uniform when every calibrator says 0.
        decision *= self._a
        decision += self._b
        proba: np.ndarray = 1.0 / (1.0 + np.exp(decision))
        total = proba.sum(axis=1, keepdims=True)
        if total.all():
            proba /= total
            return proba
        uniform = np.full_like(proba, 1.0 / proba.shape[1])
        normalised: np.ndarray = np.divide(proba, total, out=uniform, where=total != 0)
        return normalised


# Keyed by the artifact's "kind", which is the ModelSpec.compiler that wrote it.
EVALUATOR_KINDS: dict[str, type[CompiledModel]] = {
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
        if kind not in EVALUATOR_KINDS:
            raise ValueError(
                f"unknown model kind {kind!r}, not one of {', '.join(EVALUATOR_KINDS)} "
                "(written by older code?); retrain: python -m training"
            )
        model = EVALUATOR_KINDS[kind](name, title, version, arrays)
        if list(model.classes) != list(entry.get("classes", model.classes)):
            raise ValueError(f"classes {list(model.classes)} differ from the manifest's")
    except (KeyError, ValueError, TypeError, IndexError) as error:
        raise ModelLoadError(f"{path} is not a valid compiled model: {error}") from error
    return model


def load_models(models_dir: Path, required: Iterable[str] = ()) -> dict[str, CompiledModel]:
    """Loads every model the manifest lists; ModelLoadError when one of `required` is absent."""
    manifest = load_manifest(models_dir)
    entries = manifest["models"]
    missing = [name for name in required if name not in entries]
    if missing:
        raise ModelLoadError(
            f"{Path(models_dir) / MANIFEST_FILE} lists no model {', '.join(missing)}; "
            "retrain: python -m training"
        )
    return {name: load_model(models_dir, name, entries[name]) for name in entries}
