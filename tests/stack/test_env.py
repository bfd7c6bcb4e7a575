"""stack/env.py: the environment names every component's settings class reads, each listed in
that component's README, and the error that names the variable at fault."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings

from cluster import __main__ as cluster_main
from cluster.settings import ClusterSettings
from matrix import __main__ as matrix_main
from matrix.config import MatrixSettings
from stack.credentials import LoginSettings
from stack.env import component_config, env_error_text, env_names
from tests.support import PROJECT_ROOT
from training import cli as training_cli
from training.settings import TrainingSettings


class Example(BaseSettings):
    model_config = component_config("EXAMPLE_")

    port: int = 1
    shared: int = Field(2, validation_alias="SHARED_PORT")


def test_names_are_the_prefixed_field_or_its_alias() -> None:
    assert env_names(Example) == ["EXAMPLE_PORT", "SHARED_PORT"]


def test_the_error_names_each_bad_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXAMPLE_PORT", "x")
    monkeypatch.setenv("SHARED_PORT", "y")
    with pytest.raises(ValidationError) as caught:
        Example()
    text = env_error_text(caught.value, Example)
    assert text.startswith("bad setting: EXAMPLE_PORT: Input should be a valid integer")
    assert "; SHARED_PORT: Input should be a valid integer" in text


def test_empty_is_unset_and_options_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXAMPLE_PORT", "")
    monkeypatch.setenv("SHARED_PORT", "7")
    assert Example().port == 1
    assert Example(shared=9).shared == 9


def _table_variables(readme: str) -> set[str]:
    """The variables a README's table rows are about: the backticked names of the first cell
    of each row that has any."""
    text = (PROJECT_ROOT / readme / "README.md").read_text(encoding="utf-8")
    names: set[str] = set()
    for row in re.findall(r"^\|.*\|$", text, re.MULTILINE):
        for cell in row.split("|"):
            found = re.findall(r"`([A-Z][A-Z0-9_]+)`", cell)
            if found:
                names.update(found)
                break
    return names


@pytest.mark.parametrize(
    ("settings", "readme"),
    [(MatrixSettings, "matrix"), (ClusterSettings, "cluster"), (TrainingSettings, "training")],
)
def test_the_readme_table_lists_every_variable(settings: type[BaseSettings], readme: str) -> None:
    documented = _table_variables(readme)
    assert set(env_names(settings)) <= documented
    # And none that the class no longer reads, of the names that carry its prefix.
    prefix = settings.model_config.get("env_prefix", "")
    assert {name for name in documented if name.startswith(prefix)} <= set(env_names(settings))


def test_the_stack_readme_documents_the_login_variables() -> None:
    # Its knobs table groups them with the stack file's variables.
    text = (PROJECT_ROOT / "stack" / "README.md").read_text(encoding="utf-8")
    assert all(f"`{name}`" in text for name in env_names(LoginSettings))


@pytest.mark.parametrize(
    ("main", "argv", "name", "value"),
    [
        (matrix_main.main, ["--quick", "--no-stack-up"], "MATRIX_LOADGEN_SAMPLE_INTERVAL", "often"),
        (cluster_main.main, ["env"], "CLUSTER_SUBNET", "nonsense"),
        (training_cli.main, ["--help"], "PENGUIN_TRAINING_SEED", "x"),
    ],
)
def test_a_cli_refuses_a_bad_value_before_it_acts(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    main: Callable[[list[str]], int],
    argv: list[str],
    name: str,
    value: str,
) -> None:
    monkeypatch.setenv(name, value)
    assert main(argv) == 2
    assert f"error: bad setting: {name}: " in capsys.readouterr().err
