"""A user's own locustfile (load_generator.locustfile) on the stack's Locust: shipped to the
locust-master and locust-worker services as a Swarm config, mounted beside ours and loaded with
it (`-f locustfile.py,user/user_locustfile.py --external-users`), and taken off again after the
run. Nothing is baked into an image, so a changed file is a new config (its name carries a hash
of the content), not a rebuild. The originals are recorded once in run.json, as the api
service's are (service_state.py), so a resumed run puts back what the first attempt found."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from loadtest.locustfile_check import USER_LOCUSTFILE_NAME, check_locustfile_in_image
from matrix.config import MatrixFile, MatrixSettings
from matrix.errors import MatrixRunError
from stack.engine import DockerError, Engine

# Beside the image's /home/locust/locust/locustfile.py, in a folder of its own.
USER_LOCUSTFILE_TARGET = f"/home/locust/user/{USER_LOCUSTFILE_NAME}"
LOCUST_SERVICES = ("locust-master", "locust-worker")
RUN_INFO_KEY = "original_locust_args"
EXTERNAL_USERS_FLAG = "--external-users"


def config_name(stack: str, data: bytes) -> str:
    """Swarm configs are immutable: a name per content."""
    return f"{stack}_user_locustfile_{hashlib.sha256(data).hexdigest()[:12]}"


def check_on_stack_locust(
    path: Path,
    engine: Engine,
    stack: str,
    docker_host: str | None,
    say: Callable[[str], None],
    check: Callable[[Path, str, str | None], str | None] = check_locustfile_in_image,
) -> None:
    """Refuses (MatrixRunError naming load_generator.locustfile) a file the stack's own Locust
    image cannot load, before anything changes: the host's check passed files that import what
    only the host has. The image is the one the locust-master service's spec names (digest
    included on a cluster); `docker_host` is where the check runs it, the engine's host."""
    service = f"{stack}_{LOCUST_SERVICES[0]}"
    try:
        # Swarm refuses a service spec without an image, so every service has one.
        image = str(engine.container_settings(service)["Image"])
    except DockerError as error:
        raise MatrixRunError(
            f"load_generator.locustfile: no image of the stack's {service} to check the file "
            f"in ({error})"
        ) from None
    say(f"checking {path} in the stack's Locust image {image}")
    problem = check(path, image, docker_host)
    if problem is not None:
        raise MatrixRunError(f"load_generator.locustfile: {problem}")


def user_args(original: Sequence[str]) -> list[str]:
    """The service's arguments with the user's file loaded beside ours (-f ours,theirs) and the
    workshop profile told to spawn its users."""
    args = list(original)
    try:
        position = args.index("-f") + 1
    except ValueError:
        raise DockerError(
            f"the Locust service's arguments {args} name no locustfile (-f); "
            "is it the stack file's?"
        ) from None
    args[position] = f"{args[position]},{USER_LOCUSTFILE_TARGET}"
    return args + [EXTERNAL_USERS_FLAG]


class StackLocustfile:
    """The stack's Locust services with the user's locustfile, and back."""

    def __init__(
        self,
        matrix: MatrixFile,
        settings: MatrixSettings,
        engine: Engine,
        run_info: dict[str, Any],
    ) -> None:
        path = matrix.load_generator.locustfile
        assert path is not None  # the runner makes one only for a matrix that names a file
        self.path = path
        self.engine = engine
        self.run_info = run_info
        self.stack = settings.stack_name
        self.timeout = matrix.converge_timeout_seconds
        self.services = [f"{settings.stack_name}_{name}" for name in LOCUST_SERVICES]
        self.config: str | None = None

    def apply(self, note: Callable[[str], None]) -> None:
        data = self.path.read_bytes()
        self.config = config_name(self.stack, data)
        originals: dict[str, list[str]] = self.run_info.setdefault(RUN_INFO_KEY, {})
        note(f"shipping {self.path} to the stack's Locust as Swarm config {self.config}")
        self.engine.create_config(self.config, data, self.stack)
        for service in self.services:
            original = originals.setdefault(service, self.engine.service_args(service))
            self.engine.set_service_file(
                service, user_args(original), USER_LOCUSTFILE_TARGET, self.config, self.timeout
            )

    def restore(self, note: Callable[[str], None]) -> None:
        originals: dict[str, list[str]] = self.run_info.get(RUN_INFO_KEY, {})
        note(f"taking {self.path.name} off the stack's Locust")
        try:
            for service in self.services:
                if service in originals:
                    self.engine.set_service_file(
                        service, originals[service], USER_LOCUSTFILE_TARGET, None, self.timeout
                    )
            if self.config is not None:
                self.engine.remove_config(self.config)
        except (DockerError, KeyboardInterrupt) as error:
            print(
                f"warning: could not take the user's locustfile off the stack's Locust: "
                f"{error}; scripts/stack_up.sh deploys the services as the stack file has them",
                file=sys.stderr,
            )
