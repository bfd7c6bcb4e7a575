"""Loads and checks data/penguins_size.csv for training."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from service.inference import FEATURES
from training.errors import DatasetError

TARGET = "species"
NUMERIC_FEATURES = ("culmen_length_mm", "culmen_depth_mm", "flipper_length_mm", "body_mass_g")
CATEGORICAL_FEATURES = ("island", "sex")
CATEGORIES = {"island": ("Biscoe", "Dream", "Torgersen"), "sex": ("FEMALE", "MALE")}
CLASSES = ("Adelie", "Chinstrap", "Gentoo")
UNITS = {
    "culmen_length_mm": "mm",
    "culmen_depth_mm": "mm",
    "flipper_length_mm": "mm",
    "body_mass_g": "g",
}


@dataclass(frozen=True)
class Dataset:
    frame: pd.DataFrame  # every row of the file, FEATURES + TARGET, canonical values
    sha256: str
    path: Path

    @property
    def features(self) -> pd.DataFrame:
        return self.frame[list(FEATURES)]

    @property
    def target(self) -> np.ndarray:
        return self.frame[TARGET].to_numpy(dtype=object)

    def trainable(self) -> Dataset:
        """Rows with at least one body measurement: a row with none carries no signal."""
        keep = self.frame[list(NUMERIC_FEATURES)].notna().any(axis=1)
        return Dataset(self.frame[keep].reset_index(drop=True), self.sha256, self.path)

    def records(self) -> list[dict[str, object]]:
        """Rows as the service sees them: FEATURES keys, None for missing values."""
        rows = []
        for values in self.features.itertuples(index=False, name=None):
            rows.append(
                {
                    name: (None if pd.isna(value) else value)
                    for name, value in zip(FEATURES, values, strict=True)
                }
            )
        return rows


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_dataset(path: Path) -> Dataset:
    """Reads and validates the CSV; raises DatasetError with the reason."""
    if not path.is_file():
        raise DatasetError(f"data file {path} does not exist or is not a file")
    try:
        frame = pd.read_csv(path, na_values=["NA", "", "."], keep_default_na=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise DatasetError(f"cannot read {path}: {error}") from error
    missing = [name for name in (*FEATURES, TARGET) if name not in frame.columns]
    if missing:
        raise DatasetError(f"{path} lacks the column(s) {', '.join(missing)}")
    frame = frame[[*FEATURES, TARGET]].copy()
    for name in NUMERIC_FEATURES:
        try:
            frame[name] = pd.to_numeric(frame[name], errors="raise").astype(np.float64)
        except (ValueError, TypeError) as error:
            raise DatasetError(f"{path}: column {name} is not numeric: {error}") from error
    # object dtype with np.nan for missing, which is what SimpleImputer expects for strings.
    for name in (*CATEGORICAL_FEATURES, TARGET):
        column = frame[name].astype(object).where(frame[name].notna(), np.nan)
        frame[name] = column
        allowed = CATEGORIES.get(name, CLASSES)
        bad = sorted({str(v) for v in column.dropna() if v not in allowed})
        if bad:
            raise DatasetError(f"{path}: column {name} has unexpected values {bad}")
    if frame[TARGET].isna().any():
        raise DatasetError(f"{path}: some rows have no species")
    if len(frame) < 50:
        raise DatasetError(f"{path}: only {len(frame)} rows")
    return Dataset(frame=frame, sha256=file_sha256(path), path=path)
