"""Penguin classifier load test.

Runs the same way standalone, with --processes N, and as master + workers in the Swarm stack:

    locust -f locust/locustfile.py --host http://127.0.0.1:8000 --headless \
        --load-profile staircase --start-rate 20 --step-rate 20 --step-seconds 15 --max-rate 200 \
        --model-mix lr=0.5,rf=0.3,svm=0.2 --csv results/run --csv-full-history

Profiles (--load-profile, env LOCUST_LOAD_PROFILE; Locust itself owns --profile): `plain`
honours -u/-r/-t; `workshop` ramps to --workshop-users at --workshop-spawn-rate users/s and
holds --hold-seconds (the original 10 000-user experiment); `staircase` holds constant arrival
rates rising by --step-rate every --step-seconds, users x --user-rate = the target rate.
Every custom option also has a LOCUST_* environment variable (`locust -f locustfile.py --help`).
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Any

import locust.runners
from loadtest_data import (
    BodySampler,
    check_batch,
    check_prediction,
    find_data_file,
    load_rows,
    parse_model_mix,
)
from loadtest_profiles import (
    PROFILES,
    WORKSHOP_SPAWN_RATE,
    WORKSHOP_USERS,
    Step,
    plain_steps,
    staircase_steps,
    step_at,
    workshop_steps,
)
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment
from locust.runners import MasterRunner

from locust import LoadTestShape, events, task

logger = logging.getLogger("penguin-loadtest")
HERE = Path(__file__).resolve().parent
DEFAULT_MODEL_MIX = "lr=0.5,rf=0.3,svm=0.2"


@events.init_command_line_parser.add_listener
def add_arguments(parser: Any) -> None:
    group = parser.add_argument_group("penguin load test")
    group.add_argument("--load-profile", choices=PROFILES, default="plain",
                       env_var="LOCUST_LOAD_PROFILE",
                       help="load profile: plain (-u/-r/-t), workshop or staircase")
    group.add_argument("--model-mix", default=DEFAULT_MODEL_MIX, env_var="LOCUST_MODEL_MIX",
                       help="share of requests per model, e.g. lr=0.5,rf=0.3,svm=0.2")
    group.add_argument("--data-file", default="", env_var="LOCUST_DATA_FILE",
                       help="penguins_size.csv (default: next to the locustfile or ../data/)")
    group.add_argument("--noise", type=float, default=0.02, env_var="LOCUST_NOISE",
                       help="measurement noise as a fraction of each feature's std deviation")
    group.add_argument("--user-rate", type=float, default=1.0, env_var="LOCUST_USER_RATE",
                       help="requests/s each user sends (constant throughput pacing)")
    group.add_argument("--batch-weight", type=int, default=0, env_var="LOCUST_BATCH_WEIGHT",
                       help="weight of BatchPredictUser against PredictUser's 1 (0: no batches)")
    group.add_argument("--batch-size", type=int, default=20, env_var="LOCUST_BATCH_SIZE",
                       help="instances per /predict/batch request")
    group.add_argument("--start-rate", type=float, default=10.0, env_var="LOCUST_START_RATE",
                       help="staircase: first arrival rate, requests/s")
    group.add_argument("--step-rate", type=float, default=10.0, env_var="LOCUST_STEP_RATE",
                       help="staircase: rate added per step, requests/s")
    group.add_argument("--step-seconds", type=float, default=30.0, env_var="LOCUST_STEP_SECONDS",
                       help="staircase: duration of each step")
    group.add_argument("--max-rate", type=float, default=200.0, env_var="LOCUST_MAX_RATE",
                       help="staircase: highest arrival rate, requests/s")
    group.add_argument("--stop-p95-ms", type=float, default=0.0, env_var="LOCUST_STOP_P95_MS",
                       help="staircase: stop after a step whose p95 exceeds this (0: never)")
    group.add_argument("--stop-failure-ratio", type=float, default=0.0,
                       env_var="LOCUST_STOP_FAILURE_RATIO",
                       help="staircase: stop after a step whose failure ratio exceeds this"
                            " (0: never)")
    group.add_argument("--stop-min-throughput-ratio", type=float, default=0.0,
                       env_var="LOCUST_STOP_MIN_THROUGHPUT_RATIO",
                       help="staircase: stop after a step that served less than this share of"
                            " its rate (0: never)")
    group.add_argument("--workshop-users", type=int, default=WORKSHOP_USERS,
                       env_var="LOCUST_WORKSHOP_USERS", help="workshop: users to ramp to")
    group.add_argument("--workshop-spawn-rate", type=float, default=WORKSHOP_SPAWN_RATE,
                       env_var="LOCUST_WORKSHOP_SPAWN_RATE",
                       help="workshop: users started per second")
    group.add_argument("--hold-seconds", type=float, default=300.0, env_var="LOCUST_HOLD_SECONDS",
                       help="workshop: how long to hold the full user count")
    group.add_argument("--report-interval", type=float, default=1.0,
                       env_var="LOCUST_REPORT_INTERVAL",
                       help="seconds between worker stats reports (Locust's default is 3)")
    group.add_argument("--step-log", default="", env_var="LOCUST_STEP_LOG",
                       help="file the master appends one JSON line per profile step to")


class _Workload:
    """Per-process state built once from the options: the body sampler and the model mix."""

    def __init__(self) -> None:
        self.sampler: BodySampler | None = None
        self.models: list[str] = []
        self.weights: list[float] = []
        self._mix_text = ""

    def configure(self, options: Any) -> None:
        rows = load_rows(find_data_file(options.data_file or None, HERE))
        self.sampler = BodySampler(rows, noise=options.noise)
        self._set_mix(options.model_mix)

    def _set_mix(self, text: str) -> None:
        mix = parse_model_mix(text)
        self.models, self.weights = list(mix), list(mix.values())
        self._mix_text = text

    def pick_model(self, options: Any, rng: random.Random) -> str:
        # Workers get the master's options with each spawn message, so follow changes here.
        if options.model_mix != self._mix_text:
            self._set_mix(options.model_mix)
        return rng.choices(self.models, self.weights)[0]

    def body(self, rng: random.Random) -> dict[str, object]:
        if self.sampler is None:
            raise RuntimeError("workload not configured (the init event did not run)")
        return self.sampler.sample(rng)


WORKLOAD = _Workload()


@events.init.add_listener
def on_init(environment: Environment, **_kwargs: Any) -> None:
    options = environment.parsed_options
    if options is None:  # used as a library without the command line
        return
    try:
        WORKLOAD.configure(options)
        if options.user_rate <= 0:
            raise ValueError(f"--user-rate must be > 0, got {options.user_rate}")
        if options.batch_size <= 0:
            raise ValueError(f"--batch-size must be > 0, got {options.batch_size}")
    except (OSError, ValueError) as error:
        logger.error("penguin load test: %s", error)
        raise SystemExit(2) from error
    if options.report_interval > 0:
        # Per-second reports make the master's history resolve a step's rate; with Locust's
        # 3 s default a 10 s step holds only three uneven samples per worker.
        locust.runners.WORKER_REPORT_INTERVAL = options.report_interval
    classes = environment.user_classes
    if options.batch_weight > 0:
        BatchPredictUser.weight = options.batch_weight
    elif len(classes) > 1 and BatchPredictUser in classes:
        classes.remove(BatchPredictUser)


class _PacedUser(FastHttpUser):
    """Sends --user-rate requests/s whatever the response time (constant throughput), so a
    step's arrival rate is users x rate and a slow service shows up as latency, not as a lower
    offered load."""

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

    def _post_checked(self, path: str, model: str, body: object, check: Any) -> None:
        with self.client.post(
            f"{path}?model={model}", json=body, name=f"{path}?model={model}", catch_response=True
        ) as response:
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
    """Single predictions with realistic bodies, models chosen by --model-mix."""

    weight = 1

    @task
    def predict(self) -> None:
        options = self.environment.parsed_options
        model = WORKLOAD.pick_model(options, self.rng)
        self._post_checked("/predict", model, WORKLOAD.body(self.rng),
                           lambda payload: check_prediction(payload, model))


class BatchPredictUser(_PacedUser):
    """Batch predictions of --batch-size bodies (enabled with --batch-weight > 0)."""

    weight = 1

    @task
    def predict_batch(self) -> None:
        options = self.environment.parsed_options
        model = WORKLOAD.pick_model(options, self.rng)
        size = options.batch_size
        body = {"instances": [WORKLOAD.body(self.rng) for _ in range(size)]}
        self._post_checked("/predict/batch", model, body,
                           lambda payload: check_batch(payload, model, size))


class PenguinShape(LoadTestShape):
    """Dispatches on --profile. Reads -u/-r/-t itself (use_common_options) for `plain`."""

    use_common_options = True

    def __init__(self) -> None:
        super().__init__()
        self._clear()

    def _clear(self) -> None:
        self._steps: list[Step] | None = None
        self._current: Step | None = None
        self._breaches = 0
        self._step_requests = 0
        self._step_failures = 0
        self._stopped = False

    def reset_time(self) -> None:
        # Every start (also from the web UI, with edited options) builds a fresh schedule.
        super().reset_time()
        self._clear()

    def _build(self) -> list[Step]:
        options = self.runner.environment.parsed_options
        if options.load_profile == "staircase":
            return staircase_steps(options.start_rate, options.step_rate, options.step_seconds,
                                   options.max_rate, options.user_rate)
        if options.load_profile == "workshop":
            return workshop_steps(options.workshop_users, options.workshop_spawn_rate,
                                  options.hold_seconds)
        return plain_steps(options.num_users or 1, options.spawn_rate or 1.0,
                           options.run_time or None)

    def tick(self) -> tuple[int, float] | None:
        if self._stopped:
            return None
        if self._steps is None:
            self._steps = self._build()
        step = step_at(self._steps, self.get_run_time())
        if step is not self._current:
            if self._current is not None and self._breached(self._current):
                self._breaches += 1
                logger.warning("step %d breached the stop objective", self._current.index)
                step = None
            self._stopped = step is None
            self._current = step
            self._log_step(step)
        return None if step is None else (step.users, step.spawn_rate)

    def _breached(self, finished: Step) -> bool:
        """Whether the step that just ended broke --stop-p95-ms, --stop-failure-ratio or
        --stop-min-throughput-ratio (judged on the master's counts, which lag up to one worker
        report; the matrix judges steps again from the history afterwards)."""
        options = self.runner.environment.parsed_options
        total = self.runner.stats.total
        requests = total.num_requests - self._step_requests
        failures = total.num_failures - self._step_failures
        self._step_requests, self._step_failures = total.num_requests, total.num_failures
        if options.load_profile != "staircase" or requests <= 0:
            return False
        p95 = total.get_current_response_time_percentile(0.95) or 0
        if options.stop_p95_ms > 0 and p95 > options.stop_p95_ms:
            return True
        served = requests / max(finished.end_s - finished.start_s, 1e-9)
        if (options.stop_min_throughput_ratio > 0 and finished.rate_rps
                and served < options.stop_min_throughput_ratio * finished.rate_rps):
            return True
        return options.stop_failure_ratio > 0 and failures / requests > options.stop_failure_ratio

    def _log_step(self, step: Step | None) -> None:
        path = self.runner.environment.parsed_options.step_log
        if not path:
            return
        record: dict[str, object] = {"time": time.time(), "run_time": self.get_run_time()}
        if step is None:
            record["event"] = "end"
        else:
            record.update(event="step", **step.as_dict())
            if math.isinf(step.end_s):
                record["end_s"] = None
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


@events.test_start.add_listener
def on_test_start(environment: Environment, **_kwargs: Any) -> None:
    if isinstance(environment.runner, MasterRunner):
        logger.info("penguin load test: profile %s, model mix %s",
                    environment.parsed_options.load_profile, environment.parsed_options.model_mix)
