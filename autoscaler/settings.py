"""The autoscaler's configuration: every AUTOSCALE_* variable, in one typed settings object."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class AutoscaleSettings(BaseSettings):
    """AUTOSCALE_* environment variables (autoscaler/README.md lists them with their reasons)."""

    # Empty counts as unset: the stack file passes `${AUTOSCALE_X:-}`; the defaults live here.
    model_config = SettingsConfigDict(
        env_prefix="AUTOSCALE_", extra="ignore", env_ignore_empty=True
    )

    enabled: bool = False
    # The Swarm service to scale: the stack's api (stack/docker-stack.yml sets STACK_NAME_api).
    service: str = "penguins_api"
    min_replicas: int = Field(1, ge=1)
    max_replicas: int = Field(4, ge=1)
    # Requests/s one replica should serve: the lab's knee per replica x 70 % headroom
    # (python -m autoscaler.from_run), or set by hand.
    target_rps_per_replica: float = Field(100.0, gt=0)
    # Requests in flight per replica above which to add replicas too; 0 leaves it out.
    target_inflight_per_replica: float = Field(0.0, ge=0)
    # HPA's default: a ratio within 10 % of the target changes nothing (no flapping on noise).
    tolerance: float = Field(0.1, ge=0, lt=1)
    # Scale down only to the highest recommendation of this many seconds (HPA: 300 s).
    stabilisation_s: float = Field(60.0, ge=0)
    # No change at all for this long after one: new replicas need time to show in the figures.
    cooldown_s: float = Field(10.0, ge=0)
    interval_s: float = Field(5.0, gt=0)
    # The rate() window: several scrapes (1 s apart in the stack), short enough to see a spike.
    rate_window_s: int = Field(10, ge=2)
    prometheus_url: str = "http://prometheus:9090"
    prometheus_timeout_s: float = Field(3.0, gt=0)
    # The stack's UI login (Prometheus wants it): the user, and the Swarm secret holding the
    # password. Without the file (a run outside the stack), the login of STACK from
    # stack/credentials.py.
    prometheus_user: str = "penguin"
    prometheus_password_file: Path | None = None
    stack_name: str = "penguins"
    metrics_port: int = Field(9200, ge=1, le=65535)

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"AUTOSCALE_MAX_REPLICAS ({self.max_replicas}) is below "
                f"AUTOSCALE_MIN_REPLICAS ({self.min_replicas})"
            )
        return self
