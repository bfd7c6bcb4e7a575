"""The lab's UI login: one user and password per stack for Locust's web UI and Prometheus.

scripts/stack_up.sh creates them on a stack's first deploy (random, printed once) through
`python -m stack.ctl ui-credentials STACK` and keeps them in a file only the user can read,
~/.config/penguin-lab/STACK.login (PENGUIN_LAB_CREDENTIALS_DIR moves the folder). It hands them
to the stack as Swarm secrets, never through an image or the stack file. Bring your own by
setting LAB_UI_PASSWORD (and LAB_UI_USER) before stack_up.sh: they then replace the file's.

Code that drives a stack's UIs (the matrix runner, tests) calls `lab_ui_credentials(stack)` and
sends `credentials.auth` (requests, docker SDK style) or `credentials.header()` (urllib).
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings

from stack.env import component_config

DIR_ENV = "PENGUIN_LAB_CREDENTIALS_DIR"
USER_ENV = "LAB_UI_USER"
PASSWORD_ENV = "LAB_UI_PASSWORD"
DEFAULT_USER = "penguin"
DEFAULT_DIR = Path("~/.config/penguin-lab")
SUFFIX = ".login"
# 24 random bytes: 32 URL-safe characters, nothing a shell or a YAML file would mangle.
PASSWORD_BYTES = 24


class LoginSettings(BaseSettings):
    """The environment of the UI login (stack/README.md's knobs). Every field names its variable,
    so a mapping given instead of the environment (tests, a subprocess's env) reads the same."""

    model_config = component_config("LAB_UI_")

    user: str = Field("", validation_alias=USER_ENV)
    password: str = Field("", validation_alias=PASSWORD_ENV)
    directory: Path = Field(DEFAULT_DIR, validation_alias=DIR_ENV)

    @classmethod
    def read(cls, env: Mapping[str, str] | None = None) -> LoginSettings:
        """From the process environment, or from `env` alone; empty values count as unset."""
        if env is None:
            return cls()
        return cls.model_validate({name: value for name, value in env.items() if value})


@dataclass(frozen=True)
class UiCredentials:
    user: str
    password: str = field(repr=False)

    @property
    def auth(self) -> tuple[str, str]:
        """(user, password), as requests' `auth=` and most HTTP clients take it."""
        return self.user, self.password

    def header(self) -> str:
        """The Authorization header's value for HTTP basic auth."""
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode("ascii")
        return f"Basic {token}"

    def fingerprint(self) -> str:
        """12 hex digits that change with the login: Swarm secrets are immutable, so their names
        carry it and a new password becomes a new secret."""
        return hashlib.sha256(f"{self.user}:{self.password}".encode()).hexdigest()[:12]


def _check(user: str, password: str) -> UiCredentials:
    if not user or ":" in user or any(c.isspace() for c in user):
        raise ValueError(f"{USER_ENV} must be a non-empty name without ':' or spaces")
    if len(password) < 8 or any(c in password for c in "\r\n"):
        raise ValueError(f"{PASSWORD_ENV} must be at least 8 characters on one line")
    return UiCredentials(user, password)


def credentials_dir(env: Mapping[str, str] | None = None) -> Path:
    return LoginSettings.read(env).directory.expanduser()


def credentials_file(stack: str, env: Mapping[str, str] | None = None) -> Path:
    """Where the login of STACK is kept."""
    if not stack or "/" in stack or stack.startswith("."):
        raise ValueError(f"not a stack name: {stack!r}")
    return credentials_dir(env) / f"{stack}{SUFFIX}"


def read_file(path: Path) -> UiCredentials:
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            values[key.strip()] = value.strip()
    if "password" not in values:
        raise ValueError(f"{path} has no password= line")
    return _check(values.get("user") or DEFAULT_USER, values["password"])


def write_file(path: Path, credentials: UiCredentials) -> None:
    """Writes the file readable by its owner only (created with mode 0600, never wider)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("# The penguin lab's UI login (Locust web UI, Prometheus console).\n")
        out.write(f"user={credentials.user}\npassword={credentials.password}\n")
    tmp.replace(path)


def lab_ui_credentials(stack: str, env: Mapping[str, str] | None = None) -> UiCredentials | None:
    """The UI login of STACK: LAB_UI_USER / LAB_UI_PASSWORD when set, else the file that
    stack_up.sh wrote; None when neither exists (a stack deployed before logins existed)."""
    settings = LoginSettings.read(env)
    if settings.password:
        return _check(settings.user or DEFAULT_USER, settings.password)
    path = credentials_file(stack, env)
    return read_file(path) if path.is_file() else None


def ensure_lab_ui_credentials(
    stack: str, env: Mapping[str, str] | None = None
) -> tuple[UiCredentials, bool]:
    """The login of STACK, created (random) and saved when there is none; True when created.
    A login from the environment is saved too, so later runs find it without the variables."""
    settings = LoginSettings.read(env)
    path = credentials_file(stack, env)
    existing = lab_ui_credentials(stack, env)
    if existing is not None:
        if settings.password and (not path.is_file() or read_file(path) != existing):
            write_file(path, existing)
        return existing, False
    created = _check(settings.user or DEFAULT_USER, secrets.token_urlsafe(PASSWORD_BYTES))
    write_file(path, created)
    return created, True
