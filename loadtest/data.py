"""Realistic request bodies and response checks for the penguin load test, and the requests of
a target (any other service the matrix measures).

Pure Python (no Locust import) so the matrix tests and the locustfile share it.
"""

from __future__ import annotations

import csv
import json
import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

DATA_FILE_NAME = "penguins_size.csv"
SPECIES = ("Adelie", "Chinstrap", "Gentoo")
ISLANDS = ("Biscoe", "Dream", "Torgersen")
SEXES = ("MALE", "FEMALE")
NUMERIC_FEATURES = ("culmen_length_mm", "culmen_depth_mm", "flipper_length_mm", "body_mass_g")
# Probabilities come back as JSON floats; their sum is only ~1 after rounding.
PROBABILITY_SUM_TOLERANCE = 1e-3
MODEL_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]*$")
# --model-mix value for the workshop's requests: POST /predict without ?model=, so the service
# answers with its default model.
DEFAULT_MODEL = "default"
# The workshop's request body (the API's documented example): --body seed sends it every time.
SEED_BODY: dict[str, object] = {
    "island": "Biscoe",
    "culmen_length_mm": 50.0,
    "culmen_depth_mm": 18.5,
    "flipper_length_mm": 200.0,
    "body_mass_g": 4000.0,
    "sex": "MALE",
}


def find_data_file(explicit: str | None, locustfile_dir: Path) -> Path:
    """Finds the penguins CSV: an explicit path, else next to the locustfile, else ../data/.

    The locust image keeps locust/*.py and the CSV side by side; a checkout keeps it in data/.
    """
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise FileNotFoundError(f"data file {path} (from --data-file) does not exist")
        return path
    candidates = [
        locustfile_dir / DATA_FILE_NAME,
        locustfile_dir / "data" / DATA_FILE_NAME,
        locustfile_dir.parent / "data" / DATA_FILE_NAME,
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"{DATA_FILE_NAME} not found (tried {tried}); pass --data-file")


def _parse_number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def load_rows(path: Path) -> list[dict[str, object]]:
    """Complete rows of the CSV with canonical values; rows with any missing value are skipped."""
    rows: list[dict[str, object]] = []
    with path.open(newline="", encoding="utf-8") as handle:
        for record in csv.DictReader(handle):
            island = (record.get("island") or "").strip()
            sex = (record.get("sex") or "").strip().upper()
            if island not in ISLANDS or sex not in SEXES:
                continue
            numbers = {name: _parse_number(record.get(name) or "") for name in NUMERIC_FEATURES}
            if any(value is None for value in numbers.values()):
                continue
            rows.append({"island": island, **numbers, "sex": sex})
    if not rows:
        raise ValueError(f"{path} holds no complete penguin rows")
    return rows


class BodySampler:
    """Draws /predict bodies: a real row (so islands and sexes keep their real proportions) with
    small Gaussian noise on the measurements, clipped to the observed range so the service's
    plausibility checks never reject a generated body."""

    def __init__(self, rows: Sequence[Mapping[str, object]], noise: float = 0.02) -> None:
        if not rows:
            raise ValueError("no rows to sample from")
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        self.rows = list(rows)
        self.noise = noise
        self.ranges: dict[str, tuple[float, float]] = {}
        self.spread: dict[str, float] = {}
        for name in NUMERIC_FEATURES:
            values = [float(row[name]) for row in self.rows]  # type: ignore[arg-type]
            low, high = min(values), max(values)
            self.ranges[name] = (low, high)
            mean = sum(values) / len(values)
            self.spread[name] = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))

    def sample(self, rng: random.Random) -> dict[str, object]:
        row = rng.choice(self.rows)
        body: dict[str, object] = {"island": row["island"]}
        for name in NUMERIC_FEATURES:
            low, high = self.ranges[name]
            value = float(row[name]) + rng.gauss(0.0, self.noise * self.spread[name])  # type: ignore[arg-type]
            body[name] = round(min(max(value, low), high), 1)
        body["sex"] = row["sex"]
        return body


def parse_model_mix(text: str) -> dict[str, float]:
    """Parses 'lr=0.5,rf=0.3,svm=0.2' into normalised weights; raises ValueError saying why."""
    mix: dict[str, float] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, weight_text = part.partition("=")
        name = name.strip()
        if not sep:
            raise ValueError(f"model mix entry {part!r} is not name=weight")
        if not MODEL_NAME_PATTERN.match(name):
            raise ValueError(f"model mix entry {part!r}: {name!r} is not a model name")
        weight = _parse_number(weight_text.strip())
        if weight is None or weight < 0:
            raise ValueError(f"model mix entry {part!r}: weight must be a number >= 0")
        mix[name] = mix.get(name, 0.0) + weight
    total = sum(mix.values())
    if total <= 0:
        raise ValueError(f"model mix {text!r} has no positive weight")
    return {name: weight / total for name, weight in mix.items() if weight > 0}


def check_prediction(payload: object, model: str | None) -> str | None:
    """Returns why a /predict answer is wrong, or None when it is a valid answer from `model`
    (any model when None: the service's default)."""
    if not isinstance(payload, dict):
        return "response is not a JSON object"
    species = payload.get("species")
    if species not in SPECIES:
        return f"species {species!r} is not one of {SPECIES}"
    probabilities = payload.get("probabilities")
    if not isinstance(probabilities, dict) or set(probabilities) != set(SPECIES):
        return f"probabilities {probabilities!r} do not cover exactly {SPECIES}"
    values = list(probabilities.values())
    if not all(isinstance(p, int | float) and 0.0 <= p <= 1.0 for p in values):
        return f"probabilities {probabilities!r} are not all in [0, 1]"
    if abs(sum(values) - 1.0) > PROBABILITY_SUM_TOLERANCE:
        return f"probabilities sum to {sum(values):.4f}, not 1"
    if probabilities[species] < max(values):
        return f"species {species} is not the most probable class in {probabilities}"
    if model is not None and payload.get("model") != model:
        return f"answered by model {payload.get('model')!r}, asked for {model!r}"
    version = payload.get("model_version")
    if not isinstance(version, str) or not version:
        return "model_version is missing"
    return None


def check_batch(payload: object, model: str, size: int) -> str | None:
    """Returns why a /predict/batch answer is wrong, or None when it is valid."""
    if not isinstance(payload, dict):
        return "response is not a JSON object"
    predictions = payload.get("predictions")
    if not isinstance(predictions, list) or len(predictions) != size:
        count = len(predictions) if isinstance(predictions, list) else predictions
        return f"expected {size} predictions, got {count!r}"
    for index, prediction in enumerate(predictions):
        problem = check_prediction(prediction, model)
        if problem:
            return f"prediction {index}: {problem}"
    if payload.get("model") != model:
        return f"batch answered by model {payload.get('model')!r}, asked for {model!r}"
    return None


# The requests of a target (matrix/config.py TargetSpec), as the matrix hands them to Locust:
# a JSON file {"requests": [{method, path, headers, body, expect_status, weight}, ...]}.
@dataclass(frozen=True)
class TargetRequest:
    """One request to a service that is not ours: sent as given, successful on its expected
    status (any 2xx when none is given); its answer's body is not checked."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes | None
    expect_status: int | None
    weight: float

    def accepts(self, status: int) -> bool:
        if self.expect_status is None:
            return 200 <= status < 300
        return status == self.expect_status

    def expected(self) -> str:
        return "any 2xx" if self.expect_status is None else str(self.expect_status)


def target_requests(document: Mapping[str, object]) -> list[TargetRequest]:
    """The requests of a target file's content; ValueError naming the entry and the fault."""
    entries = document.get("requests")
    if not isinstance(entries, list) or not entries:
        raise ValueError("a target requests file needs a non-empty 'requests' list")
    requests = []
    for index, entry in enumerate(entries):
        try:
            body = entry.get("body")
            expect = entry.get("expect_status")
            request = TargetRequest(
                method=str(entry.get("method", "POST")).upper(),
                path=str(entry["path"]),
                headers={str(k): str(v) for k, v in (entry.get("headers") or {}).items()},
                body=None if body is None else json.dumps(body).encode(),
                expect_status=None if expect is None else int(expect),
                weight=float(entry.get("weight", 1.0)),
            )
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise ValueError(f"requests[{index}]: {error!r}") from None
        if not request.path.startswith("/") or request.weight <= 0:
            raise ValueError(f"requests[{index}]: needs a path from / and a weight > 0")
        requests.append(request)
    return requests


def load_target_requests(path: Path) -> list[TargetRequest]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"target requests file {path}: {error}") from None
    if not isinstance(document, dict):
        raise ValueError(f"target requests file {path}: not a JSON object")
    return target_requests(document)


def pick_target_request(requests: Sequence[TargetRequest], rng: random.Random) -> TargetRequest:
    """One of the requests, each with the chance of its weight."""
    if len(requests) == 1:
        return requests[0]
    return rng.choices(requests, [r.weight for r in requests])[0]
