"""HTTP basic auth in front of the whole Locust web UI (pages, API, /metrics).

The web UI lets whoever reaches it point any load at any URL, so the stack requires a login.
Locust's own --web-login needs an OAuth-style provider; basic auth is what Prometheus' web server
does too (--web.config.file), so the lab has one kind of login and one credential pair, which
browsers, curl, Prometheus' scraper and the matrix runner all send without a form.

Enabled when LOCUST_WEB_PASSWORD_FILE names a readable file (a Swarm secret in the stack); the
user is LOCUST_WEB_USER (default penguin). Without the variable the UI stays open, as before
(a developer's laptop, the tests that run Locust directly).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import os
from pathlib import Path
from typing import Any

from locust.env import Environment

from locust import events

USER_ENV = "LOCUST_WEB_USER"
PASSWORD_FILE_ENV = "LOCUST_WEB_PASSWORD_FILE"
DEFAULT_USER = "penguin"
REALM = "penguin capacity lab"

logger = logging.getLogger(__name__)


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


@events.init.add_listener
def require_login(environment: Environment, **_kwargs: Any) -> None:
    web_ui = environment.web_ui
    if web_ui is None:
        return
    try:
        credentials = credentials_from_env()
    except (OSError, ValueError) as error:
        # Refuse to serve an open UI when a login was asked for but cannot be read.
        logger.error("web login: %s", error)
        raise SystemExit(2) from error
    if credentials is None:
        return
    user, password = credentials
    from flask import Response, request

    def check() -> Response | None:
        if authorized(request.headers.get("Authorization"), user, password):
            return None
        return Response(
            "401 Unauthorized: the Locust UI needs the lab's login\n",
            status=401,
            mimetype="text/plain",
            headers={"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'},
        )

    web_ui.app.before_request(check)
    logger.info("web login required for user %s", user)
