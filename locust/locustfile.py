"""Penguin classifier load test.

Runs the same way standalone, with --processes N, and as master + workers in the Swarm stack:

    locust -f locust/locustfile.py --host http://127.0.0.1:8000 --headless --processes 2 \
        --load-profile search --start-rate 100 --p95-ms 500 --step-log steps.jsonl

Profiles (--load-profile, env LOCUST_LOAD_PROFILE; Locust itself owns --profile):
- `search` (open model): steps of constant arrival rate, growing by --growth until a step fails
  the objective, then bisecting until the highest passing and lowest failing rates are within
  --precision. Requests go out on a schedule whatever the service answers, and latency is
  measured from each request's intended send time (see loadtest_open.py).
- `staircase` (open model): fixed rates --start-rate, + --step-rate ... up to --max-rate,
  stopping after the first step that fails.
- `spike` (open model): --spike-steps LEAD,PEAK,TAIL steps at --start-rate, --spike-rate and
  --start-rate again, none skipped or paused after on failure (loadtest/spike.py).
- `workshop` (closed model): ramps to --workshop-users at --workshop-spawn-rate users/s and holds
  --hold-seconds (the original 10 000-user experiment); each user waits a think time uniform in
  [--think-min, --think-max] s after each answer (the course's `between(1, 2.5)`). Outcomes are
  recorded per second and per kind (loadtest_closed.py) for the matrix.
- `plain` (closed model): honours -u/-r/-t.
A user's own locustfile runs beside this one (`-f locustfile.py,user_locustfile.py
--external-users`): the workshop profile then spawns that file's users instead of the penguin
WorkshopUser, and records their requests per second from Locust's request event.
Every custom option also has a LOCUST_* environment variable (`locust -f locustfile.py --help`).
"""

from __future__ import annotations

import gc
import json
import logging
import math
import random
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import gevent.pool
import locust.runners
from flask import Response, request
from geventhttpclient import HTTPClient
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from loadtest import keepalive
from loadtest.closed_model import (
    WINDOW_MESSAGE,
    WindowRecorder,
    event_outcome_kind,
    outcome_kind,
)
from loadtest.data import (
    DEFAULT_MODEL,
    SEED_BODY,
    BodySampler,
    TargetRequest,
    check_batch,
    check_prediction,
    find_data_file,
    load_rows,
    load_target_requests,
    parse_model_mix,
    pick_target_request,
)
from loadtest.drain import DrainWait, http_probe
from loadtest.open_model import (
    ARRIVALS,
    MAX_DRAIN_S,
    SCHEDULED_HEADER,
    STATS_MESSAGE,
    STEP_MESSAGE,
    FixedSteps,
    HoldSearch,
    Objective,
    RateSearch,
    StepPlan,
    StepRecorder,
    arrival_offsets,
    drain_seconds,
    judge,
    knee_step,
    merge_reports,
    staircase_rates,
)
from loadtest.profiles import (
    HELD_PROFILES,
    OPEN_PROFILES,
    PROFILES,
    WORKSHOP_SPAWN_RATE,
    WORKSHOP_THINK_TIME,
    WORKSHOP_USERS,
    Step,
    check_think_time,
    plain_steps,
    step_at,
    think_time,
    workshop_steps,
)
from loadtest.spike import spike_counts, spike_step_rates
from locust import LoadTestShape, User, events, task

# Imported for their init listeners: the web UI's login and its Prometheus /metrics route.
from loadtest import prometheus_export  # noqa: F401, E402  # isort: skip
from loadtest import web_login  # noqa: F401, E402  # isort: skip

# Every user keeps its connection: see keepalive.py (without it, users on descriptors above 1024
# opened a new connection for each request).
keepalive.install()

logger = logging.getLogger("penguin-loadtest")
HERE = Path(__file__).resolve().parent
# Empty: every model the API serves (GET /models, the service's registry), in equal shares.
DEFAULT_MODEL_MIX = ""
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
# How long the master waits for the generators' step reports beyond the request timeout.
REPORT_GRACE_S = 5.0


@events.init_command_line_parser.add_listener
def add_arguments(parser: Any) -> None:
    group = parser.add_argument_group("penguin load test")
    group.add_argument(
        "--load-profile",
        choices=PROFILES,
        default="plain",
        env_var="LOCUST_LOAD_PROFILE",
        help="load profile: plain (-u/-r/-t), workshop, staircase, search, soak or spike",
    )
    group.add_argument(
        "--model-mix",
        default=DEFAULT_MODEL_MIX,
        env_var="LOCUST_MODEL_MIX",
        help="share of requests per model, e.g. lr=0.5,rf=0.3 (default: every "
        f"model the API lists at /models, equal shares; '{DEFAULT_MODEL}': "
        "POST /predict without a model, the service's default)",
    )
    group.add_argument(
        "--body",
        choices=("sampled", "seed"),
        default="sampled",
        env_var="LOCUST_BODY",
        help="request bodies: real rows with noise, or the workshop's one body",
    )
    group.add_argument(
        "--target-requests",
        default="",
        env_var="LOCUST_TARGET_REQUESTS",
        help='a JSON file of another service\'s requests ({"requests": [{method, path, '
        "headers, body, expect_status, weight}]}, written by the matrix for a target): sent "
        "instead of the penguin bodies, picked by weight, successful on their expected status",
    )
    group.add_argument(
        "--data-file",
        default="",
        env_var="LOCUST_DATA_FILE",
        help="penguins_size.csv (default: next to the locustfile or ../data/)",
    )
    group.add_argument(
        "--noise",
        type=float,
        default=0.02,
        env_var="LOCUST_NOISE",
        help="measurement noise as a fraction of each feature's std deviation",
    )
    group.add_argument(
        "--batch-weight",
        type=int,
        default=0,
        env_var="LOCUST_BATCH_WEIGHT",
        help="batch requests per single prediction (0: no batches)",
    )
    group.add_argument(
        "--batch-size",
        type=int,
        default=20,
        env_var="LOCUST_BATCH_SIZE",
        help="instances per /predict/batch request",
    )
    group.add_argument(
        "--report-interval",
        type=float,
        default=1.0,
        env_var="LOCUST_REPORT_INTERVAL",
        help="seconds between worker stats reports (Locust's default is 3)",
    )
    group.add_argument(
        "--step-log",
        default="",
        env_var="LOCUST_STEP_LOG",
        help="file the master appends one JSON line per profile step to",
    )
    # Open model (search, staircase).
    group.add_argument(
        "--start-rate",
        type=float,
        default=50.0,
        env_var="LOCUST_START_RATE",
        help="search/staircase: first arrival rate, requests/s",
    )
    group.add_argument(
        "--growth",
        type=float,
        default=2.0,
        env_var="LOCUST_GROWTH",
        help="search: factor between rates until the first failing step",
    )
    group.add_argument(
        "--precision",
        type=float,
        default=0.05,
        env_var="LOCUST_PRECISION",
        help="search: stop when the failing rate is within this share of the passing one",
    )
    group.add_argument(
        "--ceiling",
        type=float,
        default=0.0,
        env_var="LOCUST_CEILING",
        help="search: never offer more than this, requests/s (0: no ceiling)",
    )
    group.add_argument(
        "--max-steps",
        type=int,
        default=30,
        env_var="LOCUST_MAX_STEPS",
        help="search: safety limit on the number of steps",
    )
    group.add_argument(
        "--step-rate",
        type=float,
        default=50.0,
        env_var="LOCUST_STEP_RATE",
        help="staircase: rate added per step, requests/s",
    )
    group.add_argument(
        "--max-rate",
        type=float,
        default=500.0,
        env_var="LOCUST_MAX_RATE",
        help="staircase: highest arrival rate, requests/s",
    )
    group.add_argument(
        "--soak-steps",
        type=int,
        default=30,
        env_var="LOCUST_SOAK_STEPS",
        help="soak: steps of --step-seconds each at --start-rate, none skipped on failure",
    )
    group.add_argument(
        "--spike-rate",
        type=float,
        default=300.0,
        env_var="LOCUST_SPIKE_RATE",
        help="spike: the peak's arrival rate, requests/s (the base is --start-rate)",
    )
    group.add_argument(
        "--spike-steps",
        default="2,6,9",
        env_var="LOCUST_SPIKE_STEPS",
        help="spike: LEAD,PEAK,TAIL steps of --step-seconds at the base, the peak and the base",
    )
    group.add_argument(
        "--step-seconds",
        type=float,
        default=10.0,
        env_var="LOCUST_STEP_SECONDS",
        help="search/staircase: duration of each step",
    )
    group.add_argument(
        "--settle-seconds",
        type=float,
        default=1.0,
        env_var="LOCUST_SETTLE_SECONDS",
        help="search/staircase: start of each step left out of its figures",
    )
    group.add_argument(
        "--arrival",
        choices=ARRIVALS,
        default="constant",
        env_var="LOCUST_ARRIVAL",
        help="search/staircase: evenly spaced or Poisson arrivals",
    )
    group.add_argument(
        "--request-timeout",
        type=float,
        default=5.0,
        env_var="LOCUST_REQUEST_TIMEOUT",
        help="seconds before a request counts as timed out",
    )
    group.add_argument(
        "--late-ms",
        type=float,
        default=10.0,
        env_var="LOCUST_LATE_MS",
        help="search/staircase: a request sent later than this after its "
        "intended time counts as late",
    )
    group.add_argument(
        "--max-in-flight",
        type=int,
        default=1000,
        env_var="LOCUST_MAX_IN_FLIGHT",
        help="search/staircase: requests each generator keeps waiting at most; "
        "arrivals beyond are dropped and counted",
    )
    group.add_argument(
        "--confirm-seconds",
        type=float,
        default=0.0,
        env_var="LOCUST_CONFIRM_SECONDS",
        help="search: hold the knee rate this long after converging and report it only if it "
        "holds, else step down by --precision (0: no confirmation)",
    )
    group.add_argument(
        "--holds-only",
        action="store_true",
        default=False,
        env_var="LOCUST_HOLDS_ONLY",
        help="search: a later trial: hold --start-rate for --confirm-seconds, then move by "
        "--precision up while holds pass and down while they fail, until a passing and a "
        "failing hold bracket the knee",
    )
    group.add_argument(
        "--drain-probe-url",
        default="",
        env_var="LOCUST_DRAIN_PROBE_URL",
        help="search/staircase: before each step, wait until this URL answers quiet (the "
        "matrix serves it); empty: pause after a failing step for an estimated time",
    )
    group.add_argument(
        "--drain-timeout",
        type=float,
        default=MAX_DRAIN_S,
        env_var="LOCUST_DRAIN_TIMEOUT",
        help="search/staircase: longest wait for the drain probe, seconds",
    )
    group.add_argument(
        "--p95-ms",
        type=float,
        default=500.0,
        env_var="LOCUST_P95_MS",
        help="objective: p95 latency, ms",
    )
    group.add_argument(
        "--p99-ms",
        type=float,
        default=0.0,
        env_var="LOCUST_P99_MS",
        help="objective: p99 latency, ms (0: not judged)",
    )
    group.add_argument(
        "--max-failure-ratio",
        type=float,
        default=0.01,
        env_var="LOCUST_MAX_FAILURE_RATIO",
        help="objective: share of failed requests",
    )
    group.add_argument(
        "--min-completion-ratio",
        type=float,
        default=0.99,
        env_var="LOCUST_MIN_COMPLETION_RATIO",
        help="objective: share of scheduled requests answered successfully",
    )
    group.add_argument(
        "--max-late-ratio",
        type=float,
        default=0.01,
        env_var="LOCUST_MAX_LATE_RATIO",
        help="share of late requests above which a step is generator-limited",
    )
    # Closed model (workshop, plain).
    group.add_argument(
        "--user-rate",
        type=float,
        default=1.0,
        env_var="LOCUST_USER_RATE",
        help="workshop/plain: requests/s each user sends",
    )
    group.add_argument(
        "--workshop-users",
        type=int,
        default=WORKSHOP_USERS,
        env_var="LOCUST_WORKSHOP_USERS",
        help="workshop: users to ramp to",
    )
    group.add_argument(
        "--workshop-spawn-rate",
        type=float,
        default=WORKSHOP_SPAWN_RATE,
        env_var="LOCUST_WORKSHOP_SPAWN_RATE",
        help="workshop: users started per second",
    )
    group.add_argument(
        "--hold-seconds",
        type=float,
        default=300.0,
        env_var="LOCUST_HOLD_SECONDS",
        help="workshop: how long to hold the full user count",
    )
    group.add_argument(
        "--think-min",
        type=float,
        default=WORKSHOP_THINK_TIME[0],
        env_var="LOCUST_THINK_MIN",
        help="workshop: shortest wait after an answer, seconds",
    )
    group.add_argument(
        "--external-users",
        action="store_true",
        default=False,
        env_var="LOCUST_EXTERNAL_USERS",
        help="workshop: spawn the users of the other locustfiles given with -f (a user's own "
        "locustfile) instead of the penguin WorkshopUser, and record their requests",
    )
    group.add_argument(
        "--think-max",
        type=float,
        default=WORKSHOP_THINK_TIME[1],
        env_var="LOCUST_THINK_MAX",
        help="workshop: longest wait after an answer, seconds",
    )


class _Workload:
    """Per-process state built once from the options: the body sampler and the model mix."""

    def __init__(self) -> None:
        self.sampler: BodySampler | None = None
        self.models: list[str] = []
        self.weights: list[float] = []
        self._mix_text = ""
        # A target's requests (--target-requests): sent instead of the penguin bodies.
        self.targets: list[TargetRequest] = []

    def configure(self, options: Any) -> None:
        if options.target_requests:
            self.targets = load_target_requests(Path(options.target_requests))
            return
        rows = load_rows(find_data_file(options.data_file or None, HERE))
        self.sampler = BodySampler(rows, noise=options.noise)
        if options.model_mix:
            self._set_mix(options.model_mix)

    def _set_mix(self, text: str) -> None:
        mix = {DEFAULT_MODEL: 1.0} if text.strip() == DEFAULT_MODEL else parse_model_mix(text)
        self.models, self.weights = list(mix), list(mix.values())
        self._mix_text = text

    def use_served_models(self, host: str) -> None:
        """Equal shares over the models the API at `host` serves (its registry)."""
        try:
            with urllib.request.urlopen(f"{host.rstrip('/')}/models", timeout=10) as response:
                names = [str(m["name"]) for m in json.loads(response.read())["models"]]
        except (OSError, ValueError, KeyError, TypeError) as error:
            logger.error(
                "penguin load test: no --model-mix given and %s/models did not list "
                "the served models: %s",
                host,
                error,
            )
            return
        self.models, self.weights, self._mix_text = names, [1.0] * len(names), ""

    def pick_model(self, options: Any, rng: random.Random) -> str:
        # Workers get the master's options with each spawn message, so follow changes here.
        if options.model_mix and options.model_mix != self._mix_text:
            self._set_mix(options.model_mix)
        if not self.models:
            raise RuntimeError(
                "no model mix: --model-mix is empty and the API's /models "
                "could not be read (see the log)"
            )
        if len(self.models) == 1:  # e.g. the workshop's "default": no draw per request
            return self.models[0]
        return rng.choices(self.models, self.weights)[0]

    def body(self, options: Any, rng: random.Random) -> dict[str, object]:
        if options.body == "seed":
            return SEED_BODY
        if self.sampler is None:
            raise RuntimeError("workload not configured (the init event did not run)")
        return self.sampler.sample(rng)

    def request(self, options: Any, rng: random.Random) -> tuple[str, object, Any]:
        """(url, body, check) of one request: a single prediction, or a batch with probability
        batch_weight / (batch_weight + 1). The url doubles as the name Locust groups it by."""
        model = self.pick_model(options, rng)
        if model == DEFAULT_MODEL:
            return (
                "/predict",
                self.body(options, rng),
                lambda payload: check_prediction(payload, None),
            )
        weight = options.batch_weight
        if weight > 0 and rng.random() < weight / (weight + 1.0):
            size = options.batch_size
            body: object = {"instances": [self.body(options, rng) for _ in range(size)]}
            return (
                f"/predict/batch?model={model}",
                body,
                lambda payload: check_batch(payload, model, size),
            )
        return (
            f"/predict?model={model}",
            self.body(options, rng),
            lambda payload: check_prediction(payload, model),
        )


WORKLOAD = _Workload()


@dataclass
class _Answer:
    """What one POST got: an HTTP status (0: none), the body's length, and what went wrong."""

    status: int = 0
    # The status counts as a success: 200 for ours, a target's expect_status (or any 2xx).
    accepted: bool = False
    length: int = 0
    timed_out: bool = False
    problem: str | None = None  # a 200 whose body is wrong
    error: Exception | None = None  # a timeout, a broken connection or a body that is not JSON


def _post_checked(
    http: HTTPClient,
    url: str,
    body: object,
    check: Callable[[Any], str | None],
    headers: dict[str, str] = JSON_HEADERS,
) -> _Answer:
    """POST `body` as JSON, read the whole answer (so the connection stays usable) and check a
    200's body; the open-model and the workshop users send through here."""
    answer = _Answer()
    try:
        with http.post(url, body=json.dumps(body), headers=headers) as response:
            content = response.read()
            answer.status, answer.length = response.status_code, len(content)
            answer.accepted = answer.status == 200
            if answer.status == 200:
                try:
                    answer.problem = check(json.loads(content))
                except ValueError as error:
                    answer.problem, answer.error = "response is not JSON", error
    except (TimeoutError, gevent.Timeout) as error:
        answer.timed_out, answer.error = True, error
    except (OSError, ValueError) as error:  # refused, reset, closed early, or not HTTP
        answer.error = error
    return answer


def _send_target(http: HTTPClient, target: TargetRequest, headers: dict[str, str]) -> _Answer:
    """Send a target's request as given and read the whole answer; its status decides, its
    body is not checked (the lab does not know what a right answer of another service is)."""
    answer = _Answer()
    try:
        with http.request(
            target.method, target.path, body=target.body, headers={**headers, **target.headers}
        ) as response:
            content = response.read()
            answer.status, answer.length = response.status_code, len(content)
            answer.accepted = target.accepts(answer.status)
            if not answer.accepted:
                answer.problem = f"status {answer.status}, expected {target.expected()}"
    except (TimeoutError, gevent.Timeout) as error:
        answer.timed_out, answer.error = True, error
    except (OSError, ValueError) as error:
        answer.error = error
    return answer


def _send_next(
    http: HTTPClient, options: Any, rng: random.Random, headers: dict[str, str] = JSON_HEADERS
) -> tuple[str, str, _Answer]:
    """(method, name, answer) of the next request: a target's, or a penguin prediction."""
    if WORKLOAD.targets:
        target = pick_target_request(WORKLOAD.targets, rng)
        return target.method, target.path, _send_target(http, target, headers)
    url, body, check = WORKLOAD.request(options, rng)
    return "POST", url, _post_checked(http, url, body, check, headers)


class _OpenSteps:
    """Worker side of the open model: the step the master asked for, handed to the users."""

    def __init__(self) -> None:
        self.plan: StepPlan | None = None
        self.changed = gevent.event.Event()

    def start(self, plan: StepPlan) -> None:
        self.plan = plan
        self.changed.set()

    def wait_after(self, index: int) -> StepPlan:
        while self.plan is None or self.plan.index <= index:
            self.changed.clear()
            self.changed.wait()
        return self.plan


OPEN_STEPS = _OpenSteps()


def _on_step_message(environment: Environment, msg: Any, **_kwargs: Any) -> None:
    OPEN_STEPS.start(StepPlan.from_message(msg.data))


def _on_stats_message(environment: Environment, msg: Any, **_kwargs: Any) -> None:
    shape = environment.shape_class
    if isinstance(shape, PenguinShape):
        shape.add_report(msg.data)


class _ClosedWindows:
    """Generator side of the closed model: outcomes per second, sent to the master each second
    (loadtest_closed.py says why Locust's own statistics are not enough)."""

    def __init__(self) -> None:
        self.recorder = WindowRecorder()
        self._sender: gevent.Greenlet | None = None
        # The users are a user's own (--external-users): record from Locust's request event.
        self.external = False

    def start(self, environment: Environment) -> None:
        self.recorder = WindowRecorder(started=time.time())
        self.external = bool(environment.parsed_options.external_users)
        if self._sender is None:
            self._sender = gevent.spawn(self._send_loop, environment)

    def _send_loop(self, environment: Environment) -> None:
        while True:
            gevent.sleep(1.0)
            self.send(environment, final=False)

    def send(self, environment: Environment, final: bool) -> None:
        runner = environment.runner
        if runner is None:
            return
        windows = self.recorder.flush(time.time(), runner.user_count, final=final)
        if windows:
            runner.send_message(
                WINDOW_MESSAGE, {"worker": _generator_id(runner), "windows": windows}
            )

    def stop(self, environment: Environment) -> None:
        if self._sender is None:  # not a workshop run
            return
        self._sender.kill(block=False)
        self._sender = None
        self.send(environment, final=True)


CLOSED_WINDOWS = _ClosedWindows()


def _generator_id(runner: Any) -> str:
    return str(getattr(runner, "client_id", "local"))


def _on_windows_message(environment: Environment, msg: Any, **_kwargs: Any) -> None:
    for window in msg.data["windows"]:
        _log(
            environment.parsed_options, {"event": "window", "worker": msg.data["worker"], **window}
        )


# The master's step log, also kept in memory for GET /penguin/steps: a run driven through the
# web UI's HTTP API (the matrix's stack mode) reads the same lines the --step-log file gets.
STEP_EVENTS: list[str] = []


def _steps_route() -> Response:
    try:
        offset = max(0, int(request.args.get("offset", "0")))
    except ValueError:
        return Response("offset must be a whole number\n", status=400, mimetype="text/plain")
    lines = STEP_EVENTS[offset:]
    return Response(
        "".join(line + "\n" for line in lines),
        mimetype="application/x-ndjson",
        headers={"X-Step-Log-Next-Offset": str(offset + len(lines))},
    )


@events.init.add_listener
def on_init(environment: Environment, **_kwargs: Any) -> None:
    options = environment.parsed_options
    if options is None:  # used as a library without the command line
        return
    try:
        WORKLOAD.configure(options)
        _check_options(options)
    except (OSError, ValueError) as error:
        logger.error("penguin load test: %s", error)
        raise SystemExit(2) from error
    if options.report_interval > 0:
        # Per-second reports keep the web UI and the CSV history close to live.
        locust.runners.WORKER_REPORT_INTERVAL = options.report_interval
    runner = environment.runner
    if runner is None:
        return
    if not isinstance(runner, MasterRunner):
        runner.register_message(STEP_MESSAGE, _on_step_message)
        environment.events.spawning_complete.add_listener(freeze_spawned_users)
    if not isinstance(runner, WorkerRunner):
        runner.register_message(STATS_MESSAGE, _on_stats_message)
        runner.register_message(WINDOW_MESSAGE, _on_windows_message)
    web_ui = environment.web_ui
    if web_ui is not None:
        web_ui.app.add_url_rule(
            "/penguin/steps", "penguin_steps", web_ui.auth_required_if_enabled(_steps_route)
        )


def _check_options(options: Any) -> None:
    checks = [
        (options.user_rate > 0, "--user-rate must be > 0"),
        (options.batch_size > 0, "--batch-size must be > 0"),
        (options.batch_weight >= 0, "--batch-weight must be >= 0"),
        (options.start_rate > 0, "--start-rate must be > 0"),
        (options.growth > 1, "--growth must be > 1"),
        (options.precision > 0, "--precision must be > 0"),
        (options.ceiling >= 0, "--ceiling must be >= 0 (0: none)"),
        (options.step_seconds > 0, "--step-seconds must be > 0"),
        (options.soak_steps > 0, "--soak-steps must be > 0"),
        (
            0 <= options.settle_seconds < options.step_seconds,
            "--settle-seconds must be >= 0 and shorter than --step-seconds",
        ),
        (options.request_timeout > 0, "--request-timeout must be > 0"),
        (
            options.confirm_seconds == 0 or options.confirm_seconds > options.settle_seconds,
            "--confirm-seconds must be 0 (none) or longer than --settle-seconds",
        ),
        (
            not options.holds_only or options.confirm_seconds > 0,
            "--holds-only needs --confirm-seconds > 0 (the length of each hold)",
        ),
        (options.drain_timeout > 0, "--drain-timeout must be > 0"),
        (options.max_in_flight > 0, "--max-in-flight must be > 0"),
        (options.p95_ms > 0, "--p95-ms must be > 0"),
    ]
    check_think_time(options.think_min, options.think_max)
    if options.load_profile == "spike":
        spike_step_rates(options.start_rate, options.spike_rate, spike_counts(options.spike_steps))
    for ok, message in checks:
        if not ok:
            raise ValueError(message)


def objective_from(options: Any) -> Objective:
    return Objective(
        p95_ms=options.p95_ms,
        p99_ms=options.p99_ms or None,
        max_failure_ratio=options.max_failure_ratio,
        min_completion_ratio=options.min_completion_ratio,
        max_late_ratio=options.max_late_ratio,
    )


class OpenModelUser(User):
    """One arrival source per generator process (open model): sends its share of each step's
    rate on a schedule, every request in a greenlet of its own, so a slow answer never delays
    the next request. Latency is taken from the intended send time."""

    # The shape names the user classes of each profile: this one for search and staircase.
    weight = 1

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.rng = random.Random()
        self.http = HTTPClient.from_url(
            self.host,
            concurrency=options.max_in_flight,
            headers=JSON_HEADERS,
            connection_timeout=options.request_timeout,
            network_timeout=options.request_timeout,
        )
        self.done_index = -1

    def on_stop(self) -> None:
        self.http.close()

    @task
    def follow_steps(self) -> None:
        while True:
            plan = OPEN_STEPS.wait_after(self.done_index)
            self.done_index = plan.index
            report = self._run_step(plan)
            self.environment.runner.send_message(STATS_MESSAGE, report)

    def _run_step(self, plan: StepPlan) -> dict[str, Any]:
        recorder = StepRecorder(plan)
        pool = gevent.pool.Pool(plan.max_in_flight)
        start = time.monotonic()
        for offset in arrival_offsets(plan.rate_per_user, plan.duration_s, plan.arrival, self.rng):
            delay = start + offset - time.monotonic()
            if delay > 0:
                gevent.sleep(delay)
            if pool.full():
                recorder.arrival(offset, sent=False)
                continue
            recorder.arrival(offset, sent=True)
            pool.spawn(self._request, start, offset, recorder)
        # Every request of the step has an answer or a timeout before the step is reported.
        pool.join(timeout=plan.timeout_s + 1.0)
        pool.kill(block=False)
        return recorder.to_message()

    def _request(self, start: float, offset: float, recorder: StepRecorder) -> None:
        sent = time.monotonic()
        scheduled_wall = time.time() - (sent - (start + offset))
        headers = {**JSON_HEADERS, SCHEDULED_HEADER: f"{scheduled_wall:.6f}"}
        method, url, answer = _send_next(
            self.http, self.environment.parsed_options, self.rng, headers
        )
        finished = time.monotonic()
        if answer.timed_out:
            failure: str | None = "timeout"
        elif answer.status == 0:
            # Connection refused or reset, or an answer that is not HTTP.
            failure = (
                "invalid answer" if isinstance(answer.error, ValueError) else "connection error"
            )
        elif not answer.accepted:
            failure = f"HTTP {answer.status}"
        else:
            failure = "invalid answer" if answer.problem else None
        recorder.outcome(offset, sent - start - offset, finished - sent, failure, finished - start)
        exception = answer.error
        if failure is not None and exception is None:
            exception = RuntimeError(failure)
        self.environment.events.request.fire(
            request_type=method,
            name=url,
            response_time=(finished - start - offset) * 1000.0,
            response_length=answer.length,
            exception=exception,
            context={},
        )


class _PacedUser(FastHttpUser):
    """Closed model: sends --user-rate requests/s while its answers keep up (workshop, plain).
    A slow service delays the next request, so the offered rate falls with the service: use the
    open-model profiles to measure capacity."""

    abstract = True

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.rng = random.Random()
        self._next_start: float | None = None

    def wait_time(self) -> float:
        interval = 1.0 / self.environment.parsed_options.user_rate
        now = time.monotonic()
        if self._next_start is None:
            # Spread the first requests over one interval instead of a burst at spawn time.
            self._next_start = now + self.rng.uniform(0.0, interval)
        else:
            self._next_start = max(self._next_start + interval, now)
        return max(0.0, self._next_start - now)

    def _post_checked(self, url: str, body: object, check: Any) -> None:
        with self.client.post(url, json=body, name=url, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}: {(response.text or '')[:200]}")
                return
            try:
                payload = response.json()
            except ValueError:
                response.failure("response is not JSON")
                return
            problem = check(payload)
            if problem:
                response.failure(problem)
            else:
                response.success()


class PredictUser(_PacedUser):
    """Closed model: predictions (and batches with --batch-weight) with realistic bodies."""

    weight = 1

    @task
    def predict(self) -> None:
        if WORKLOAD.targets:
            self._send_target(pick_target_request(WORKLOAD.targets, self.rng))
            return
        self._post_checked(*WORKLOAD.request(self.environment.parsed_options, self.rng))

    def _send_target(self, target: TargetRequest) -> None:
        with self.client.request(
            target.method,
            target.path,
            data=target.body,
            headers={**JSON_HEADERS, **target.headers},
            name=target.path,
            catch_response=True,
        ) as response:
            if target.accepts(response.status_code):
                response.success()
            else:
                response.failure(f"status {response.status_code}, expected {target.expected()}")


class WorkshopUser(User):
    """Closed model, the course's user: POST /predict, then a think time uniform in
    [--think-min, --think-max] s. Each outcome also goes to the per-second windows, with
    successful answers and 503 refusals timed apart.

    Sent with geventhttpclient's HTTPClient, one kept-alive connection per user, not through
    FastHttpUser's session: the session's cookie jar, URL and response wrappers cost more CPU
    than the request itself, and 10 000 users on a 2-core machine are limited by the
    generator's CPU. Every request still reaches Locust's statistics and web UI."""

    weight = 1

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.rng = random.Random()
        self.http = HTTPClient.from_url(
            self.host,
            concurrency=1,
            headers=JSON_HEADERS,
            connection_timeout=options.request_timeout,
            network_timeout=options.request_timeout,
        )

    def on_stop(self) -> None:
        self.http.close()

    def wait_time(self) -> float:
        options = self.environment.parsed_options
        return think_time(self.rng, options.think_min, options.think_max)

    @task
    def predict(self) -> None:
        started = time.monotonic()
        method, url, answer = _send_next(self.http, self.environment.parsed_options, self.rng)
        latency = time.monotonic() - started
        # A target's expected status is its success; another status keeps its own kind (a 200
        # it did not expect is a wrong answer).
        status = 200 if answer.accepted else answer.status
        kind = outcome_kind(status, answer.timed_out, answer.problem)
        CLOSED_WINDOWS.recorder.record(time.time(), latency, kind)
        exception = None
        if kind != "ok":
            # The transport's own error; a wrong or unreadable body is named by its problem.
            exception = (
                RuntimeError(answer.problem or kind)
                if answer.status
                else answer.error or RuntimeError(kind)
            )
        self.environment.events.request.fire(
            request_type=method,
            name=url,
            response_time=latency * 1000.0,
            response_length=answer.length,
            exception=exception,
            context={},
        )


def external_user_classes(environment: Environment) -> list[type[User]]:
    """The user classes of the other locustfiles Locust was given (-f ours,theirs)."""
    found = [
        cls for cls in environment.available_user_classes.values() if cls.__module__ != __name__
    ]
    if not found:
        raise RuntimeError("--external-users: no locustfile besides this one defines a User")
    return found


@events.request.add_listener
def on_request(
    response_time: float,
    response: Any = None,
    exception: BaseException | None = None,
    **_kwargs: Any,
) -> None:
    """A user's own users send through Locust's clients: their outcomes reach the per-second
    windows from here. (Ours record themselves; this listener ignores them.)"""
    if not CLOSED_WINDOWS.external:
        return
    status = int(getattr(response, "status_code", 0) or 0)
    CLOSED_WINDOWS.recorder.record(
        time.time(), response_time / 1000.0, event_outcome_kind(status, exception)
    )


class PenguinShape(LoadTestShape):
    """Dispatches on --load-profile. Reads -u/-r/-t itself (use_common_options) for `plain`.

    For the open profiles the shape is the master's step driver: it starts one OpenModelUser per
    generator process, tells them each step's rate, collects their reports, judges the step and
    asks the search for the next rate."""

    use_common_options = True

    def __init__(self) -> None:
        super().__init__()
        self._clear()

    def _clear(self) -> None:
        self._steps: list[Step] | None = None
        self._current: Step | None = None
        self._open: _OpenDriver | None = None

    def reset_time(self) -> None:
        # Every start (also from the web UI, with edited options) builds a fresh schedule.
        super().reset_time()
        self._clear()

    def add_report(self, report: dict[str, Any]) -> None:
        if self._open is not None:
            self._open.reports[int(report["index"])].append(report)

    def tick(self) -> tuple[int, float] | tuple[int, float, list[type[User]]] | None:
        options = self.runner.environment.parsed_options
        if options.load_profile in OPEN_PROFILES:
            if self._open is None:
                self._open = _OpenDriver(self.runner, options)
            return self._open.tick()
        if self._steps is None:
            self._steps = self._closed_steps(options)
        step = step_at(self._steps, self.get_run_time())
        if step is not self._current:
            self._current = step
            _log(
                options,
                {
                    "event": "step",
                    **step.as_dict(),
                    "end_s": None if math.isinf(step.end_s) else step.end_s,
                }
                if step
                else {"event": "end"},
            )
        if step is None:
            return None
        if options.load_profile == "workshop" and options.external_users:
            return step.users, step.spawn_rate, external_user_classes(self.runner.environment)
        users = WorkshopUser if options.load_profile == "workshop" else PredictUser
        return step.users, step.spawn_rate, [users]

    @staticmethod
    def _closed_steps(options: Any) -> list[Step]:
        if options.load_profile == "workshop":
            return workshop_steps(
                options.workshop_users, options.workshop_spawn_rate, options.hold_seconds
            )
        return plain_steps(
            options.num_users or 1, options.spawn_rate or 1.0, options.run_time or None
        )


class _OpenDriver:
    """The master's side of an open-model run, advanced by the shape's 1 s tick."""

    def __init__(self, runner: Any, options: Any) -> None:
        self.runner = runner
        self.options = options
        self.objective = objective_from(options)
        if options.load_profile == "search" and options.holds_only:
            self.search: RateSearch | HoldSearch | FixedSteps = HoldSearch(
                options.start_rate, options.precision
            )
        elif options.load_profile == "search":
            self.search = RateSearch(
                options.start_rate,
                options.growth,
                options.precision,
                options.ceiling or None,
                options.max_steps,
                confirm=options.confirm_seconds > 0,
            )
        elif options.load_profile == "soak":
            self.search = FixedSteps(
                [options.start_rate] * options.soak_steps, stop_on_failure=False
            )
        elif options.load_profile == "spike":
            rates = spike_step_rates(
                options.start_rate, options.spike_rate, spike_counts(options.spike_steps)
            )
            self.search = FixedSteps(rates, stop_on_failure=False)
        else:
            self.search = FixedSteps(
                staircase_rates(options.start_rate, options.step_rate, options.max_rate)
            )
        # One arrival source per generator process; a local run is one process.
        self.users = max(1, getattr(runner, "worker_count", 1))
        self.reports: dict[int, list[dict[str, Any]]] = defaultdict(list)
        self.results: list[Any] = []
        self.plan: StepPlan | None = None
        self.started_wall = 0.0
        self.step_end = 0.0
        self.report_deadline = 0.0
        self.resume_at = 0.0
        # The wait before the next step: when the last step was finished, and the probe's wait.
        self.finished_at = 0.0
        self.drain: DrainWait | None = None
        self.confirming = False
        self.waited_s = 0.0
        self.probe = http_probe(options.drain_probe_url) if options.drain_probe_url else None

    def tick(self) -> tuple[int, float, list[type[User]]] | None:
        keep = (self.users, float(self.users), [OpenModelUser])
        now = time.monotonic()
        if self.plan is None:
            if self.runner.user_count >= self.users:
                return keep if self._next_step() else None
            return keep
        if now < self.step_end:
            return keep
        if self.step_end > 0:
            if len(self.reports[self.plan.index]) < self.users and now < self.report_deadline:
                return keep
            self._finish_step()
            self.step_end = 0.0
        if self.drain is not None and not self.drain.poll():
            return keep
        if now < self.resume_at:
            return keep
        return keep if self._next_step() else None

    def _next_step(self) -> bool:
        rate = self.search.next_rate()
        if rate is None:
            knee = knee_step(self.results)
            logger.info(
                "search over (%s); knee %s",
                self.search.outcome,
                f"{knee.throughput_rps:.1f} req/s served at {knee.rate:.1f} offered"
                if knee
                else "none",
            )
            _log(
                self.options,
                {
                    "event": "end",
                    "outcome": self.search.outcome,
                    "knee_rate": knee.rate if knee else None,
                    "knee_served_rps": knee.throughput_rps if knee else None,
                },
            )
            return False
        options = self.options
        index = len(self.results)
        if index == 0:
            _log(
                options,
                {
                    "event": "start",
                    "profile": options.load_profile,
                    "generators": self.users,
                    "objective": self.objective.__dict__,
                    "arrival": options.arrival,
                    "step_seconds": options.step_seconds,
                    "settle_seconds": options.settle_seconds,
                },
            )
        confirming = isinstance(self.search, HoldSearch) or (
            isinstance(self.search, RateSearch) and self.search.confirming is not None
        )
        self.plan = StepPlan(
            index=index,
            rate=round(rate, 3),
            rate_per_user=rate / self.users,
            duration_s=options.confirm_seconds if confirming else options.step_seconds,
            settle_s=options.settle_seconds,
            arrival=options.arrival,
            timeout_s=options.request_timeout,
            late_ms=options.late_ms,
            max_in_flight=options.max_in_flight,
        )
        self.started_wall = time.time()
        self.confirming = confirming
        self.waited_s = time.monotonic() - self.finished_at if self.finished_at else 0.0
        self.step_end = time.monotonic() + self.plan.duration_s
        self.report_deadline = self.step_end + options.request_timeout + REPORT_GRACE_S
        logger.info(
            "step %d: %.1f req/s for %g s%s",
            index,
            rate,
            self.plan.duration_s,
            " (confirmation)" if confirming else "",
        )
        self.runner.send_message(STEP_MESSAGE, self.plan.to_message())
        return True

    def _finish_step(self) -> None:
        assert self.plan is not None
        result = merge_reports(self.plan, self.reports.pop(self.plan.index, []), self.users)
        result.started, result.ended = self.started_wall, time.time()
        result.confirmation = self.confirming
        result.drain_wait_s = round(self.waited_s, 3)
        drain = self.drain.record() if self.drain is not None else {}
        if self.drain is not None:
            result.drain_proven = self.drain.quiet
            result.drain_timed_out = self.drain.timed_out
        judge(result, self.objective)
        self.finished_at, self.drain = time.monotonic(), None
        # An overloaded service still works off the requests it queued, also those whose
        # clients gave up: the next step waits until the probe shows that backlog gone, or it
        # would measure it too (after one overloaded step, rates that passed would fail).
        # Without a probe, a failing step is followed by a pause of estimated length. (A soak or
        # a spike holds its schedule: a pause would hide what it is there to see.)
        held = self.options.load_profile in HELD_PROFILES
        if not held and self.probe is not None:
            self.drain = DrainWait(self.probe, self.options.drain_timeout)
        elif not held and not result.passed:
            self.resume_at = time.monotonic() + drain_seconds(result, self.options.request_timeout)
        self.search.record(self.plan.rate, result.passed, result.generator_limited)
        self.results.append(result)
        figures = result.percentiles_ms()
        logger.info(
            "step %d: offered %.1f, served %.1f req/s, p95 %s ms, late %.2f%%: %s",
            result.index,
            result.rate,
            result.throughput_rps,
            figures["p95"],
            100 * result.late_ratio,
            "pass" if result.passed else "; ".join(result.reasons),
        )
        _log(self.options, {"event": "step", **result.to_record(), **drain})


def _log(options: Any, record: dict[str, Any]) -> None:
    """Appends one JSON line to --step-log (the matrix reads the steps from it)."""
    line = json.dumps({"time": time.time(), **record})
    STEP_EVENTS.append(line)
    if not options.step_log:
        return
    with open(options.step_log, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")


@events.test_start.add_listener
def on_test_start(environment: Environment, **_kwargs: Any) -> None:
    options = environment.parsed_options
    if not isinstance(environment.runner, WorkerRunner):
        STEP_EVENTS.clear()
    if not isinstance(environment.runner, MasterRunner) and options.load_profile == "workshop":
        CLOSED_WINDOWS.start(environment)
    if isinstance(environment.runner, MasterRunner):
        logger.info(
            "penguin load test: profile %s, model mix %s",
            options.load_profile,
            options.model_mix or "every model the API serves, equal shares",
        )
    elif (
        not options.model_mix
        and environment.host
        and not WORKLOAD.targets
        and not options.external_users
    ):
        WORKLOAD.use_served_models(environment.host)


def freeze_spawned_users(**_kwargs: Any) -> None:
    """A generator's spawning_complete listener (on_init registers it: Locust's event passes
    only the user count, not the environment, so the runner's kind is known there only).

    With every user started, a worker holds ~200 000 long-lived objects (10 000 users'
    greenlets, clients and sockets), and each full garbage collection walked them all: 11 of
    them in a 50 s run (20 s ramp, 30 s hold) took up to 243 ms each, stalling every user of
    that process at once, which showed as latency spikes of successes and refusals alike.
    Frozen, they are left out.
    No gc.collect() first: that one pass over everything would be the very stall avoided."""
    gc.freeze()


@events.test_stop.add_listener
def on_test_stop(environment: Environment, **_kwargs: Any) -> None:
    if not isinstance(environment.runner, MasterRunner):
        CLOSED_WINDOWS.stop(environment)
        gc.unfreeze()  # the stopped users' objects may be collected again
