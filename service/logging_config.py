"""One line of JSON per log event, for the app, Uvicorn and Gunicorn alike.

Log shippers (docker logs, Loki, ...) then need no per-logger parsing rules.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

# Attributes every LogRecord has; anything else came in through `extra=` and is emitted too.
_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    # Uvicorn adds an ANSI-coloured copy of every message; JSON consumers want no escapes.
    | {"message", "asctime", "color_message"}
)


class JsonFormatter(logging.Formatter):
    """Formats a record as a single JSON object (never several lines, even for tracebacks)."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                event[key] = value
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        return json.dumps(event, default=str, separators=(",", ":"))


def use_json_formatter(logger: logging.Logger) -> None:
    for handler in logger.handlers:
        handler.setFormatter(JsonFormatter())


def configure_app_logging(level: str = "info") -> None:
    """Give the app's own loggers (`service.*`) a JSON handler on stderr, once."""
    logger = logging.getLogger("service")
    logger.setLevel(level.upper())
    if not any(getattr(h, "_penguin_json", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler._penguin_json = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    # Our handler writes the line; propagating would print it twice under a root handler.
    logger.propagate = False
