"""Freshly trained models for the evaluator tests (the repo's models/ may be stale or absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.settings import TrainingSettings
from training.train import train


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("inference") / "models"
    return train(TrainingSettings(output=output), log=lambda _message: None).output
