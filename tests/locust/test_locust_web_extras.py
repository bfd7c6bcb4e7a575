"""The Locust master's /metrics rendering and its web login (loadtest/prometheus_export.py,
loadtest/basic_auth.py), as functions: no Locust process."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from loadtest import basic_auth, metrics_text


@dataclass
class Entry:
    method: str
    name: str
    num_requests: int
    num_failures: int
    total_response_time: float
    response_times: dict[int, int] = field(default_factory=dict)


def test_metrics_text_parses_and_holds_the_histogram() -> None:
    entries = [
        Entry("POST", "/predict", 6, 1, 6 * 20.0, {3: 2, 20: 2, 40: 1, 1200: 1}),
        Entry("GET", 'odd "name"', 1, 0, 5.0, {5: 1}),
    ]
    text = metrics_text.render(entries, users=12, workers=2, state="running")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = {s.labels["name"]: s.value for s in families["locust_requests"].samples}
    assert requests == {"/predict": 6, 'odd "name"': 1}
    buckets = {
        s.labels["le"]: s.value
        for s in families["locust_response_time_seconds"].samples
        if s.name.endswith("_bucket") and s.labels["name"] == "/predict"
    }
    assert buckets["0.005"] == 2 and buckets["0.025"] == 4 and buckets["0.05"] == 5
    assert buckets["1.0"] == 5 and buckets["2.5"] == 6 and buckets["+Inf"] == 6
    users = families["locust_users"].samples[0].value
    assert users == 12 and families["locust_workers"].samples[0].value == 2


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_login_accepts_only_the_exact_pair() -> None:
    assert basic_auth.authorized(_basic("penguin", "s3cret-pass"), "penguin", "s3cret-pass")
    assert not basic_auth.authorized(_basic("penguin", "wrong"), "penguin", "s3cret-pass")
    assert not basic_auth.authorized(_basic("other", "s3cret-pass"), "penguin", "s3cret-pass")
    assert not basic_auth.authorized(None, "penguin", "s3cret-pass")
    assert not basic_auth.authorized("Basic !!!notbase64", "penguin", "s3cret-pass")
    assert not basic_auth.authorized("Bearer x", "penguin", "s3cret-pass")


def test_login_credentials_come_from_the_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-a-secret\n")
    env = {basic_auth.PASSWORD_FILE_ENV: str(secret)}
    assert basic_auth.credentials_from_env(env) == ("penguin", "from-a-secret")
    assert basic_auth.credentials_from_env({}) is None
    secret.write_text("\n")
    with pytest.raises(ValueError):
        basic_auth.credentials_from_env(env)
