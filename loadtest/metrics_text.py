"""Locust's statistics in Prometheus' text exposition format (no Locust import: unit-testable).

prometheus_export.py serves this on the master's web UI.

Locust has no Prometheus endpoint of its own. The master already holds every worker's statistics
(aggregated from their reports), so this route renders them in the text exposition format:
per-endpoint requests, failures and a response-time histogram, plus users and workers. Prometheus
then holds the generator's view and the servers' side by side. Imported by locustfile.py; the
route exists only where a web UI runs (the master, or a standalone Locust).

Counters restart from zero when a test starts (Locust resets its statistics); Prometheus'
rate() and increase() treat that as a counter reset, as they do a process restart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Seconds. Locust keeps response times rounded (to 1 ms below 100 ms, 10 ms below 1 s, 100 ms
# above), so finer buckets would only split its own rounding.
RESPONSE_TIME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return repr(float(value)) if value != int(value) else str(int(value))


def histogram_lines(labels: str, response_times: Mapping[int, int], total_ms: float) -> list[str]:
    """Bucket, sum and count lines of one endpoint's histogram from Locust's {ms: count} map."""
    lines = []
    ordered = sorted(response_times.items())
    count = 0
    index = 0
    for bound in RESPONSE_TIME_BUCKETS:
        while index < len(ordered) and ordered[index][0] <= bound * 1000:
            count += ordered[index][1]
            index += 1
        lines.append(f'locust_response_time_seconds_bucket{{{labels},le="{bound}"}} {count}')
    total = sum(response_times.values())
    lines.append(f'locust_response_time_seconds_bucket{{{labels},le="+Inf"}} {total}')
    lines.append(f"locust_response_time_seconds_sum{{{labels}}} {_number(total_ms / 1000)}")
    lines.append(f"locust_response_time_seconds_count{{{labels}}} {total}")
    return lines


def render(entries: Iterable[Any], users: int, workers: int | None, state: str) -> str:
    """The exposition text for Locust's stats entries (objects with Locust's StatsEntry fields)."""
    requests = [
        "# HELP locust_requests_total Requests sent, by method and endpoint name.",
        "# TYPE locust_requests_total counter",
    ]
    failures = [
        "# HELP locust_failures_total Failed requests, by method and endpoint name.",
        "# TYPE locust_failures_total counter",
    ]
    histogram = [
        "# HELP locust_response_time_seconds Response times seen by Locust.",
        "# TYPE locust_response_time_seconds histogram",
    ]
    for entry in sorted(entries, key=lambda e: (str(e.method), str(e.name))):
        labels = f'method="{_label(str(entry.method))}",name="{_label(str(entry.name))}"'
        requests.append(f"locust_requests_total{{{labels}}} {entry.num_requests}")
        failures.append(f"locust_failures_total{{{labels}}} {entry.num_failures}")
        histogram.extend(histogram_lines(labels, entry.response_times, entry.total_response_time))
    gauges = [
        "# HELP locust_users Simulated users running now.",
        "# TYPE locust_users gauge",
        f"locust_users {users}",
        "# HELP locust_running 1 while a test runs (spawning or running), else 0.",
        "# TYPE locust_running gauge",
        f'locust_running{{state="{_label(state)}"}} {1 if state in ("spawning", "running") else 0}',
    ]
    if workers is not None:
        gauges += [
            "# HELP locust_workers Workers connected to the master.",
            "# TYPE locust_workers gauge",
            f"locust_workers {workers}",
        ]
    return "\n".join(requests + failures + histogram + gauges) + "\n"
