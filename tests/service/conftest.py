"""Fixtures for the service tests: the real trained models and an app built on fakes."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest

from service.registry import MODELS
from tests.support import PROJECT_ROOT, require

CLASSES = ("Adelie", "Chinstrap", "Gentoo")


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """models/ trained like scripts/serve.sh does it (ensure_models); skipped when impossible."""
    manifest = PROJECT_ROOT / "models" / "manifest.json"
    if not manifest.exists():
        result = subprocess.run(
            ["bash", "-c", "source scripts/lib/common.sh && ensure_models"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        require(
            result.returncode == 0 and manifest.exists(),
            f"trained models are missing and training failed: {result.stderr[-500:]}",
        )
    return manifest.parent


class FakeModel:
    """Stands in for service.inference.CompiledModel in routing tests: fixed, known output."""

    def __init__(self, name: str, proba: Sequence[float] = (0.2, 0.3, 0.5)) -> None:
        self.name = name
        self.title = f"Fake {name}"
        self.version = f"{name}-test-1"
        self.classes = CLASSES
        self.proba = np.asarray(proba, dtype=np.float64)
        self.calls: list[list[Mapping[str, object]]] = []

    def predict_proba(self, rows: Sequence[Mapping[str, object]]) -> np.ndarray:
        self.calls.append(list(rows))
        return np.tile(self.proba, (len(rows), 1))

    def predict_proba_one(self, row: Mapping[str, object]) -> list[float]:
        self.calls.append([row])
        return list(self.proba.tolist())


@pytest.fixture
def fake_models() -> dict[str, FakeModel]:
    return {name: FakeModel(name) for name in MODELS.names}
