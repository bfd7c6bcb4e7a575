"""What the deployed api says about itself that a report must record: which path evaluated
single rows (the C module, or Python and numpy when the module was not built or is switched
off). The same answers either way, but not the same CPU per /predict, so a capacity figure
measured on a numpy replica is not the C module's."""

from __future__ import annotations

import json
import urllib.request


def evaluator(base_url: str, timeout: float = 10.0) -> str | None:
    """The "evaluator" field of `base_url`'s GET /health ("c" or "numpy"), asked through Nginx
    like every request of a run; None when the api does not answer or does not say."""
    try:
        with urllib.request.urlopen(f"{base_url}/health", timeout=timeout) as response:
            health = json.loads(response.read())
    except (OSError, ValueError):
        return None
    value = health.get("evaluator") if isinstance(health, dict) else None
    return value if isinstance(value, str) else None
