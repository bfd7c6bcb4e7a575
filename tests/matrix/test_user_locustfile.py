"""load_generator.locustfile: a user's own locustfile, checked before the matrix starts, shipped
to the stack's Locust master and workers as a Swarm config and taken off again (with the fake
engine), and named in the start form so the workshop profile spawns its users."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from loadtest.locustfile_check import check_locustfile_in_image
from matrix.__main__ import main
from matrix.config import MatrixFile, MatrixFileError, MatrixSettings, load_matrix_file
from matrix.errors import MatrixRunError
from matrix.measure.stack_locust import swarm_form
from matrix.measure.user_locustfile import (
    USER_LOCUSTFILE_TARGET,
    StackLocustfile,
    check_on_stack_locust,
    config_name,
    user_args,
)
from stack.engine import DockerError, ServiceResources
from tests.stack.fake_engine import FakeEngine
from tests.support import PROJECT_ROOT

COURSE_LOCUSTFILE = PROJECT_ROOT / "examples" / "tutorial-api" / "locustfile.py"
WORKSHOP = """
cells: [{replicas: 1, cpus: 0.2, memory: 256M}]
profile: {kind: workshop, users: 20, spawn_rate: 10, hold_seconds: 5}
target_rps: 10
load_generator: {where: stack, workers: 1, locustfile: load/course.py}
"""
MASTER_ARGS = ["-f", "locustfile.py", "--master", "--web-port", "8089"]
WORKER_ARGS = ["-f", "locustfile.py", "--worker", "--master-host", "locust-master"]


def _matrix_dir(tmp_path: Path, locustfile_text: str, matrix_text: str = WORKSHOP) -> Path:
    (tmp_path / "load").mkdir()
    (tmp_path / "load" / "course.py").write_text(locustfile_text)
    path = tmp_path / "matrix.yaml"
    path.write_text(matrix_text)
    return path


def test_the_locustfile_is_found_beside_the_matrix_file_and_checked(tmp_path: Path) -> None:
    path = _matrix_dir(tmp_path, COURSE_LOCUSTFILE.read_text())
    matrix = load_matrix_file(path)
    assert matrix.load_generator.locustfile == tmp_path / "load" / "course.py"


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("import no_such_module_here\n", "No module named 'no_such_module_here'"),
        ("def broken(:\n", "SyntaxError"),
        ("X = 1\n", "it defines no User class"),
        (
            "from locust import HttpUser, task\n"
            "class WorkshopUser(HttpUser):\n"
            "    @task\n"
            "    def t(self):\n"
            "        pass\n",
            "Duplicate user class names: WorkshopUser",
        ),
        (
            COURSE_LOCUSTFILE.read_text()
            + "\nfrom locust import LoadTestShape\n\n\nclass Mine(LoadTestShape):\n"
            "    def tick(self):\n        return None\n",
            "it defines a load shape (Mine)",
        ),
    ],
)
def test_a_locustfile_that_cannot_run_is_refused_naming_the_field(
    tmp_path: Path, source: str, fragment: str
) -> None:
    path = _matrix_dir(tmp_path, source)
    with pytest.raises(MatrixFileError) as caught:
        load_matrix_file(path)
    message = str(caught.value)
    assert "load_generator.locustfile:" in message and fragment in message
    assert str(tmp_path / "load" / "course.py") in message


def test_a_missing_locustfile_is_refused_by_validate_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "matrix.yaml"
    path.write_text(WORKSHOP)
    assert main(["--matrix", str(path), "--validate-only"]) == 2
    error = capsys.readouterr().err
    assert "load_generator.locustfile:" in error and "is not a file" in error
    # A finished run's report is rebuilt from its copy of the matrix file, without the file.
    assert load_matrix_file(path, check_files=False).load_generator.locustfile is not None


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("where: stack, workers: 1, ", ""),
        (
            "{kind: workshop, users: 20, spawn_rate: 10, hold_seconds: 5}",
            "{kind: plain, users: 20, spawn_rate: 10, duration_seconds: 5}",
        ),
    ],
)
def test_the_locustfile_needs_the_stacks_locust_and_the_workshop_profile(
    tmp_path: Path, old: str, new: str
) -> None:
    assert old in WORKSHOP
    path = _matrix_dir(tmp_path, COURSE_LOCUSTFILE.read_text(), WORKSHOP.replace(old, new))
    with pytest.raises(MatrixFileError) as caught:
        load_matrix_file(path)
    assert "load_generator.locustfile: a locustfile of your own runs on the stack's" in str(
        caught.value
    )


def _engine() -> FakeEngine:
    engine = FakeEngine(
        ServiceResources(1, 10**9, 256 * 2**20, 0, 0), update_config={"Order": "start-first"}
    )
    engine.args = {"t_locust-master": list(MASTER_ARGS), "t_locust-worker": list(WORKER_ARGS)}
    return engine


def test_the_file_is_shipped_as_a_config_beside_ours_and_taken_off_again(tmp_path: Path) -> None:
    matrix = load_matrix_file(_matrix_dir(tmp_path, COURSE_LOCUSTFILE.read_text()))
    engine = _engine()
    run_info: dict[str, object] = {}
    shipped = StackLocustfile(matrix, MatrixSettings(stack_name="t"), engine, run_info)
    shipped.apply(lambda _line: None)
    data = COURSE_LOCUSTFILE.read_bytes()
    name = config_name("t", data)
    assert engine.configs == {name: data}
    assert engine.args["t_locust-master"] == [
        "-f",
        f"locustfile.py,{USER_LOCUSTFILE_TARGET}",
        "--master",
        "--web-port",
        "8089",
        "--external-users",
    ]
    assert engine.args["t_locust-worker"][:2] == ["-f", f"locustfile.py,{USER_LOCUSTFILE_TARGET}"]
    for service in ("t_locust-master", "t_locust-worker"):
        assert engine.mounts[service] == {USER_LOCUSTFILE_TARGET: name}
    assert run_info["original_locust_args"] == {
        "t_locust-master": MASTER_ARGS,
        "t_locust-worker": WORKER_ARGS,
    }
    shipped.restore(lambda _line: None)
    assert engine.args == {"t_locust-master": MASTER_ARGS, "t_locust-worker": WORKER_ARGS}
    assert engine.mounts == {"t_locust-master": {}, "t_locust-worker": {}}
    assert engine.configs == {}


def test_a_resumed_run_puts_back_what_the_first_attempt_found(tmp_path: Path) -> None:
    matrix = load_matrix_file(_matrix_dir(tmp_path, COURSE_LOCUSTFILE.read_text()))
    engine = _engine()
    run_info: dict[str, object] = {}
    StackLocustfile(matrix, MatrixSettings(stack_name="t"), engine, run_info).apply(print)
    # Interrupted without restoring; the second attempt finds the services changed.
    again = StackLocustfile(matrix, MatrixSettings(stack_name="t"), engine, run_info)
    again.apply(print)
    assert engine.args["t_locust-master"].count("--external-users") == 1
    again.restore(print)
    assert engine.args["t_locust-master"] == MASTER_ARGS


def test_services_without_a_locustfile_argument_are_not_guessed_at() -> None:
    with pytest.raises(DockerError, match="name no locustfile"):
        user_args(["--master"])


def test_the_start_form_asks_for_the_users_of_the_locustfile(tmp_path: Path) -> None:
    matrix = load_matrix_file(_matrix_dir(tmp_path, COURSE_LOCUSTFILE.read_text()))
    assert swarm_form(matrix, "http://nginx:8000")["external_users"] == "true"
    ours = matrix.model_copy(
        update={"load_generator": matrix.load_generator.model_copy(update={"locustfile": None})}
    )
    assert swarm_form(ours, "http://nginx:8000")["external_users"] == "false"


def test_the_examples_matrix_files_are_valid() -> None:
    """The worked example's two matrix files: a target, and the course's locustfile on the
    stack's Locust against that target (a target allows where: stack with a locustfile)."""
    example = COURSE_LOCUSTFILE.parent
    searched = load_matrix_file(example / "matrix.yaml")
    assert searched.target is not None
    assert searched.target.image == "penguin-lab/example-tutorial-api:latest"
    assert searched.target.requests[0].body == json.loads((example / "bodies/one.json").read_text())
    workshop = load_matrix_file(example / "matrix-locustfile.yaml")
    assert workshop.target is not None and workshop.load_generator.where == "stack"
    assert workshop.load_generator.locustfile == COURSE_LOCUSTFILE
    # Without the locustfile, the stack's Locust would send penguin requests to the target.
    generator = workshop.load_generator.model_copy(update={"locustfile": None})
    with pytest.raises(ValueError, match="give the stack's Locust your own"):
        MatrixFile.model_validate(
            {**workshop.model_dump(by_alias=True), "load_generator": generator.model_dump()}
        )


# A stand-in for the docker CLI: records its arguments and stdin, then answers as the Locust
# image answers a file importing what it lacks.
FAKE_DOCKER = """#!/bin/sh
printf '%s\\n' "$@" > "$(dirname "$0")/args"
cat > "$(dirname "$0")/stdin"
echo "ModuleNotFoundError: No module named 'sklearn'" >&2
echo "importing /home/locust/user/user_locustfile.py failed"
exit 1
"""


def test_the_image_check_runs_the_file_in_a_container_of_the_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    course = tmp_path / "course.py"
    course.write_text(COURSE_LOCUSTFILE.read_text())
    problem = check_locustfile_in_image(course, "reg:5000/penguin-lab/locust:latest", "tcp://m")
    assert problem is not None
    assert problem.startswith(
        f"{course} cannot run on the stack's Locust (checked in reg:5000/penguin-lab/locust:latest)"
    )
    # The image's words, naming the user's own file rather than the container's copy.
    assert "No module named 'sklearn'" in problem and f"importing {course} failed" in problem
    args = (bin_dir / "args").read_text().splitlines()
    assert args[:8] == [
        "--host",
        "tcp://m",
        "run",
        "--rm",
        "-i",
        "--network",
        "none",
        "--entrypoint",
    ]
    assert "reg:5000/penguin-lab/locust:latest" in args
    assert "python -m loadtest.locustfile_check /home/locust/locust/locustfile.py" in args[-1]
    assert (bin_dir / "stdin").read_text() == course.read_text()


def test_a_file_the_stacks_locust_image_refuses_stops_the_run_naming_the_field(
    tmp_path: Path,
) -> None:
    seen: list[tuple[Path, str, str | None]] = []

    def check(path: Path, image: str, docker_host: str | None) -> str | None:
        seen.append((path, image, docker_host))
        return None if image.endswith("locust:good") else f"{path} cannot run: nope"

    engine = _engine()
    said: list[str] = []
    path = tmp_path / "course.py"
    # The image the locust-master service's spec names (the engine's), not the api's.
    engine.other_containers["t_locust-master"] = {"Image": "reg:5000/penguin-lab/locust:good"}
    check_on_stack_locust(path, engine, "t", None, said.append, check)
    assert seen == [(path, "reg:5000/penguin-lab/locust:good", None)]
    assert "stack's Locust image reg:5000/penguin-lab/locust:good" in said[0]
    engine.other_containers["t_locust-master"] = {"Image": "penguin-lab/locust:bad"}
    with pytest.raises(MatrixRunError) as caught:
        check_on_stack_locust(path, engine, "t", "tcp://m", said.append, check)
    assert str(caught.value).startswith(f"load_generator.locustfile: {path} cannot run")
    assert seen[-1] == (path, "penguin-lab/locust:bad", "tcp://m")


def test_a_stack_without_its_locust_master_is_refused_naming_the_field(tmp_path: Path) -> None:
    engine = _engine()
    del engine.other_containers["t_locust-master"]
    with pytest.raises(MatrixRunError) as caught:
        check_on_stack_locust(
            tmp_path / "course.py", engine, "t", None, print, lambda *_: pytest.fail("checked")
        )
    message = str(caught.value)
    assert message.startswith("load_generator.locustfile: no image of the stack's t_locust-master")
    assert "service not found" in message
