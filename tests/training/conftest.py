"""One real training run per session, into a temporary directory (never the repo's models/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.settings import TrainingSettings
from training.train import TrainingResult, train


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainingResult:
    output = tmp_path_factory.mktemp("training") / "models"
    return train(TrainingSettings(output=output), log=lambda _message: None)


@pytest.fixture(scope="session")
def models_dir(trained: TrainingResult) -> Path:
    return trained.output
