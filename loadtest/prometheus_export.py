"""A Prometheus /metrics route on the Locust master's web UI.

Locust has no Prometheus endpoint of its own. The master already holds every worker's statistics
(aggregated from their reports), so this route renders them (metrics_text.py): per-endpoint
requests, failures and a response-time histogram, plus users and workers. Prometheus then holds
the generator's view and the servers' side by side. Imported by locustfile.py; the route exists
only where a web UI runs (the master, or a standalone Locust), behind its login (web_login.py).
"""

from __future__ import annotations

from typing import Any

from locust.env import Environment
from locust.runners import MasterRunner

from loadtest.metrics_text import CONTENT_TYPE, render
from locust import events


def metrics_text(environment: Environment) -> str:
    runner = environment.runner
    if runner is None:
        return render([], 0, None, "stopped")
    workers = runner.worker_count if isinstance(runner, MasterRunner) else None
    return render(runner.stats.entries.values(), runner.user_count, workers, str(runner.state))


def add_metrics_route(environment: Environment, **_kwargs: Any) -> None:
    web_ui = environment.web_ui
    if web_ui is None or web_ui.app is None:
        return

    def metrics() -> tuple[str, int, dict[str, str]]:
        return metrics_text(environment), 200, {"Content-Type": CONTENT_TYPE}

    web_ui.app.add_url_rule("/metrics", "penguin_metrics", metrics)


events.init.add_listener(add_metrics_route)
