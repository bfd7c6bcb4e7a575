"""What the run changes on the stack and puts back: the api service's resources and update
policy (and, measuring a target, its image, environment and health check), Nginx's admission
limit, and the port Nginx and Prometheus reach the api on. The originals are recorded once in
run.json, so a resumed run restores what the first attempt found, not what it left behind."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from matrix.analyse.records import CellRecord
from matrix.config import Cell, MatrixFile, MatrixSettings
from matrix.errors import MatrixRunError
from stack.admission import AdmissionError, AdmissionKnob, limit_for, stack_knob
from stack.engine import CONTAINER_FIELDS, NANO, DockerError, Engine, ServiceResources


class _ChangedService:
    """A service of the stack the run changes and puts back; its original is in run_info."""

    name = ""  # the service's name in the stack file

    def __init__(
        self, matrix: MatrixFile, settings: MatrixSettings, engine: Engine, run_info: dict[str, Any]
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.run_info = run_info
        self.timeout = matrix.converge_timeout_seconds
        self.service = f"{settings.stack_name}_{self.name}"

    def _could_not_restore(self, error: BaseException, options: str) -> None:
        print(
            f"warning: could not restore {self.service}: {error}; restore it with "
            f"docker service update {options} {self.service}",
            file=sys.stderr,
        )


class ApiServiceState(_ChangedService):
    """The api service's replicas, limits, reservations and update policy before the run, and
    its image, environment and health check (what a target replaces)."""

    name = "api"

    def record(self) -> ServiceResources:
        """Records the originals in run_info (once); returns what to restore."""
        try:
            original = self.engine.service_resources(self.service)
        except DockerError as error:
            raise MatrixRunError(
                f"cannot read service {self.service}; is the stack "
                f"'{self.settings.stack_name}' deployed? ({error})"
            ) from None
        recorded = self.run_info.get("original_service")
        restore_to = ServiceResources(**recorded) if recorded else original
        self.run_info["original_service"] = restore_to.as_dict()
        if "original_update_config" not in self.run_info:
            self.run_info["original_update_config"] = self.engine.update_config(self.service)
        if "original_container" not in self.run_info:
            self.run_info["original_container"] = self.engine.container_settings(self.service)
        return restore_to

    def original_container(self) -> dict[str, Any]:
        """What the ContainerSpec held before the run; a field it did not set is removed again
        (None), so a target's health check setting does not outlive the run."""
        recorded = self.run_info.get("original_container") or {}
        return {key: recorded.get(key) for key in CONTAINER_FIELDS}

    def restore(self, original: ServiceResources, note: Callable[[str], None]) -> None:
        container = self.original_container()
        note(
            f"restoring {self.service} to {original.replicas} replica(s), "
            f"limits {original.limit_nano_cpus / NANO:g} CPU / "
            f"{original.limit_memory_bytes / 2**20:g} MiB"
            + (f", image {container['Image']}" if container.get("Image") else "")
        )
        try:
            self.engine.update_service(self.service, original, self.timeout, container)
            self.engine.set_update_config(self.service, self.run_info["original_update_config"])
        except (DockerError, KeyboardInterrupt) as error:
            self._could_not_restore(error, f"--replicas {original.replicas} ...")


class NginxAdmission(_ChangedService):
    """Nginx's per-replica in-flight limit: set per cell, the original put back at the end."""

    name = "nginx"

    def __init__(
        self, matrix: MatrixFile, settings: MatrixSettings, engine: Engine, run_info: dict[str, Any]
    ) -> None:
        super().__init__(matrix, settings, engine, run_info)
        self._knob: AdmissionKnob | None = None

    def knob(self) -> AdmissionKnob:
        if self._knob is None:
            try:
                self._knob = stack_knob()
            except AdmissionError as error:
                raise MatrixRunError(str(error)) from None
        return self._knob

    def record(self) -> None:
        """Records the limit that runs now in run_info (once)."""
        knob = self.knob()
        if "original_admission" not in self.run_info:
            current = self.engine.service_env(self.service).get(knob.env)
            self.run_info["original_admission"] = current

    def apply(self, cell: Cell, record: CellRecord, say: Callable[[str], None]) -> None:
        """Applies the cell's in-flight limit to Nginx (a rolling update of the nginx service)
        when it differs from what runs."""
        knob = self.knob()
        wanted = limit_for(cell.admission, knob)
        current = self.engine.service_env(self.service).get(knob.env)
        if wanted is None:
            record.admission_limit = int(current) if current and current.isdigit() else None
            return
        record.admission_limit = wanted
        if current == str(wanted):
            return
        say(
            f"admission control: {knob.env}={wanted} on "
            f"{self.service}" + (" (off)" if wanted == 0 else "")
        )
        self.engine.set_service_env(self.service, {knob.env: str(wanted)}, self.timeout)

    def restore(self, note: Callable[[str], None]) -> None:
        original = self.run_info.get("original_admission")
        if original is None or self._knob is None:
            return
        try:
            if self.engine.service_env(self.service).get(self._knob.env) != original:
                note(f"restoring {self.service}: {self._knob.env}={original}")
                self.engine.set_service_env(self.service, {self._knob.env: original}, self.timeout)
        except (DockerError, KeyboardInterrupt) as error:
            self._could_not_restore(error, f"--env-add {self._knob.env}={original}")


class _TargetPort(_ChangedService):
    """An environment variable naming the port the api listens on, for a service that talks to
    the api: set to the target's port for the run, the original put back (removed again when
    the stack file left it to the image's default)."""

    env = ""

    def __init__(
        self, matrix: MatrixFile, settings: MatrixSettings, engine: Engine, run_info: dict[str, Any]
    ) -> None:
        super().__init__(matrix, settings, engine, run_info)
        self.port = matrix.target.port if matrix.target is not None else None
        self.key = f"original_{self.name}_{self.env}"

    def apply(self, say: Callable[[str], None]) -> None:
        """Points the service at the target's port when it is not already (a rolling update)."""
        if self.port is None:
            return
        try:
            current = self.engine.service_env(self.service)
        except DockerError as error:
            say(f"{self.service}: not changed ({error})")
            return
        if self.key not in self.run_info:
            self.run_info[self.key] = current.get(self.env)
        if current.get(self.env) == str(self.port):
            return
        say(f"{self.service}: {self.env}={self.port} (the target's port)")
        self.engine.set_service_env(self.service, {self.env: str(self.port)}, self.timeout)

    def restore(self, note: Callable[[str], None]) -> None:
        if self.key not in self.run_info:
            return
        original = self.run_info[self.key]
        try:
            if self.engine.service_env(self.service).get(self.env) != original:
                note(f"restoring {self.service}: {self.env}={original or '(unset)'}")
                self.engine.set_service_env(self.service, {self.env: original}, self.timeout)
        except (DockerError, KeyboardInterrupt) as error:
            self._could_not_restore(error, f"--env-add {self.env}={original}")


class NginxTargetPort(_TargetPort):
    """Nginx proxies to every api task on this port (nginx/entrypoint.sh)."""

    name = "nginx"
    env = "NGINX_UPSTREAM_PORT"


class PrometheusTargetPort(_TargetPort):
    """Prometheus' `api` job scrapes /metrics of every api task on this port
    (prometheus/prometheus.yml.template): a target that serves Prometheus metrics there gets
    them scraped; one that does not shows as a down target, nothing else."""

    name = "prometheus"
    env = "PROMETHEUS_API_PORT"
