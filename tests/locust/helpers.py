"""Where the locustfile lives: locust/ is a plain folder that Locust runs from (its importable code
is the loadtest package)."""

from __future__ import annotations

from tests.support import PROJECT_ROOT

LOCUST_DIR = PROJECT_ROOT / "locust"
