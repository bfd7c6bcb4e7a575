"""Gunicorn's logger with JSON lines instead of its plain-text formats."""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger  # type: ignore[import-untyped]

from service.logging_config import use_json_formatter


class JsonGunicornLogger(Logger):  # type: ignore[misc]  # Gunicorn ships no type hints
    """Gunicorn sets up its handlers (stderr errors, optional stdout access log); we reformat.

    The Uvicorn worker reuses these handlers for `uvicorn.error` and `uvicorn.access`, so its
    lines come out as JSON too.
    """

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        use_json_formatter(self.error_log)
        use_json_formatter(self.access_log)
