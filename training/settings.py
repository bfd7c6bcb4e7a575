"""Training configuration: one pydantic-settings object; the command-line options override it."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings

from stack.env import component_config, env_error_text

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "PENGUIN_TRAINING_"


class TrainingSettings(BaseSettings):
    """Everything a training run depends on; two runs with equal settings give equal models.

    Environment: PENGUIN_TRAINING_<FIELD>, listed in training/README.md.
    """

    model_config = component_config(ENV_PREFIX)

    data: Path = PROJECT_ROOT / "data/penguins_size.csv"
    output: Path = PROJECT_ROOT / "models"
    seed: int = 42
    # A quarter of the rows is held out: ~86 rows, enough for accuracy to mean something.
    test_size: float = Field(default=0.25, ge=0.05, le=0.5)
    cv_folds: int = Field(default=5, ge=2)
    # 100 trees keep the compiled forest at tens of microseconds per row.
    forest_trees: int = Field(default=100, ge=1)
    # Compiled probabilities must match scikit-learn's predict_proba this closely on every row.
    parity_tolerance: float = 1e-5


def settings_from_env() -> TrainingSettings:
    """Settings from PENGUIN_TRAINING_*; ValueError naming the variable for malformed values."""
    try:
        return TrainingSettings()
    except ValidationError as error:
        raise ValueError(env_error_text(error, TrainingSettings)) from None
