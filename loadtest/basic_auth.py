"""HTTP basic auth checks for the Locust web UI's login (web_login.py); no Locust import, so
the tests can call them."""

from __future__ import annotations

import base64
import binascii
import hmac
import os
from pathlib import Path

USER_ENV = "LOCUST_WEB_USER"
PASSWORD_FILE_ENV = "LOCUST_WEB_PASSWORD_FILE"
DEFAULT_USER = "penguin"


def credentials_from_env(env: dict[str, str] | None = None) -> tuple[str, str] | None:
    """(user, password) when a password file is configured, else None; unreadable is an error."""
    env = dict(os.environ) if env is None else env
    path = env.get(PASSWORD_FILE_ENV, "")
    if not path:
        return None
    password = Path(path).read_text(encoding="utf-8").strip()
    if not password:
        raise ValueError(f"{PASSWORD_FILE_ENV}={path} is empty")
    return env.get(USER_ENV) or DEFAULT_USER, password


def authorized(header: str | None, user: str, password: str) -> bool:
    """True when an Authorization header carries exactly this user and password."""
    if not header or not header.startswith("Basic "):
        return False
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    given_user, sep, given_password = decoded.partition(":")
    # Both compared in constant time, so a timing difference does not reveal the user name.
    user_ok = hmac.compare_digest(given_user.encode(), user.encode())
    password_ok = hmac.compare_digest(given_password.encode(), password.encode())
    return bool(sep) and user_ok and password_ok
