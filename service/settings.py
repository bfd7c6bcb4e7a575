"""Service configuration: every knob is a PENGUIN_* environment variable read into one object."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.registry import MODELS

PROJECT_ROOT = Path(__file__).resolve().parent.parent

LogLevel = Literal["debug", "info", "warning", "error", "critical"]


class ServiceSettings(BaseSettings):
    """Settings of the app and of the Gunicorn server that runs it (one component, one object)."""

    # env_ignore_empty: a stack file's `PENGUIN_WORKERS: ${PENGUIN_WORKERS:-}` means "default".
    model_config = SettingsConfigDict(
        env_prefix="PENGUIN_", extra="ignore", frozen=True, env_ignore_empty=True
    )

    # App.
    models_dir: Path = PROJECT_ROOT / "models"
    default_model: str = MODELS.default
    max_batch_size: int = Field(default=1000, ge=1, le=100_000)
    # 1000 instances of ~200 bytes each fit with room for pretty-printed JSON.
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    # A refused body up to this size is read and discarded before the 413 goes out: a client
    # that writes its whole body before reading (urllib, requests) then gets the 413 instead of
    # a connection reset. Beyond it the connection is closed at once.
    max_drain_bytes: int = Field(default=64 * 1_048_576, ge=0, le=1024 * 1_048_576)
    # The request line and headers together (Uvicorn sets no limit; service/worker.py). Nginx
    # in front passes at most 4 x 8 KiB (large_client_header_buffers); cookies fit with room.
    max_header_bytes: int = Field(default=65_536, ge=4096, le=16 * 1_048_576)
    # Single rows encoded and evaluated by the C module (service/_native.c) when it is built;
    # false: by Python and numpy (same answers, more CPU: for A/B measurements). The response
    # text is joined in C whenever the module loads, whatever this says.
    native_evaluators: bool = True

    # Gunicorn.
    bind: str = "127.0.0.1:8000"
    # None: derived from the cgroup CPU quota (service/cpu.py), not the host's core count.
    workers: int | None = Field(default=None, ge=1, le=64)
    timeout: int = Field(default=30, ge=1)
    graceful_timeout: int = Field(default=30, ge=1)
    # Must outlive Nginx's upstream keepalive_timeout (30 s: NGINX_UPSTREAM_KEEPALIVE_TIMEOUT in
    # nginx/entrypoint.sh) so that Nginx, not Gunicorn, closes idle upstream connections;
    # otherwise Nginx may reuse a socket that the worker is closing and answer 502.
    keepalive: int = Field(default=75, ge=1)
    # Connections the kernel holds for a worker that is not accepting (a CPU quota's throttled
    # 80 ms of every 100 at 0.2 CPU). Without Nginx's admission limit an overload can open
    # thousands; the kernel caps it at net.core.somaxconn, which the stack raises to match.
    backlog: int = Field(default=4096, ge=16, le=65535)
    access_log: bool = False
    log_level: LogLevel = "info"

    @field_validator("default_model")
    @classmethod
    def _registered_model(cls, value: str) -> str:
        if value not in MODELS:
            raise ValueError(f"must be one of {', '.join(MODELS.names)} (service/registry.py)")
        return value


@lru_cache(maxsize=1)
def get_settings() -> ServiceSettings:
    """The process-wide settings, read from the environment once."""
    return ServiceSettings()
