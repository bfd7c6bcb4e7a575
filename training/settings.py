"""Training configuration: environment defaults that the command-line options override."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "PENGUIN_TRAINING_"


def _env(name: str, default: str) -> str:
    return os.environ.get(ENV_PREFIX + name, default)


@dataclass(frozen=True)
class TrainingSettings:
    """Everything a training run depends on; two runs with equal settings give equal models.

    Environment: PENGUIN_TRAINING_DATA, PENGUIN_TRAINING_OUTPUT, PENGUIN_TRAINING_SEED,
    PENGUIN_TRAINING_TEST_SIZE, PENGUIN_TRAINING_CV_FOLDS, PENGUIN_TRAINING_FOREST_TREES.
    """

    data: Path = field(
        default_factory=lambda: Path(_env("DATA", str(PROJECT_ROOT / "data/penguins_size.csv")))
    )
    output: Path = field(default_factory=lambda: Path(_env("OUTPUT", str(PROJECT_ROOT / "models"))))
    seed: int = field(default_factory=lambda: int(_env("SEED", "42")))
    # A quarter of the rows is held out: ~86 rows, enough for accuracy to mean something.
    test_size: float = field(default_factory=lambda: float(_env("TEST_SIZE", "0.25")))
    cv_folds: int = field(default_factory=lambda: int(_env("CV_FOLDS", "5")))
    # 100 trees keep the compiled forest at tens of microseconds per row.
    forest_trees: int = field(default_factory=lambda: int(_env("FOREST_TREES", "100")))
    # Compiled probabilities must match scikit-learn's predict_proba this closely on every row.
    parity_tolerance: float = 1e-5

    def __post_init__(self) -> None:
        if not 0.05 <= self.test_size <= 0.5:
            raise ValueError(f"test size must be within [0.05, 0.5], got {self.test_size}")
        if self.cv_folds < 2:
            raise ValueError(f"cross-validation needs at least 2 folds, got {self.cv_folds}")
        if self.forest_trees < 1:
            raise ValueError(f"the forest needs at least one tree, got {self.forest_trees}")


def settings_from_env() -> TrainingSettings:
    """Settings from PENGUIN_TRAINING_* with a clear error for malformed values."""
    try:
        return TrainingSettings()
    except ValueError as error:
        raise ValueError(f"bad {ENV_PREFIX}* environment value: {error}") from error
