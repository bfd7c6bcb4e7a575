"""What every component's settings class has in common: how it reads the environment, the
variable names it reads, and how a bad value is reported (one line per value, named by the
variable the user set)."""

from __future__ import annotations

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


def component_config(prefix: str) -> SettingsConfigDict:
    """Variables PREFIX+FIELD (or the field's alias, for a name shared with the stack scripts);
    options override them by field name; an empty variable counts as unset."""
    return SettingsConfigDict(
        env_prefix=prefix,
        extra="ignore",
        frozen=True,
        populate_by_name=True,
        env_ignore_empty=True,
    )


def env_names(settings: type[BaseSettings]) -> list[str]:
    """Every environment variable `settings` reads, in field order (the README tables list them)."""
    prefix = settings.model_config.get("env_prefix", "")
    return [
        field.validation_alias if isinstance(field.validation_alias, str) else prefix + name.upper()
        for name, field in settings.model_fields.items()
    ]


def env_error_text(error: ValidationError, settings: type[BaseSettings]) -> str:
    """'bad setting: NAME: fault; ...', NAME the variable of the field at fault."""
    names = dict(zip(settings.model_fields, env_names(settings), strict=True))
    problems = []
    for item in error.errors(include_url=False):
        where = str(item["loc"][0]) if item["loc"] else "(settings)"
        problems.append(f"{names.get(where, where)}: {item['msg']}")
    return "bad setting: " + "; ".join(problems)
