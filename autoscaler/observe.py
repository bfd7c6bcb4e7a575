"""What the autoscaler asks the stack's Prometheus: the api's rate, in-flight and refusals.

The offered rate is the higher of what the api replicas counted (penguin_http_requests_total,
service/metrics.py) and what Nginx counted (its exporter): requests Nginx refuses with a 503 when
every replica is full (admission control) never reach a replica, yet they are demand. Either
alone will do; with neither there are no figures.
"""

from __future__ import annotations

from pathlib import Path

from autoscaler.policy import Observation
from autoscaler.settings import AutoscaleSettings
from matrix.measure.prometheus import (
    TRAFFIC,
    PrometheusClient,
    PrometheusUnavailable,
    QueryFn,
)
from matrix.measure.prometheus import _one as one_value  # None for no sample or NaN
from stack.credentials import UiCredentials, lab_ui_credentials


class NoFigures(RuntimeError):
    """Prometheus did not answer, or has no api series to answer with."""


def queries(window_s: int) -> dict[str, str]:
    """The PromQL expressions, by name."""
    window = f"{window_s}s"
    return {
        "served": f"sum(rate(penguin_http_requests_total{{{TRAFFIC}}}[{window}]))",
        "nginx": f"sum(rate(nginx_http_requests_total[{window}]))",
        "in_flight": "sum(penguin_http_requests_in_flight)",
        "refused": (
            f'sum(rate(penguin_http_requests_total{{{TRAFFIC},status="503"}}[{window}]))'
            " or vector(0)"
        ),
    }


def observe(query: QueryFn, at: float, window_s: int) -> Observation:
    """The api's figures at `at` (epoch seconds); NoFigures when there are none to trust."""
    exprs = queries(window_s)
    try:
        served = one_value(query, exprs["served"], at)
        nginx = one_value(query, exprs["nginx"], at)
        in_flight = one_value(query, exprs["in_flight"], at)
        refused = one_value(query, exprs["refused"], at)
    except PrometheusUnavailable as error:
        raise NoFigures(str(error)) from None
    if served is None and nginx is None:
        raise NoFigures(
            "Prometheus has no request series of the api or Nginx (nothing scraped yet?)"
        )
    # A replica too busy to answer its scrape in time is the very moment to scale: without its
    # series, Nginx's count (every request, refusals included) still measures the demand.
    missing = "api request series (replicas not scraped)" if served is None else None
    return Observation(
        rps=max(served or 0.0, nginx or 0.0),
        in_flight=in_flight or 0.0,
        refused_rps=refused or 0.0,
        missing=missing,
    )


def prometheus_credentials(settings: AutoscaleSettings) -> UiCredentials | None:
    """The login from the Swarm secret in the stack, else the stack's login file."""
    path: Path | None = settings.prometheus_password_file
    if path is not None and path.is_file():
        return UiCredentials(settings.prometheus_user, path.read_text(encoding="utf-8").strip())
    return lab_ui_credentials(settings.stack_name)


def prometheus_query(settings: AutoscaleSettings) -> QueryFn:
    client = PrometheusClient(
        settings.prometheus_url, prometheus_credentials(settings), settings.prometheus_timeout_s
    )
    return client.query
