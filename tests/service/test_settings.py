"""ServiceSettings reads PENGUIN_* variables and refuses bad values."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import PROJECT_ROOT, ServiceSettings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "MODELS_DIR",
        "DEFAULT_MODEL",
        "MAX_BATCH_SIZE",
        "BIND",
        "WORKERS",
        "ACCESS_LOG",
        "BACKLOG",
    ):
        monkeypatch.delenv(f"PENGUIN_{name}", raising=False)
    settings = ServiceSettings()
    assert settings.models_dir == PROJECT_ROOT / "models"
    assert settings.default_model == "lr"
    assert settings.max_batch_size == 1000
    assert settings.bind == "127.0.0.1:8000"
    assert settings.workers is None
    assert settings.access_log is False
    # Nginx's upstream keepalive_timeout defaults to 60 s; ours must be longer.
    assert settings.keepalive > 60
    # The stack's somaxconn for the api container matches (stack/docker-stack.yml).
    assert settings.backlog == 4096


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PENGUIN_MODELS_DIR", str(tmp_path))
    monkeypatch.setenv("PENGUIN_DEFAULT_MODEL", "svm")
    monkeypatch.setenv("PENGUIN_MAX_BATCH_SIZE", "5")
    monkeypatch.setenv("PENGUIN_MAX_BODY_BYTES", "4096")
    monkeypatch.setenv("PENGUIN_WORKERS", "3")
    monkeypatch.setenv("PENGUIN_ACCESS_LOG", "true")
    monkeypatch.setenv("PENGUIN_BIND", "0.0.0.0:9000")
    settings = ServiceSettings()
    assert settings.models_dir == tmp_path
    assert settings.default_model == "svm"
    assert settings.max_batch_size == 5
    assert settings.max_body_bytes == 4096
    assert settings.workers == 3
    assert settings.access_log is True
    assert settings.bind == "0.0.0.0:9000"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DEFAULT_MODEL", "xgboost"),
        ("MAX_BATCH_SIZE", "0"),
        ("MAX_BATCH_SIZE", "many"),
        ("WORKERS", "0"),
        ("LOG_LEVEL", "chatty"),
        ("MAX_BODY_BYTES", "10"),
        ("BACKLOG", "0"),
    ],
)
def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(f"PENGUIN_{name}", value)
    with pytest.raises(ValidationError, match=name.lower()):
        ServiceSettings()


def test_empty_variables_mean_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PENGUIN_WORKERS", "")
    monkeypatch.setenv("PENGUIN_MAX_BATCH_SIZE", "")
    settings = ServiceSettings()
    assert settings.workers is None
    assert settings.max_batch_size == 1000
