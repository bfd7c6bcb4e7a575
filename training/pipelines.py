"""The three scikit-learn pipelines: shared preprocessing, then one classifier each.

The compiled evaluator in service/inference.py mirrors exactly these steps, so a change here
needs a matching change in training/export.py and service/inference.py (the parity check in
training/train.py fails the run otherwise).
"""

from __future__ import annotations

from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import SVC

from training.dataset import CATEGORICAL_FEATURES, CATEGORIES, NUMERIC_FEATURES

MODEL_TITLES = {
    "lr": "Logistic regression",
    "rf": "Random forest",
    "svm": "Support vector machine (RBF, sigmoid-calibrated)",
}
DEFAULT_MODEL = "lr"


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


def build_pipelines(seed: int, forest_trees: int, cv_folds: int) -> dict[str, Pipeline]:
    """Unfitted pipelines keyed by model name ("lr", "rf", "svm")."""
    # SVC(probability=True) is deprecated in scikit-learn 1.9. Sigmoid calibration over
    # cross-validated decision values gives the probabilities instead; ensemble=False keeps a
    # single SVC fitted on all training rows, so there is one SVC to export.
    # The calibrators read SVC.decision_function, so decision_function_shape matters: "ovr" (the
    # default) gives one column per class, as calibration assumes. With three classes "ovo" also
    # has three columns (one per pair) and would calibrate silently wrong, so training/export.py
    # refuses it. break_ties only changes SVC.predict, never decision_function: irrelevant here.
    svm = CalibratedClassifierCV(
        SVC(kernel="rbf", C=1.0, gamma="scale", random_state=seed),
        method="sigmoid",
        cv=StratifiedKFold(n_splits=cv_folds, shuffle=True, random_state=seed),
        ensemble=False,
    )
    models = {
        "lr": LogisticRegression(C=1.0, max_iter=2000, random_state=seed),
        "rf": RandomForestClassifier(n_estimators=forest_trees, random_state=seed, n_jobs=1),
        "svm": svm,
    }
    return {
        name: Pipeline([("preprocess", build_preprocessor()), ("model", model)])
        for name, model in models.items()
    }
