"""The matrix file (YAML) as typed models, validated before anything starts, plus the runner's
environment settings."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MATRIX_FILE = PROJECT_ROOT / "matrix" / "matrix.yaml"
QUICK_MATRIX_FILE = PROJECT_ROOT / "matrix" / "matrix-quick.yaml"

_MEMORY_PATTERN = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?$", re.IGNORECASE)
_MEMORY_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
# Docker refuses containers below 6 MiB; anything under 64 MiB cannot hold the API anyway.
MIN_MEMORY_BYTES = 64 * 1024**2


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
    """What a step must achieve to count as served."""

    p95_ms: Annotated[float, Field(gt=0)] = 500.0
    max_failure_ratio: Annotated[float, Field(ge=0, le=1)] = 0.01
    # With constant-throughput users a saturated service also delivers less than offered. Not
    # stricter than 0.8: a short step's measured rate is only good to about +-10 %.
    min_throughput_ratio: Annotated[float, Field(ge=0, le=1)] = 0.8


class StaircaseProfile(_Strict):
    kind: Literal["staircase"]
    start_rate: Annotated[float, Field(gt=0)]
    step_rate: Annotated[float, Field(gt=0)]
    step_seconds: Annotated[float, Field(ge=5)]
    max_rate: Annotated[float, Field(gt=0)]
    user_rate: Annotated[float, Field(gt=0)] = 1.0
    stop_on_breach: bool = True

    @model_validator(mode="after")
    def _rates(self) -> StaircaseProfile:
        if self.max_rate < self.start_rate:
            raise ValueError(f"max_rate ({self.max_rate}) is below start_rate ({self.start_rate})")
        return self

    def steps(self) -> int:
        return int((self.max_rate - self.start_rate) // self.step_rate) + 1

    def duration_seconds(self) -> float:
        return self.steps() * self.step_seconds


class PlainProfile(_Strict):
    kind: Literal["plain"]
    users: Annotated[int, Field(gt=0)]
    spawn_rate: Annotated[float, Field(gt=0)]
    duration_seconds_: Annotated[float, Field(gt=0, alias="duration_seconds")]
    user_rate: Annotated[float, Field(gt=0)] = 1.0

    def duration_seconds(self) -> float:
        return self.duration_seconds_


class WorkshopProfile(_Strict):
    kind: Literal["workshop"]
    users: Annotated[int, Field(gt=0)] = 10_000
    spawn_rate: Annotated[float, Field(gt=0)] = 500.0
    hold_seconds: Annotated[float, Field(gt=0)] = 300.0
    user_rate: Annotated[float, Field(gt=0)] = 1.0

    def duration_seconds(self) -> float:
        return self.users / self.spawn_rate + self.hold_seconds


Profile = Annotated[StaircaseProfile | PlainProfile | WorkshopProfile, Field(discriminator="kind")]


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
    processes: Annotated[int, Field(ge=1, le=256)] = 2
    # Average CPU share of its cores above which the load generator, not the service, is blamed.
    saturation: Annotated[float, Field(gt=0, le=1)] = 0.9
    model_mix: str = "lr=0.5,rf=0.3,svm=0.2"
    batch_weight: Annotated[int, Field(ge=0)] = 0

    @field_validator("model_mix")
    @classmethod
    def _mix(cls, value: str) -> str:
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
        unknown = set(weights) - {"lr", "rf", "svm"}
        if unknown:
            raise ValueError(f"model_mix names unknown models {sorted(unknown)}; use lr, rf, svm")
        return value


class Cell(_Strict):
    replicas: int
    cpus: float
    memory: str

    @property
    def cell_id(self) -> str:
        return f"r{self.replicas}-c{self.cpus:g}-m{self.memory}"

    @property
    def total_cpus(self) -> float:
        return self.replicas * self.cpus

    @property
    def total_memory_bytes(self) -> int:
        return self.replicas * memory_bytes(self.memory)


class MatrixFile(_Strict):
    name: str = "matrix"
    description: str = ""
    cells: Cells
    profile: Profile
    objective: Objective = Objective()
    target_rps: Annotated[float, Field(gt=0)]
    warmup_seconds: Annotated[float, Field(ge=0, le=600)] = 10.0
    load_generator: LoadGenerator = LoadGenerator()
    # Limits and reservations: reserve what is limited when it fits the node ('auto'), always,
    # or never. 'always' can leave tasks pending forever on a small node.
    reserve: Literal["auto", "always", "never"] = "auto"
    converge_timeout_seconds: Annotated[float, Field(gt=0)] = 180.0

    def cell_list(self) -> list[Cell]:
        cells = [
            Cell(replicas=r, cpus=c, memory=m)
            for r, c, m in itertools.product(
                self.cells.replicas, self.cells.cpus, self.cells.memory)
        ]
        if self.cells.max_total_cpus is not None:
            cells = [c for c in cells if c.total_cpus <= self.cells.max_total_cpus + 1e-9]
        return cells

    def fingerprint(self) -> str:
        """Identifies the measurement plan, so a resumed run only continues the same matrix."""
        canonical = json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @model_validator(mode="after")
    def _non_empty(self) -> MatrixFile:
        if not self.cell_list():
            raise ValueError("cells: max_total_cpus leaves no cell to measure")
        return self


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"  {where}: {item['msg']}")
    return "\n".join(lines)


def load_matrix_file(path: Path) -> MatrixFile:
    """Reads and validates a matrix file; raises MatrixFileError naming file, field and fault."""
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
    try:
        return MatrixFile.model_validate(data)
    except ValidationError as error:
        raise MatrixFileError(f"{path}: invalid matrix file:\n{_describe(error)}") from None


class MatrixSettings(BaseSettings):
    """Environment knobs shared with the stack scripts (same names, no prefix)."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    stack_name: str = Field("penguins", validation_alias="STACK_NAME")
    nginx_port: int = Field(8000, validation_alias="NGINX_PORT")
    results_dir: Path = Field(PROJECT_ROOT / "results", validation_alias="MATRIX_RESULTS_DIR")
    docker_stats_interval: float = Field(2.0, validation_alias="MATRIX_DOCKER_STATS_INTERVAL")
    loadgen_sample_interval: float = Field(1.0, validation_alias="MATRIX_LOADGEN_SAMPLE_INTERVAL")
