"""Warm-up before a cell's first trial: predictions on every model the API serves."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

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


def warm_up(base_url: str, seconds: float) -> int:
    """Predictions on every model for `seconds`: loads caches and JITs nothing, but makes the
    first measured step see warm workers and open Nginx upstream connections."""
    deadline = time.monotonic() + seconds
    count = [0]
    body = json.dumps(WARMUP_BODY).encode()
    models = served_models(base_url)

    def worker(offset: int) -> None:
        index = offset
        while time.monotonic() < deadline:
            model = models[index % len(models)]
            index += 1
            request = urllib.request.Request(
                f"{base_url}/predict?model={model}",
                data=body,
                headers={"Content-Type": "application/json"},
            )
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
