"""Warm-up before a cell's first trial: predictions on every model the API serves, or a
target's own requests."""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.request
from collections.abc import Callable

from loadtest.data import pick_target_request, target_requests
from matrix.config import TargetSpec
from matrix.errors import MatrixRunError

WARMUP_BODY = {
    "island": "Biscoe",
    "culmen_length_mm": 47.5,
    "culmen_depth_mm": 15.0,
    "flipper_length_mm": 217.0,
    "body_mass_g": 5000.0,
    "sex": "MALE",
}
WARMUP_THREADS = 4


def served_models(base_url: str) -> list[str]:
    """The model names the API serves (GET /models): the service's registry, not a copy."""
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=10) as response:
            listing = json.loads(response.read())
        return [str(model["name"]) for model in listing["models"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise MatrixRunError(f"{base_url}/models did not list the served models: {error}") from None


def _penguin_requests(base_url: str) -> Callable[[int], urllib.request.Request]:
    """A prediction on every model in turn."""
    body = json.dumps(WARMUP_BODY).encode()
    models = served_models(base_url)
    return lambda index: urllib.request.Request(
        f"{base_url}/predict?model={models[index % len(models)]}",
        data=body,
        headers={"Content-Type": "application/json"},
    )


def _target_requests(base_url: str, target: TargetSpec) -> Callable[[int], urllib.request.Request]:
    """The target's own requests, picked by weight as the load generator picks them."""
    requests = target_requests(target.requests_document())
    rng = random.Random()

    def build(_index: int) -> urllib.request.Request:
        chosen = pick_target_request(requests, rng)
        return urllib.request.Request(
            f"{base_url}{chosen.path}",
            data=chosen.body,
            headers=chosen.headers,
            method=chosen.method,
        )

    return build


def warm_up(base_url: str, seconds: float, target: TargetSpec | None = None) -> int:
    """Requests for `seconds` (predictions on every model, or the target's own): loads caches
    and JITs nothing, but makes the first measured step see warm workers and open Nginx
    upstream connections. Counts the 2xx answers."""
    deadline = time.monotonic() + seconds
    count = [0]
    build = (
        _target_requests(base_url, target) if target is not None else _penguin_requests(base_url)
    )

    def worker(offset: int) -> None:
        index = offset
        while time.monotonic() < deadline:
            request = build(index)
            index += 1
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    response.read()
                count[0] += 1
            except OSError:
                time.sleep(0.1)

    threads = [
        threading.Thread(target=worker, args=(i,), daemon=True) for i in range(WARMUP_THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return count[0]
