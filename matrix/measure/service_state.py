"""What the run changes on the stack and puts back: the api service's resources and update
policy, and Nginx's admission limit. The originals are recorded once in run.json, so a resumed
run restores what the first attempt found, not what it left behind."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from matrix.analyse.records import CellRecord
from matrix.config import Cell, MatrixFile, MatrixSettings
from matrix.errors import MatrixRunError
from stack.admission import AdmissionError, AdmissionKnob, limit_for, stack_knob
from stack.engine import NANO, DockerError, Engine, ServiceResources


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
    """The api service's replicas, limits, reservations and update policy before the run."""

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
        return restore_to

    def restore(self, original: ServiceResources, note: Callable[[str], None]) -> None:
        note(
            f"restoring {self.service} to {original.replicas} replica(s), "
            f"limits {original.limit_nano_cpus / NANO:g} CPU / "
            f"{original.limit_memory_bytes / 2**20:g} MiB"
        )
        try:
            self.engine.update_service(self.service, original, self.timeout)
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
