"""Trains the tutorial's model from the penguins CSV and pickles it (run at image build time).

The usual tutorial pipeline: pandas reads the CSV, incomplete rows are dropped, a
ColumnTransformer one-hot encodes the two categorical columns and scales the numeric ones, and a
logistic regression is fitted on every row.

    python train.py data/penguins_size.csv model.pkl
"""

import pickle
import sys

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

NUMERIC = ["culmen_length_mm", "culmen_depth_mm", "flipper_length_mm", "body_mass_g"]
CATEGORICAL = ["island", "sex"]


def train(csv_path: str) -> Pipeline:
    frame = pd.read_csv(csv_path).dropna()
    # One row of the data set has sex "."; a tutorial drops what it does not recognise.
    frame = frame[frame["sex"].isin(["MALE", "FEMALE"])]
    model = Pipeline(
        [
            (
                "prepare",
                ColumnTransformer(
                    [
                        ("numeric", StandardScaler(), NUMERIC),
                        ("categorical", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
                    ]
                ),
            ),
            ("classify", LogisticRegression(max_iter=1000)),
        ]
    )
    model.fit(frame[NUMERIC + CATEGORICAL], frame["species"])
    return model


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        sys.exit("usage: python train.py PENGUINS_CSV MODEL_PKL")
    csv_path, model_path = argv
    model = train(csv_path)
    with open(model_path, "wb") as handle:
        pickle.dump(model, handle)
    print(f"trained on {csv_path}, wrote {model_path}")


if __name__ == "__main__":
    main(sys.argv[1:])
