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

import logging
from typing import Any

from locust.env import Environment

from loadtest.basic_auth import authorized, credentials_from_env
from locust import events

REALM = "penguin capacity lab"

logger = logging.getLogger(__name__)


def require_login(environment: Environment, **_kwargs: Any) -> None:
    web_ui = environment.web_ui
    if web_ui is None or web_ui.app is None:
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


events.init.add_listener(require_login)
