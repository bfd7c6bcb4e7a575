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


@pytest.mark.parametrize(
    ("settings", "readme"), [(MatrixSettings, "matrix"), (ClusterSettings, "cluster")]
)
def test_the_readme_table_lists_every_variable(settings: type[BaseSettings], readme: str) -> None:
    text = (PROJECT_ROOT / readme / "README.md").read_text(encoding="utf-8")
    documented = re.findall(r"^\| `([A-Z_]+)` \|", text, re.MULTILINE)
    assert sorted(documented) == sorted(env_names(settings))


def test_the_stack_readme_documents_the_login_variables() -> None:
    # Its knobs table groups them with the stack file's variables.
    text = (PROJECT_ROOT / "stack" / "README.md").read_text(encoding="utf-8")
    assert all(f"`{name}`" in text for name in env_names(LoginSettings))


@pytest.mark.parametrize(
    ("main", "argv", "name", "value"),
    [
        (matrix_main.main, ["--quick", "--no-stack-up"], "MATRIX_LOADGEN_SAMPLE_INTERVAL", "often"),
        (cluster_main.main, ["env"], "CLUSTER_SUBNET", "nonsense"),
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
