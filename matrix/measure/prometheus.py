"""Server-side figures of a step from the stack's Prometheus (prometheus/ in the stack).

Locust sees latency from the client: Nginx, Gunicorn's backlog, the application and the network
all in one number. The api replicas' own histogram (service/metrics.py) starts when the app gets
the request, so the two side by side show where time goes. For each step window this module asks
Prometheus' HTTP API for the server-side p95, the requests each replica served (balance), 5xx and
503 counts, and Nginx's dropped connections. Without a reachable Prometheus (a stack from before
it existed) every figure is None and the report says "n/a".
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from stack.credentials import UiCredentials, lab_ui_credentials

# Type names only: the autoscaler's image carries this module without the matrix's configuration
# (and its YAML) or records.
if TYPE_CHECKING:
    from matrix.analyse.records import TrialRecord
    from matrix.config import MatrixSettings

# How long after a step's end the last scrape that covers it may take: one interval and a margin.
SCRAPE_SETTLE_S = 2.5
# Traffic routes only: probes (/ready, /health) and scrapes (/metrics) are not the load.
TRAFFIC = 'route!~"/metrics|/ready|/health"'
QUERY_TIMEOUT_S = 5.0
# What the per-step figures read from the api replicas: the penguin service's own metrics
# (service/metrics.py), the latency histogram and the request counter.
PENGUIN_METRICS = ("penguin_http_request_duration_seconds", "penguin_http_requests_total")
_DURATION, _REQUESTS = PENGUIN_METRICS


class PrometheusUnavailable(RuntimeError):
    """Prometheus did not answer, or refused the query."""


class ServerFigures(BaseModel):
    """One step's figures as the servers saw them (None: Prometheus had no answer)."""

    model_config = ConfigDict(extra="ignore")

    p95_ms: float | None = None
    p50_ms: float | None = None
    requests: float | None = None
    per_replica: dict[str, float] = {}
    errors_5xx: float | None = None
    errors_503: float | None = None
    nginx_requests: float | None = None
    nginx_dropped: float | None = None

    @property
    def balance(self) -> float | None:
        """Busiest replica's requests over the least busy one's (1.0 is perfectly even)."""
        values = [v for v in self.per_replica.values() if v > 0]
        if len(self.per_replica) < 2 or not values:
            return None
        low = min(self.per_replica.values())
        return math.inf if low <= 0 else max(values) / low

    def replica_shares(self) -> dict[str, float]:
        total = sum(self.per_replica.values())
        return {k: v / total for k, v in sorted(self.per_replica.items())} if total else {}


Sample = tuple[dict[str, str], float]
QueryFn = Callable[[str, float], list[Sample]]


@dataclass
class PrometheusClient:
    """Instant queries against Prometheus' HTTP API (/api/v1/query), with the lab's login."""

    base_url: str
    credentials: UiCredentials | None = None
    timeout: float = QUERY_TIMEOUT_S

    def query(self, expr: str, at: float) -> list[Sample]:
        params = urllib.parse.urlencode({"query": expr, "time": f"{at:.3f}"})
        request = urllib.request.Request(f"{self.base_url.rstrip('/')}/api/v1/query?{params}")
        if self.credentials is not None:
            request.add_header("Authorization", self.credentials.header())
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = json.load(response)
        except urllib.error.HTTPError as error:
            raise PrometheusUnavailable(f"{expr}: HTTP {error.code}") from None
        except (OSError, ValueError) as error:
            raise PrometheusUnavailable(f"{self.base_url}: {error}") from None
        return parse_vector(answer)


def parse_vector(answer: Mapping[str, Any]) -> list[Sample]:
    """The samples of an instant-query answer ({"status": "success", "data": {...}})."""
    if answer.get("status") != "success":
        raise PrometheusUnavailable(f"query failed: {answer.get('error', answer)}")
    data = answer.get("data") or {}
    if data.get("resultType") == "scalar":
        return [({}, float(data["result"][1]))]
    samples = []
    for item in data.get("result") or []:
        value = float(item["value"][1])
        samples.append((dict(item.get("metric") or {}), value))
    return samples


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus' histogram_quantile over cumulative (upper bound, count) pairs: linear
    interpolation inside the bucket that holds the rank. None when there are no observations."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    if not math.isinf(ordered[-1][0]):
        return None  # Prometheus needs the +Inf bucket too
    rank = q * ordered[-1][1]
    previous_bound, previous_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return previous_bound  # in the +Inf bucket: the highest finite bound
            if count == previous_count:
                return bound
            return previous_bound + (bound - previous_bound) * (rank - previous_count) / (
                count - previous_count
            )
        previous_bound, previous_count = bound, count
    return ordered[-1][0]


def _window(seconds: float) -> str:
    return f"{max(1, math.ceil(seconds))}s"


def _one(query: QueryFn, expr: str, at: float) -> float | None:
    samples = query(expr, at)
    if not samples or math.isnan(samples[0][1]):
        return None
    return samples[0][1]


def step_figures(query: QueryFn, started: float, ended: float) -> ServerFigures:
    """The server-side figures of the window [started, ended] (epoch seconds)."""
    window = _window(ended - started)
    latency = f"sum by (le) (increase({_DURATION}_bucket{{{TRAFFIC}}}[{window}]))"
    requests = f"increase({_REQUESTS}{{{TRAFFIC}}}[{window}])"
    per_replica = {
        labels.get("instance", "?"): value
        for labels, value in query(f"sum by (instance) ({requests})", ended)
        if not math.isnan(value)
    }
    p95 = _one(query, f"histogram_quantile(0.95, {latency})", ended)
    p50 = _one(query, f"histogram_quantile(0.5, {latency})", ended)
    nginx_requests = _one(query, f"sum(increase(nginx_http_requests_total[{window}]))", ended)
    nginx_dropped = _one(
        query,
        f"sum(increase(nginx_connections_accepted[{window}]))"
        f" - sum(increase(nginx_connections_handled[{window}]))",
        ended,
    )
    return ServerFigures(
        p95_ms=p95 * 1000 if p95 is not None else None,
        p50_ms=p50 * 1000 if p50 is not None else None,
        requests=sum(per_replica.values()) if per_replica else None,
        per_replica=per_replica,
        errors_5xx=_one(
            query,
            f'sum(increase({_REQUESTS}{{status=~"5.."}}[{window}])) or vector(0)',
            ended,
        ),
        errors_503=_one(
            query,
            f'sum(increase({_REQUESTS}{{status="503"}}[{window}])) or vector(0)',
            ended,
        ),
        nginx_requests=nginx_requests,
        nginx_dropped=max(0.0, nginx_dropped) if nginx_dropped is not None else None,
    )


def figures_or_none(query: QueryFn, started: float, ended: float) -> ServerFigures | None:
    """step_figures, or None when Prometheus cannot be asked (absent, down, refusing)."""
    try:
        return step_figures(query, started, ended)
    except PrometheusUnavailable:
        return None


def recording_key(expr: str, at: float) -> str:
    return f"{at:.3f} {expr}"


class RecordingClient:
    """Wraps a query function and keeps every raw answer, to record a real Prometheus."""

    def __init__(self, client: PrometheusClient) -> None:
        self.client = client
        self.answers: dict[str, Any] = {}

    def __call__(self, expr: str, at: float) -> list[Sample]:
        params = urllib.parse.urlencode({"query": expr, "time": f"{at:.3f}"})
        request = urllib.request.Request(f"{self.client.base_url}/api/v1/query?{params}")
        if self.client.credentials is not None:
            request.add_header("Authorization", self.client.credentials.header())
        with urllib.request.urlopen(request, timeout=self.client.timeout) as response:
            answer = json.load(response)
        self.answers[recording_key(expr, at)] = answer
        return parse_vector(answer)


class RecordedQueries:
    """Answers recorded from a real Prometheus (RecordingClient), replayed by time and query."""

    def __init__(self, answers: Mapping[str, Mapping[str, Any]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def __call__(self, expr: str, at: float) -> list[Sample]:
        key = recording_key(expr, at)
        self.asked.append(key)
        if key not in self.answers:
            raise PrometheusUnavailable(f"no recorded answer for {key}")
        return parse_vector(self.answers[key])


def stack_client(settings: MatrixSettings) -> PrometheusClient:
    """A client for the stack's Prometheus with the stack's UI login (stack/credentials.py)."""
    return PrometheusClient(settings.prometheus_url, lab_ui_credentials(settings.stack_name))


# The Prometheus job that scrapes every api task (prometheus/prometheus.yml.template).
API_JOB = "api"


def target_metrics_note(query: QueryFn, at: float, since: float, port: int) -> str | None:
    """Why the server-side figures of a target are absent, from what Prometheus' api job
    scraped of it since `since` (the cell's load began); None when the target exposes the
    penguin service's metrics (then they are read as ours). Prometheus that cannot be asked is
    a reason too. Only samples newer than `since` count: the penguin replicas scraped before
    the target replaced them stay visible for minutes (Prometheus' lookback, and no staleness
    marker when Prometheus restarted to follow the target's port)."""
    fresh = f'timestamp({{job="{API_JOB}",__name__="%s"}}) > {since:.3f}'
    try:
        scrapes = query(f'up{{job="{API_JOB}"}} and on(instance) ({fresh % "up"})', at)
        penguin = query(f"count({fresh % _REQUESTS})", at)
    except PrometheusUnavailable as error:
        return f"absent: the stack's Prometheus could not be asked ({error})"
    if penguin:
        return None
    up = sum(1 for _labels, value in scrapes if value == 1)
    if not up:
        return (
            f"absent: the target serves no Prometheus metrics at :{port}/metrics (the stack's "
            f"Prometheus scraped {len(scrapes)} replica(s) there, job `{API_JOB}`, and no scrape "
            "succeeded); the client-side figures and the containers' cgroup figures stand alone"
        )
    return (
        f"absent: the target's own metrics at :{port}/metrics are scraped into the stack's "
        f"Prometheus (job `{API_JOB}`, {up} of {len(scrapes)} replica(s) up: query them there), "
        f"but they are not the penguin service's ({', '.join(PENGUIN_METRICS)}), the only ones "
        "this report reads per step"
    )


def attach_server_figures(
    trials: Iterable[TrialRecord],
    query: QueryFn,
    log: Callable[[str], None] = lambda _message: None,
) -> int:
    """Fills each step's `server` figures from Prometheus; returns how many steps got them.
    Leaves them None (the report says n/a) when Prometheus cannot be asked."""
    steps = [step for trial in trials for step in trial.steps if step.ended > step.started > 0]
    if not steps:
        return 0
    # The scrape after the last step's end must have landed before it is asked about.
    wait = max(step.ended for step in steps) + SCRAPE_SETTLE_S - time.time()
    if wait > 0:
        time.sleep(wait)
    filled = 0
    for step in steps:
        try:
            step.server = step_figures(query, step.started, step.ended)
        except PrometheusUnavailable as error:
            # Absent or down: one refusal is enough, the others would only wait for timeouts.
            log(f"server-side figures: n/a ({error})")
            break
        filled += 1
    return filled
