"""MatrixSettings: defaults, the environment's names (MATRIX_* and the stack's shared ones), the
options on top, and a clear error naming the variable for a bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from matrix.config import PROJECT_ROOT, MatrixSettings, MatrixSettingsError, load_settings
from tests.support import unset_settings_env


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    unset_settings_env(monkeypatch, MatrixSettings)


def test_defaults() -> None:
    settings = load_settings()
    assert settings.stack_name == "penguins"
    assert settings.base_url == "http://127.0.0.1:8000"
    assert settings.locust_url == "http://127.0.0.1:8089"
    assert settings.prometheus_url == "http://127.0.0.1:9090"
    assert settings.results_dir == PROJECT_ROOT / "results"
    assert settings.docker_stats_interval == 2.0
    assert settings.loadgen_sample_interval == 1.0
    assert settings.stack_target_url == "http://nginx:8000"


def test_every_documented_variable_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    values = {
        "STACK_NAME": "lab",
        "NGINX_PORT": "8123",
        "LOCUST_WEB_PORT": "8124",
        "PROMETHEUS_PORT": "8125",
        "MATRIX_RESULTS_DIR": str(tmp_path),
        "MATRIX_DOCKER_STATS_INTERVAL": "0.5",
        "MATRIX_LOADGEN_SAMPLE_INTERVAL": "0.25",
        "MATRIX_STACK_TARGET_URL": "http://nginx:9000",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.stack_name == "lab"
    assert settings.base_url == "http://127.0.0.1:8123"
    assert settings.locust_url == "http://127.0.0.1:8124"
    assert settings.prometheus_url == "http://127.0.0.1:8125"
    assert settings.results_dir == tmp_path
    assert settings.docker_stats_interval == 0.5
    assert settings.loadgen_sample_interval == 0.25
    assert settings.stack_target_url == "http://nginx:9000"
    monkeypatch.setenv("MATRIX_BASE_URL", "http://10.213.0.11:8000/")
    monkeypatch.setenv("MATRIX_PROMETHEUS_URL", "http://10.213.0.11:9090")
    settings = load_settings()
    assert settings.base_url == "http://10.213.0.11:8000"
    assert settings.prometheus_url == "http://10.213.0.11:9090"


def test_options_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACK_NAME", "from-env")
    monkeypatch.setenv("NGINX_PORT", "8123")
    settings = load_settings(stack_name="from-option", nginx_port=8200)
    assert settings.stack_name == "from-option" and settings.nginx_port == 8200


def test_an_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NGINX_PORT", "")
    assert load_settings().nginx_port == 8000


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("NGINX_PORT", "eighty"),
        ("NGINX_PORT", "70000"),
        ("MATRIX_DOCKER_STATS_INTERVAL", "0"),
        ("PROMETHEUS_PORT", "x"),
    ],
)
def test_a_bad_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(MatrixSettingsError, match=f"bad setting: {name}: "):
        load_settings()
