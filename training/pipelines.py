"""The scikit-learn pipelines: shared preprocessing, then each registered model's estimator.

The model set itself (names, titles, estimator factories, compilers) is service/registry.py. The
compiled evaluator in service/inference.py mirrors exactly these steps, so a change here needs a
matching change in training/export.py and service/inference.py (the parity check in
training/train.py fails the run otherwise).
"""

from __future__ import annotations

from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from service.registry import MODELS, EstimatorOptions, ModelRegistry
from training.dataset import CATEGORICAL_FEATURES, CATEGORIES, NUMERIC_FEATURES
from training.export import check_compilable


def build_preprocessor() -> ColumnTransformer:
    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="most_frequent")),
            # Fixed category lists, so every model has the same columns whatever the split, and
            # an unknown value is an error rather than a silent all-zero encoding.
            (
                "onehot",
                OneHotEncoder(
                    categories=[list(CATEGORIES[name]) for name in CATEGORICAL_FEATURES],
                    handle_unknown="error",
                    sparse_output=False,
                ),
            ),
        ]
    )
    return ColumnTransformer(
        [
            ("numeric", numeric, list(NUMERIC_FEATURES)),
            ("categorical", categorical, list(CATEGORICAL_FEATURES)),
        ],
        remainder="drop",
        sparse_threshold=0.0,
    )


def build_pipelines(
    options: EstimatorOptions, registry: ModelRegistry = MODELS
) -> dict[str, Pipeline]:
    """Unfitted pipelines keyed by model name, in registry order.

    Raises TypeError before anything is fitted when a model's estimator has no numpy compiler.
    """
    pipelines = {}
    for spec in registry:
        estimator = spec.build_estimator(options)
        check_compilable(spec, estimator)
        pipelines[spec.name] = Pipeline(
            [("preprocess", build_preprocessor()), ("model", estimator)]
        )
    return pipelines
