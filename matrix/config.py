"""The matrix file (YAML) as typed models, validated before anything starts, plus the runner's
environment settings."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    JsonValue,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings

from loadtest.locustfile_check import check_locustfile
from loadtest.open_model import MAX_CONFIRM_STEPS, MAX_HOLDS
from loadtest.spike import phase_steps, spike_phases
from stack.env import component_config, env_error_text

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MATRIX_FILE = PROJECT_ROOT / "matrix" / "matrix.yaml"
MODEL_MANIFEST = PROJECT_ROOT / "models" / "manifest.json"
QUICK_MATRIX_FILE = PROJECT_ROOT / "matrix" / "matrix-quick.yaml"

_MEMORY_PATTERN = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?$", re.IGNORECASE)
_MEMORY_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
# Docker refuses containers below 6 MiB; anything under 64 MiB cannot hold the API anyway.
MIN_MEMORY_BYTES = 64 * 1024**2
# load_generator.model_mix for the workshop: POST /predict without a model (the service's
# default); the same word the locustfile takes.
DEFAULT_MODEL = "default"


def trained_models() -> list[str]:
    """The model names of the trained manifest (training and the service's registry write and
    read it); empty before the first training."""
    try:
        manifest = json.loads(MODEL_MANIFEST.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [str(name) for name in manifest.get("models", {})]


class MatrixFileError(ValueError):
    """A matrix file that cannot be used; the message names the file, the field and the fault."""


def memory_bytes(text: str) -> int:
    """'512M' / '1g' / '256MiB' / '1048576' -> bytes (Docker's binary units)."""
    match = _MEMORY_PATTERN.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a memory size like 256M, 1G or 536870912")
    return int(float(match.group(1)) * _MEMORY_UNITS[match.group(2).lower()])


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Objective(_Strict):
    """What a step must achieve to pass (judged by loadtest/open_model.py's judge())."""

    p95_ms: Annotated[float, Field(gt=0)] = 500.0
    p99_ms: Annotated[float | None, Field(gt=0)] = None
    max_failure_ratio: Annotated[float, Field(ge=0, le=1)] = 0.01
    # Share of the scheduled requests that must be answered successfully.
    min_completion_ratio: Annotated[float, Field(gt=0, le=1)] = 0.99


class _OpenStepsProfile(_Strict):
    """Steps of constant arrival rate, sent on schedule whatever the service answers."""

    step_seconds: Annotated[float, Field(ge=2, le=600)] = 10.0
    # Left out of every figure: the first moments after the rate changes.
    settle_seconds: Annotated[float, Field(ge=0)] = 1.0
    arrival: Literal["constant", "poisson"] = "constant"
    request_timeout_seconds: Annotated[float, Field(gt=0, le=120)] = 5.0

    @model_validator(mode="after")
    def _settle(self) -> _OpenStepsProfile:
        if self.settle_seconds >= self.step_seconds:
            raise ValueError(
                f"settle_seconds ({self.settle_seconds:g}) must be shorter than "
                f"step_seconds ({self.step_seconds:g})"
            )
        return self

    def step_cost_seconds(self) -> float:
        # A step, the wait for its last answers, and the master's 1 s tick.
        return self.step_seconds + 2.0


class SearchProfile(_OpenStepsProfile):
    """Rates grow by `growth` until a step fails, then bisect to within `precision`."""

    kind: Literal["search"]
    start_rate: Annotated[float, Field(gt=0)]
    growth: Annotated[float, Field(gt=1, le=10)] = 2.0
    precision: Annotated[float, Field(gt=0, lt=1)] = 0.05
    ceiling: Annotated[float | None, Field(gt=0)] = None  # a safety limit, not a target
    max_steps: Annotated[int, Field(ge=2, le=100)] = 30
    # After converging, hold the knee rate this long; the knee counts only if it holds, else
    # the rate steps down by `precision` (loadtest/open_model.py, RateSearch). 0: no such step.
    confirm_seconds: Annotated[float, Field(ge=0, le=600)] = 0.0
    # A cell's later trials bracket the knee its earlier ones measured: they start at this share
    # of their median knee and move by `later_growth` (matrix/measure/cell_load.py, later_start).
    later_start_share: Annotated[float, Field(gt=0, le=1)] = 0.9
    later_growth: Annotated[float, Field(gt=1, le=10)] = 1.1
    # Holds only, from start_rate (loadtest/open_model.py, HoldSearch): what a cell's later
    # trials run when the profile confirms its knees (cell_load.later_start sets it).
    holds_only: bool = False

    @model_validator(mode="after")
    def _ceiling(self) -> SearchProfile:
        if self.ceiling is not None and self.ceiling < self.start_rate:
            raise ValueError(
                f"ceiling ({self.ceiling:g}) is below start_rate ({self.start_rate:g})"
            )
        if 0 < self.confirm_seconds < self.step_seconds:
            raise ValueError(
                f"confirm_seconds ({self.confirm_seconds:g}) must be 0 (none) or at least "
                f"step_seconds ({self.step_seconds:g}): a shorter hold confirms nothing"
            )
        if self.holds_only and self.confirm_seconds == 0:
            raise ValueError("holds_only needs confirm_seconds > 0: the length of each hold")
        return self

    def hold_cost_seconds(self) -> float:
        # A hold, the wait for its last answers, and the master's 1 s tick.
        return self.confirm_seconds + 2.0

    def expected_steps(self) -> int:
        """A rough count for time estimates: climb to about 8x the start, then bisect."""
        climb = 4
        bisect = max(1, math.ceil(math.log2((self.growth - 1) / self.precision)))
        return min(self.max_steps, climb + bisect)

    def duration_seconds(self) -> float:
        # The confirmation steps come on top of max_steps, each with its drain wait.
        if self.holds_only:
            return MAX_HOLDS * self.hold_cost_seconds()
        return (
            self.max_steps * self.step_cost_seconds() + MAX_CONFIRM_STEPS * self.hold_cost_seconds()
        )

    def expected_seconds(self) -> float:
        if self.holds_only:  # the start holds, one above or below fails
            return 2 * self.hold_cost_seconds()
        return self.expected_steps() * self.step_cost_seconds() + self.confirm_seconds

    def later_trial_seconds(self) -> float:
        """A later trial's, for time estimates: holds only when the profile confirms."""
        if self.confirm_seconds > 0:
            return self.model_copy(update={"holds_only": True}).expected_seconds()
        return self.expected_seconds()


class StaircaseProfile(_OpenStepsProfile):
    """Fixed rates start_rate, + step_rate ... up to max_rate, ending at the first failure."""

    kind: Literal["staircase"]
    start_rate: Annotated[float, Field(gt=0)]
    step_rate: Annotated[float, Field(gt=0)]
    max_rate: Annotated[float, Field(gt=0)]

    @model_validator(mode="after")
    def _rates(self) -> StaircaseProfile:
        if self.max_rate < self.start_rate:
            raise ValueError(f"max_rate ({self.max_rate}) is below start_rate ({self.start_rate})")
        return self

    def steps(self) -> int:
        return int((self.max_rate - self.start_rate) // self.step_rate) + 1

    def duration_seconds(self) -> float:
        return self.steps() * self.step_cost_seconds()

    def expected_seconds(self) -> float:
        return self.duration_seconds()


class SoakProfile(_OpenStepsProfile):
    """One arrival rate held for `duration_seconds` (open model), reported per `step_seconds`
    (a minute by default): `rate`, or `knee_share` of `knee_rps` (a cell's measured knee).
    The analysis and its flags: matrix/analyse/soak.py."""

    kind: Literal["soak"]
    step_seconds: Annotated[float, Field(ge=10, le=600)] = 60.0
    duration_seconds_: Annotated[float, Field(gt=0, le=86_400, alias="duration_seconds")] = 1800.0
    rate: Annotated[float | None, Field(gt=0)] = None
    knee_rps: Annotated[float | None, Field(gt=0)] = None
    knee_share: Annotated[float, Field(gt=0, le=1)] = 0.7
    # Flags: memory growing faster than this (least-squares slope over the per-minute means),
    # and the last third's median p95 over the first third's above this ratio.
    max_memory_slope_mb_per_10min: Annotated[float, Field(gt=0)] = 5.0
    max_p95_drift: Annotated[float, Field(gt=1)] = 1.5

    @model_validator(mode="after")
    def _one_rate(self) -> SoakProfile:
        if (self.rate is None) == (self.knee_rps is None):
            raise ValueError("soak needs either rate or knee_rps (with knee_share), not both")
        if self.duration_seconds_ < 2 * self.step_seconds:
            raise ValueError(
                f"duration_seconds ({self.duration_seconds_:g}) must hold at least two "
                f"samples of step_seconds ({self.step_seconds:g})"
            )
        return self

    @property
    def held_rate(self) -> float:
        """The arrival rate the soak holds, req/s."""
        if self.rate is not None:
            return self.rate
        assert self.knee_rps is not None  # _one_rate
        return round(self.knee_share * self.knee_rps, 1)

    def steps(self) -> int:
        return math.ceil(self.duration_seconds_ / self.step_seconds - 1e-9)

    def duration_seconds(self) -> float:
        return self.steps() * self.step_cost_seconds()

    def expected_seconds(self) -> float:
        return self.duration_seconds()


class SpikeProfile(_OpenStepsProfile):
    """A spike (loadtest/spike.py): `base_share` of one replica's knee `knee_rps` for
    `lead_seconds`, then `multiple` x the knee for `peak_seconds`, then the base again for
    `tail_seconds`; steps of `step_seconds`, none skipped on failure. Run once per `autoscale`
    entry; the timeline and its times: matrix/analyse/spike.py."""

    kind: Literal["spike"]
    step_seconds: Annotated[float, Field(ge=2, le=60)] = 5.0
    # Every second of a spike counts: nothing left out of a step's figures.
    settle_seconds: Annotated[float, Field(ge=0)] = 0.0
    knee_rps: Annotated[float, Field(gt=0)]
    multiple: Annotated[float, Field(ge=1.5, le=10)] = 3.0
    base_share: Annotated[float, Field(gt=0, lt=1)] = 0.1
    lead_seconds: Annotated[float, Field(ge=0, le=3600)] = 20.0
    peak_seconds: Annotated[float, Field(gt=0, le=3600)] = 60.0
    tail_seconds: Annotated[float, Field(ge=0, le=3600)] = 90.0

    @property
    def base_rate(self) -> float:
        return round(self.base_share * self.knee_rps, 1)

    @property
    def peak_rate(self) -> float:
        return round(self.multiple * self.knee_rps, 1)

    def step_counts(self) -> tuple[int, int, int]:
        """Steps of the lead, the peak and the tail."""
        phases = spike_phases(
            self.base_rate, self.peak_rate, self.lead_seconds, self.peak_seconds, self.tail_seconds
        )
        counts = {phase.name: phase_steps(phase, self.step_seconds) for phase in phases}
        return counts.get("base", 0), counts["peak"], counts.get("after", 0)

    def steps(self) -> int:
        return sum(self.step_counts())

    def duration_seconds(self) -> float:
        return self.steps() * self.step_cost_seconds()

    def expected_seconds(self) -> float:
        return self.duration_seconds()


class PlainProfile(_Strict):
    kind: Literal["plain"]
    users: Annotated[int, Field(gt=0)]
    spawn_rate: Annotated[float, Field(gt=0)]
    duration_seconds_: Annotated[float, Field(gt=0, alias="duration_seconds")]
    user_rate: Annotated[float, Field(gt=0)] = 1.0

    def duration_seconds(self) -> float:
        return self.duration_seconds_

    def expected_seconds(self) -> float:
        return self.duration_seconds_


class WorkshopProfile(_Strict):
    """The course's closed-model load: `users` users started at `spawn_rate` per second, each
    posting and then thinking uniform(think_time) seconds, held `hold_seconds` after the ramp."""

    kind: Literal["workshop"]
    users: Annotated[int, Field(gt=0, le=100_000)] = 10_000
    spawn_rate: Annotated[float, Field(gt=0)] = 500.0
    hold_seconds: Annotated[float, Field(gt=0)] = 60.0
    think_time: tuple[Annotated[float, Field(ge=0)], Annotated[float, Field(ge=0)]] = (1.0, 2.5)
    # A request unanswered after this long counts as a timeout (Nginx gives up after 30 s).
    request_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 30.0

    @field_validator("think_time")
    @classmethod
    def _think(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[1] < value[0]:
            raise ValueError(
                f"think_time [{value[0]:g}, {value[1]:g}]: the first bound (min) "
                "must not exceed the second (max)"
            )
        return value

    @property
    def ramp_seconds(self) -> float:
        return self.users / self.spawn_rate

    def duration_seconds(self) -> float:
        return self.users / self.spawn_rate + self.hold_seconds

    def expected_seconds(self) -> float:
        return self.duration_seconds()


Profile = Annotated[
    SearchProfile | StaircaseProfile | SoakProfile | SpikeProfile | PlainProfile | WorkshopProfile,
    Field(discriminator="kind"),
]
OPEN_PROFILE_TYPES = (SearchProfile, StaircaseProfile, SoakProfile, SpikeProfile)


class Cells(_Strict):
    """The cartesian product replicas x cpus x memory, optionally capped in total CPU."""

    replicas: Annotated[list[Annotated[int, Field(ge=1, le=64)]], Field(min_length=1)]
    cpus: Annotated[list[Annotated[float, Field(gt=0, le=64)]], Field(min_length=1)]
    memory: Annotated[list[str], Field(min_length=1)]
    max_total_cpus: Annotated[float | None, Field(gt=0)] = None

    @field_validator("memory")
    @classmethod
    def _memory(cls, values: list[str]) -> list[str]:
        for value in values:
            if memory_bytes(str(value)) < MIN_MEMORY_BYTES:
                raise ValueError(f"{value!r} is below the 64M an API replica needs")
        return [str(v) for v in values]


class LoadGenerator(_Strict):
    # Where Locust runs: Locust from the host virtualenv with `processes` processes, or the
    # deployed stack's locust-master with `workers` locust-worker tasks, driven through the
    # master's HTTP API (the run shows live in its web UI).
    where: Literal["host", "stack"] = "host"
    workers: Annotated[int, Field(ge=1, le=64)] = 2
    processes: Annotated[int, Field(ge=1, le=256)] = 2
    # Average CPU share of its cores above which the load generator, not the service, is blamed.
    saturation: Annotated[float, Field(gt=0, le=1)] = 0.9
    # Open model: a request sent later than late_ms after its intended time is late; a step with
    # more than max_late_ratio late requests may be limited by the generator (see judge()).
    late_ms: Annotated[float, Field(gt=0)] = 10.0
    max_late_ratio: Annotated[float, Field(ge=0, le=1)] = 0.01
    # Requests each generator process keeps waiting for at most; further arrivals are dropped.
    max_in_flight: Annotated[int, Field(ge=1, le=100_000)] = 1000
    # Share per model, e.g. lr=0.5,rf=0.3; empty: every model the API serves, equal shares.
    model_mix: str = ""
    batch_weight: Annotated[int, Field(ge=0)] = 0
    # Request bodies: real rows with noise ('sampled'), or the workshop's one body ('seed').
    body: Literal["sampled", "seed"] = "sampled"
    # A user's own locustfile (relative to the matrix file), run on the stack's Locust beside
    # ours instead of the penguin users: the workshop profile's users and spawn rate, the
    # file's own requests and wait_time (matrix/README.md, "Your own locustfile").
    locustfile: Path | None = None

    @field_validator("locustfile")
    @classmethod
    def _locustfile(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        folder = (info.context or {}).get(BASE_DIR_CONTEXT)
        if value is None or value.is_absolute() or folder is None:
            return value
        return Path(folder) / value

    @field_validator("model_mix")
    @classmethod
    def _mix(cls, value: str) -> str:
        if not value.strip():
            return ""
        if value.strip() == DEFAULT_MODEL:
            return DEFAULT_MODEL
        weights: dict[str, float] = {}
        for part in value.split(","):
            name, sep, weight = part.partition("=")
            if not sep or not name.strip():
                raise ValueError(f"model_mix entry {part!r} is not name=weight")
            try:
                weights[name.strip()] = float(weight)
            except ValueError:
                raise ValueError(f"model_mix entry {part!r}: weight is not a number") from None
        if min(weights.values()) < 0 or sum(weights.values()) <= 0:
            raise ValueError("model_mix weights must be >= 0 with a positive sum")
        known = trained_models()
        unknown = set(weights) - set(known) if known else set()
        if unknown:
            raise ValueError(
                f"model_mix names unknown models {sorted(unknown)}; the trained "
                f"models are {', '.join(known)} ({MODEL_MANIFEST})"
            )
        return value


class ExplicitCell(_Strict):
    """One configuration listed by hand, optionally with what someone else observed on it."""

    replicas: Annotated[int, Field(ge=1, le=64)]
    cpus: Annotated[float, Field(gt=0, le=64)]
    memory: str
    # Printed beside ours in the report (e.g. the workshop's figures for this configuration).
    observation: str = ""
    # Before the profile's load, search this cell's knee with `reference_search` (host Locust,
    # open model), so the report can say what share of its capacity the cell served.
    search_first: bool = False

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str) -> str:
        if memory_bytes(str(value)) < MIN_MEMORY_BYTES:
            raise ValueError(f"{value!r} is below the 64M an API replica needs")
        return str(value)


class ClosedLoop(_Strict):
    """After a cell's trials, one short closed-loop run against the same cell: `users` Locust
    users sending their next request as soon as the last is answered (no think time), held for
    `seconds`, as wrk or ab would load it. Its served rate and p95 are reported beside the
    open-model knee, with why they differ."""

    enabled: bool = False
    users: Annotated[int, Field(ge=1, le=10_000)] = 64
    seconds: Annotated[float, Field(ge=2, le=600)] = 10.0

    def profile(self, request_timeout_seconds: float) -> WorkshopProfile:
        """The run as a workshop profile without think time, every user started in one second."""
        return WorkshopProfile(
            kind="workshop",
            users=self.users,
            spawn_rate=float(self.users),
            hold_seconds=self.seconds,
            think_time=(0.0, 0.0),
            request_timeout_seconds=request_timeout_seconds,
        )


# A target's own request paths and health path: absolute, no scheme or host (Nginx in front).
_PATH_PATTERN = re.compile(r"^/[^\s]*$")
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
# The validation context key for the folder a matrix file's relative paths start from
# (target.requests' body_file, load_generator.locustfile).
BASE_DIR_CONTEXT = "base_dir"


# What scripts/build_images.sh --example NAME --tag TAG --prefix '' tags its image.
EXAMPLES_DIR = PROJECT_ROOT / "examples"
_EXAMPLE_IMAGE = re.compile(r"^penguin-lab/example-([a-z0-9][a-z0-9-]*)(?::([\w][\w.-]*))?$")


def example_image_parts(image: str) -> tuple[str | None, str]:
    """The example's folder name and the tag of an image build_images.sh --example makes
    (`penguin-lab/example-NAME:TAG`, no tag: latest); (None, "") for any other image."""
    match = _EXAMPLE_IMAGE.match(image)
    if match is None:
        return None, ""
    return match.group(1), match.group(2) or "latest"


def _request_path(value: str) -> str:
    if not _PATH_PATTERN.match(value):
        raise ValueError(f"{value!r} is not a path like /predict (starting with /, no spaces)")
    return value


class TargetRequest(_Strict):
    """One request the load generator sends to a target, picked by `weight` among the others.
    `body_file` (relative to the matrix file) is read and parsed once, at validation: the model
    then holds the body itself, so the fingerprint covers what is sent and the file is no longer
    needed (a run folder keeps its matrix without the body files)."""

    method: str = "POST"
    path: str
    body: JsonValue = None
    body_file: str | None = None
    headers: dict[str, str] = {}
    # None: any 2xx counts as success.
    expect_status: Annotated[int | None, Field(ge=100, le=599)] = None
    weight: Annotated[float, Field(gt=0)] = 1.0

    @model_validator(mode="before")
    @classmethod
    def _read_body_file(cls, data: object, info: ValidationInfo) -> object:
        if not isinstance(data, dict) or data.get("body_file") is None:
            return data
        if data.get("body") is not None:
            raise ValueError("give either body or body_file, not both")
        base = Path((info.context or {}).get(BASE_DIR_CONTEXT) or ".")
        path = base / str(data["body_file"])
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise ValueError(f"body_file {path}: cannot read it ({error.strerror})") from None
        try:
            body = json.loads(text)
        except ValueError as error:
            raise ValueError(f"body_file {path} is not JSON: {error}") from None
        return {**data, "body": body, "body_file": None}

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        if value.upper() not in HTTP_METHODS:
            raise ValueError(f"{value!r} is not one of {', '.join(HTTP_METHODS)}")
        return value.upper()

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return _request_path(value)


class TargetSpec(_Strict):
    """Any model API in a local container image, measured in place of the penguin service: the
    image runs as the stack's api service behind the same Nginx, and the load generator sends
    `requests` (matrix/README.md, "Bring your own service")."""

    image: Annotated[str, Field(min_length=1)]
    port: Annotated[int, Field(ge=1, le=65535)]
    health_path: str = "/health"
    env: dict[str, str] = {}
    requests: Annotated[list[TargetRequest], Field(min_length=1)]
    # A folder of the repository's examples/ (relative to the matrix file) the lab builds the
    # image from, with scripts/build_images.sh --example, when the engine lacks it
    # (matrix/measure/target_build.py); None: the image must be there already.
    build: Path | None = None

    @field_validator("build")
    @classmethod
    def _build(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        folder = Path((info.context or {}).get(BASE_DIR_CONTEXT) or ".")
        resolved = (folder / value).resolve()
        if resolved.parent != EXAMPLES_DIR:
            raise ValueError(
                f"{resolved} is not a folder of {EXAMPLES_DIR}: the lab builds only the "
                "repository's examples (scripts/build_images.sh --example NAME); build your own "
                "image yourself and leave build out"
            )
        return resolved

    @model_validator(mode="after")
    def _built_image(self) -> TargetSpec:
        if self.build is not None:
            name, tag = example_image_parts(self.image)
            if name != self.build.name:
                raise ValueError(
                    f"build: {self.build.name} builds penguin-lab/example-{self.build.name}:TAG, "
                    f"so image must be that, not {self.image!r}"
                )
        return self

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if any(c.isspace() for c in value):
            raise ValueError(f"{value!r} is not an image name (it has spaces)")
        return value

    @field_validator("health_path")
    @classmethod
    def _health(cls, value: str) -> str:
        return _request_path(value)

    def requests_document(self) -> dict[str, object]:
        """The requests as the load generator reads them (loadtest/data.py target_requests)."""
        return {
            "requests": [
                request.model_dump(mode="json", exclude={"body_file"}) for request in self.requests
            ]
        }

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: object) -> object:
        # YAML writes numbers and booleans unquoted; the container sees text either way.
        if isinstance(value, dict):
            return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}
        return value


# Admission control per cell: 'stack' leaves Nginx as deployed, 'on' applies the stack file's
# default in-flight limit per replica, 'off' disables it, a number sets that limit.
Admission = Literal["stack", "on", "off"] | Annotated[int, Field(ge=1, le=100_000)]
# The autoscaler per cell: 'stack' leaves it as deployed, 'on' runs it (the stack must have been
# deployed with it: scripts/stack_up.sh --autoscale-from RUN), 'off' stops it for the cell.
Autoscale = Literal["stack", "on", "off"]


# The two forms of `cells`; pydantic puts the tag in error locations, _describe drops it.
_PRODUCT, _LIST = "<product>", "<list>"


class Cell(_Strict):
    replicas: int
    cpus: float
    memory: str
    admission: Admission = "stack"
    autoscale: Autoscale = "stack"
    observation: str = ""
    search_first: bool = False

    @property
    def config_id(self) -> str:
        """The configuration alone: the same for a cell measured with admission on and off."""
        return f"r{self.replicas}-c{self.cpus:g}-m{self.memory}"

    @property
    def cell_id(self) -> str:
        cell_id = self.config_id
        if self.admission != "stack":
            cell_id += f"-adm{self.admission}"
        if self.autoscale != "stack":
            cell_id += f"-as{self.autoscale}"
        return cell_id

    @property
    def total_cpus(self) -> float:
        return self.replicas * self.cpus

    @property
    def total_memory_bytes(self) -> int:
        return self.replicas * memory_bytes(self.memory)


class MatrixFile(_Strict):
    name: str = "matrix"
    description: str = ""
    # A cross product (replicas x cpus x memory), or a list of explicit cells.
    cells: Annotated[
        Annotated[Cells, Tag(_PRODUCT)]
        | Annotated[list[ExplicitCell], Tag(_LIST), Field(min_length=1)],
        Discriminator(lambda value: _LIST if isinstance(value, list) else _PRODUCT),
    ]
    # Each cell is measured once per entry (see Admission); ['stack']: as deployed.
    admission: Annotated[list[Admission], Field(min_length=1)] = ["stack"]
    # Each cell is measured once per entry (see Autoscale): [on, off] gives the comparison row.
    autoscale: Annotated[list[Autoscale], Field(min_length=1)] = ["stack"]
    profile: Profile
    reference_search: SearchProfile | None = None
    objective: Objective = Objective()
    target_rps: Annotated[float, Field(gt=0)]
    # Each cell is measured at least this many times. With a search or staircase profile,
    # further trials follow (up to max_trials, within cell_budget_seconds) until the knee's
    # 95 % interval lies within +-ci_target of the median (matrix/analyse/confidence.py).
    trials: Annotated[int, Field(ge=1, le=20)] = 1
    max_trials: Annotated[int | None, Field(ge=1, le=20)] = None  # None: exactly `trials`
    ci_target: Annotated[float, Field(gt=0, lt=1)] = 0.10
    # Wall-clock seconds of trials per cell: no further trial starts when the last one's
    # duration would not fit any more. None: no limit but max_trials.
    cell_budget_seconds: Annotated[float | None, Field(gt=0)] = None
    closed_loop: ClosedLoop = ClosedLoop()
    warmup_seconds: Annotated[float, Field(ge=0, le=600)] = 10.0
    load_generator: LoadGenerator = LoadGenerator()
    # Limits and reservations: reserve what is limited when it fits the node ('auto'), always,
    # or never. 'always' can leave tasks pending forever on a small node.
    reserve: Literal["auto", "always", "never"] = "auto"
    converge_timeout_seconds: Annotated[float, Field(gt=0)] = 180.0
    # Absent: the penguin service as the stack deploys it.
    target: TargetSpec | None = None

    @field_validator("autoscale", mode="before")
    @classmethod
    def _yaml_booleans(cls, value: object) -> object:
        # YAML 1.1 reads an unquoted on/off as true/false.
        if isinstance(value, list):
            return [
                {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v for v in value
            ]
        return value

    def cell_list(self) -> list[Cell]:
        if isinstance(self.cells, Cells):
            configs = [
                ExplicitCell(replicas=r, cpus=c, memory=m)
                for r, c, m in itertools.product(
                    self.cells.replicas, self.cells.cpus, self.cells.memory
                )
            ]
            if self.cells.max_total_cpus is not None:
                limit = self.cells.max_total_cpus + 1e-9
                configs = [c for c in configs if c.replicas * c.cpus <= limit]
        else:
            configs = list(self.cells)
        return [
            Cell(admission=admission, autoscale=autoscale, **config.model_dump())
            for config in configs
            for admission in self.admission
            for autoscale in self.autoscale
        ]

    @property
    def adaptive(self) -> bool:
        """Whether trials go on past `trials` until the knee's interval is narrow enough."""
        return (
            isinstance(self.profile, SearchProfile | StaircaseProfile)
            and (self.max_trials or self.trials) > self.trials
        )

    def expected_load_seconds(self) -> float:
        """A cell's load for time estimates: its trials (adaptive: up to the budget, or to
        max_trials without one), the closed loop and the warm-up."""
        first = self.profile.expected_seconds()
        profile = self.profile
        later = profile.later_trial_seconds() if isinstance(profile, SearchProfile) else first
        trials = first + (self.trials - 1) * later
        if self.adaptive:
            most = first + ((self.max_trials or self.trials) - 1) * later
            trials = max(trials, min(most, self.cell_budget_seconds or most))
        closed = self.closed_loop.seconds + 2 if self.closed_loop.enabled else 0.0
        return trials + closed + self.warmup_seconds

    def fingerprint(self) -> str:
        """Identifies the measurement plan, so a resumed run only continues the same matrix."""
        canonical = json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @model_validator(mode="after")
    def _non_empty(self) -> MatrixFile:
        cells = self.cell_list()
        if not cells:
            raise ValueError("cells: max_total_cpus leaves no cell to measure")
        ids = [c.cell_id for c in cells]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"cells: {', '.join(repeated)} listed more than once")
        if self.max_trials is not None and self.max_trials < self.trials:
            raise ValueError(
                f"max_trials ({self.max_trials}) is below trials ({self.trials}), the minimum"
            )
        if self.closed_loop.enabled and not isinstance(
            self.profile, SearchProfile | StaircaseProfile
        ):
            raise ValueError(
                "closed_loop: compares a closed loop with the open-model knee, so it needs a "
                "search or staircase profile"
            )
        if any(c.search_first for c in cells) and self.reference_search is None:
            raise ValueError("cells: search_first needs a reference_search profile")
        if "on" in self.autoscale and not isinstance(self.profile, SpikeProfile):
            raise ValueError(
                "autoscale: 'on' changes the replicas while the load runs; only the spike "
                "profile (kind: spike) is measured that way"
            )
        if self.load_generator.where == "stack" and not isinstance(
            self.profile, WorkshopProfile | PlainProfile
        ):
            raise ValueError(
                "load_generator.where: 'stack' runs the closed-model profiles "
                "(workshop, plain); search and staircase run from the host"
            )
        if self.load_generator.locustfile is not None and not (
            self.load_generator.where == "stack" and isinstance(self.profile, WorkshopProfile)
        ):
            raise ValueError(
                "load_generator.locustfile: a locustfile of your own runs on the stack's Locust "
                "with the workshop profile (load_generator.where: stack, profile.kind: workshop)"
            )
        if self.target is not None:
            self._check_target_generator()
        return self

    def _check_target_generator(self) -> None:
        """The penguin-only load settings mean nothing to another service: refused, not
        ignored."""
        generator = self.load_generator
        penguin_only = {
            "model_mix": generator.model_mix != "",
            "batch_weight": generator.batch_weight != 0,
            "body": generator.body != "sampled",
        }
        for name, set_ in penguin_only.items():
            if set_:
                raise ValueError(
                    f"load_generator.{name} is for the penguin service; with a target, "
                    "the load is target.requests"
                )
        # The stack's Locust sends the penguin requests, or a locustfile of the user's own.
        if generator.where == "stack" and generator.locustfile is None:
            raise ValueError(
                "load_generator.where: 'stack' with a target: the stack's Locust image sends "
                "the penguin requests; target.requests are sent from the host (where: host), "
                "or give the stack's Locust your own load_generator.locustfile"
            )


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = (
            ".".join(str(part) for part in item["loc"] if part not in (_PRODUCT, _LIST))
            or "(top level)"
        )
        lines.append(f"  {where}: {item['msg']}")
    return "\n".join(lines)


def load_matrix_file(
    path: Path,
    target: dict[str, object] | None = None,
    base_dir: Path | None = None,
    check_files: bool = True,
) -> MatrixFile:
    """Reads and validates a matrix file; raises MatrixFileError naming file, field and fault.
    `target` (the command line's target block) is put in the file's place for one; a
    `body_file` is read relative to `base_dir` (default: the matrix file's folder). With
    `check_files`, also the locustfile it names (a run's; not a finished run's report)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise MatrixFileError(f"{path}: cannot read the matrix file ({error.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise MatrixFileError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise MatrixFileError(f"{path}: the matrix file must be a YAML mapping at the top level")
    if target is not None:
        if "target" in data:
            raise MatrixFileError(
                f"{path}: has a target block already; leave out --target-image/--target-port/"
                "--request-file, or the block"
            )
        data = {**data, "target": target}
    context = {BASE_DIR_CONTEXT: str(base_dir if base_dir is not None else path.parent)}
    try:
        matrix = MatrixFile.model_validate(data, context=context)
    except ValidationError as error:
        raise MatrixFileError(f"{path}: invalid matrix file:\n{_describe(error)}") from None
    locustfile = matrix.load_generator.locustfile
    if check_files and locustfile is not None:
        problem = check_locustfile(locustfile)
        if problem is not None:
            raise MatrixFileError(
                f"{path}: invalid matrix file:\n  load_generator.locustfile: {problem}"
            )
    return matrix


ENV_PREFIX = "MATRIX_"


class MatrixSettings(BaseSettings):
    """Everything `python -m matrix` reads from the environment (matrix/README.md lists it).

    Its own variables carry the MATRIX_ prefix; the stack's (STACK_NAME, NGINX_PORT,
    LOCUST_WEB_PORT, PROMETHEUS_PORT) keep the names scripts/stack_up.sh and the stack file use,
    so one variable configures both. The command line overrides them by keyword (field names).
    """

    model_config = component_config(ENV_PREFIX)

    stack_name: str = Field("penguins", validation_alias="STACK_NAME")
    nginx_port: int = Field(8000, ge=1, le=65535, validation_alias="NGINX_PORT")
    results_dir: Path = PROJECT_ROOT / "results"
    docker_stats_interval: float = Field(2.0, gt=0)
    loadgen_sample_interval: float = Field(1.0, gt=0)
    # Where Nginx answers; unset: its published port on this host. `--cluster` sets it to the
    # cluster's edge node.
    base_url_override: str | None = Field(None, validation_alias="MATRIX_BASE_URL")
    # The stack's Locust master (load_generator.where: stack): its web UI / HTTP API.
    locust_web_port: int = Field(8089, ge=1, le=65535, validation_alias="LOCUST_WEB_PORT")
    # How the stack's Locust workers reach Nginx over the stack's network.
    stack_target_url: str = "http://nginx:8000"
    # The stack's Prometheus (server-side figures per step).
    prometheus_port: int = Field(9090, ge=1, le=65535, validation_alias="PROMETHEUS_PORT")
    # Unset: the published port on this host.
    prometheus_url_override: str | None = Field(None, validation_alias="MATRIX_PROMETHEUS_URL")

    @property
    def locust_url(self) -> str:
        return f"http://127.0.0.1:{self.locust_web_port}"

    @property
    def base_url(self) -> str:
        return (self.base_url_override or f"http://127.0.0.1:{self.nginx_port}").rstrip("/")

    @property
    def prometheus_url(self) -> str:
        return (self.prometheus_url_override or f"http://127.0.0.1:{self.prometheus_port}").rstrip(
            "/"
        )


class MatrixSettingsError(ValueError):
    """An environment value (or option) the matrix cannot use; the message names the variable."""


def load_settings(**overrides: object) -> MatrixSettings:
    """The environment's settings with `overrides` (field names) on top; MatrixSettingsError
    naming the variable and the fault for a bad value."""
    try:
        return MatrixSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise MatrixSettingsError(env_error_text(error, MatrixSettings)) from None
