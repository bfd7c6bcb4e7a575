"""A user's own locustfile run beside ours (`-f locustfile.py,user_locustfile.py
--external-users`), as the matrix runs it on the stack's Locust: the workshop profile spawns the
user's users, not ours, and their requests reach the per-second windows the report is made of,
counted as the server counted them, refusals apart. Real Locust processes (a master and two
workers) against the known-capacity test server (20 req/s, 503 beyond 4 waiting)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from loadtest.closed_model import OK, REFUSED
from loadtest.open_model import Objective
from matrix.measure.measurements import HostWindows, workshop_trial
from tests.locust.known_capacity import LOCUSTFILE, known_capacity_server, run_locust

SERVICE_MS = 50.0
USERS = 40  # thinking 0.75 s on average: ~50 req/s offered, over twice the capacity
HOLD_S = 10
# The course's locustfile, with a shorter think time and a name of its own in Locust's stats.
USER_LOCUSTFILE = """
from locust import HttpUser, between, task


class CourseUser(HttpUser):
    wait_time = between(0.5, 1.0)

    @task
    def predict(self):
        self.client.post(
            "/predict",
            name="course",
            json={"island": "Biscoe", "culmen_length_mm": 50.0, "culmen_depth_mm": 18.5,
                  "flipper_length_mm": 200.0, "body_mass_g": 4000.0, "sex": "MALE"},
        )
"""


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_a_users_locustfile_is_counted_as_ours_is(tmp_path: Path) -> None:
    user_file = tmp_path / "user_locustfile.py"
    user_file.write_text(USER_LOCUSTFILE)
    step_log = tmp_path / "steps.jsonl"
    with known_capacity_server(tmp_path, SERVICE_MS, max_waiting=4) as (url, timings):
        result = run_locust(
            url,
            tmp_path,
            [
                "--load-profile",
                "workshop",
                "--external-users",
                "--workshop-users",
                str(USERS),
                "--workshop-spawn-rate",
                "40",
                "--hold-seconds",
                str(HOLD_S),
                "--step-log",
                str(step_log),
                "--csv",
                str(tmp_path / "locust"),
                "-t",
                "90s",
            ],
            timeout=150,
            locustfiles=f"{LOCUSTFILE},{user_file}",
        )
    print(result.stderr[-2000:])
    # Only the user's users ran: every request Locust counted carries their name.
    rows = list(csv.DictReader((tmp_path / "locust_stats.csv").open()))
    names = {row["Name"] for row in rows if row["Name"] != "Aggregated"}
    assert names == {"course"}, names
    events = [json.loads(line) for line in step_log.read_text().splitlines()]
    windows = [event for event in events if event["event"] == "window"]
    counted: dict[str, int] = {}
    for window in windows:
        for kind, count in window["counts"].items():
            counted[kind] = counted.get(kind, 0) + count
    served = refused = 0
    for line in timings.read_text().splitlines():
        parts = line.split()
        if parts[2] == "200":
            served += 1
        else:
            refused += 1
    print(f"windows {counted}; server: {served} served, {refused} refused")
    # Every answer the server gave reached the windows once, by its kind, except those the
    # stop cut off on their way back: at most one in flight per user.
    assert served - USERS <= counted.get(OK, 0) <= served
    assert refused - USERS <= counted.get(REFUSED, 0) <= refused
    assert served + refused - USERS <= sum(counted.values())
    assert set(counted) <= {OK, REFUSED}
    # The windows and Locust's own statistics saw the same requests.
    aggregated = next(row for row in rows if row["Name"] == "Aggregated")
    assert int(aggregated["Request Count"]) == sum(counted.values())
    # And the matrix's analysis makes a workshop trial of them.
    trial = workshop_trial(events, Objective(p95_ms=500.0), HostWindows())
    assert trial is not None
    assert trial.step.users == USERS and trial.step.ok > 0
    assert trial.step.failures.get(REFUSED, 0) > 0
