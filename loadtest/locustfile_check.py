"""Whether a user's own locustfile can run beside ours on the stack's Locust, asked before the
matrix starts: Locust's own loader imports both files in a child process, the way the master
and the workers will (`-f locustfile.py,user_locustfile.py`), so a file that does not import,
defines no User, clashes with our user classes or brings its own load shape is refused here,
with Locust's own words, instead of leaving the workers unable to start.

Twice: in the host's virtualenv when the matrix file is read (quick, needs no Docker, catches
most mistakes), and in a container of the stack's own Locust image once the stack is up
(check_locustfile_in_image): the host has packages the image lacks, so only that one refuses
a file the workers could not import.

The user's code runs only in the child: its imports and event listeners never reach the matrix.

    python -m loadtest.locustfile_check OUR_LOCUSTFILE USER_LOCUSTFILE
"""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# The name the file has in the Locust containers (the module Locust imports it as): not
# `locustfile`, which is ours.
USER_LOCUSTFILE_NAME = "user_locustfile.py"
OUR_LOCUSTFILE = Path(__file__).resolve().parent.parent / "locust" / "locustfile.py"
# Where the Locust image has our locustfile (locust/Dockerfile), and a folder its user may write.
IMAGE_OUR_LOCUSTFILE = "/home/locust/locust/locustfile.py"
IMAGE_USER_DIR = "/home/locust/user"
CHECK_TIMEOUT_S = 120.0
# Lines of the child's output quoted in a refusal.
QUOTED_LINES = 6


def check_locustfile(path: Path, ours: Path = OUR_LOCUSTFILE) -> str | None:
    """None when `path` loads beside `ours` and defines its own users; otherwise what is wrong.
    In the host's virtualenv: a quick first check when the matrix file is read (the image has
    fewer packages; check_locustfile_in_image is the one that counts)."""
    problem = _file_problem(path)
    if problem is not None:
        return problem
    with tempfile.TemporaryDirectory(prefix="user-locustfile-") as folder:
        copy = Path(folder) / USER_LOCUSTFILE_NAME
        shutil.copyfile(path, copy)
        command = [sys.executable, "-m", "loadtest.locustfile_check", str(ours), str(copy)]
        return _run_check(path, command, None, str(copy))


def check_locustfile_in_image(path: Path, image: str, docker_host: str | None = None) -> str | None:
    """The same check in a container of `image`, the stack's Locust image, so a file importing
    what only the host has (pandas, scikit-learn) is refused as the workers would fail on it.
    The file goes in on stdin (no mount: on a cluster the engine is not on this host); the
    container has no network and is removed."""
    problem = _file_problem(path)
    if problem is not None:
        return problem
    where = ["--host", docker_host] if docker_host else []
    script = (
        f"mkdir -p {IMAGE_USER_DIR} && cat > {IMAGE_USER_DIR}/{USER_LOCUSTFILE_NAME} && exec "
        f"python -m loadtest.locustfile_check {IMAGE_OUR_LOCUSTFILE} "
        f"{IMAGE_USER_DIR}/{USER_LOCUSTFILE_NAME}"
    )
    command = ["docker", *where, "run", "--rm", "-i", "--network", "none"]
    command += ["--entrypoint", "sh", image, "-c", script]
    return _run_check(
        path, command, path.read_bytes(), f"{IMAGE_USER_DIR}/{USER_LOCUSTFILE_NAME}", image
    )


def _file_problem(path: Path) -> str | None:
    if not path.is_file():
        return f"{path} is not a file"
    if path.suffix != ".py":
        return f"{path} is not a Python file (.py)"
    return None


def _run_check(
    path: Path, command: list[str], content: bytes | None, copy: str, image: str | None = None
) -> str | None:
    """Runs the child check; None when it passed, else its last lines naming the user's file."""
    try:
        result = subprocess.run(
            command, input=content, capture_output=True, timeout=CHECK_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        return f"{path}: importing it took more than {CHECK_TIMEOUT_S:g} s"
    if result.returncode == 0:
        return None
    # The child's traceback (stderr), then its verdict (stdout), naming the user's own file.
    output = (result.stderr + result.stdout).decode("utf-8", "replace").replace(copy, str(path))
    lines = [line for line in output.splitlines() if line.strip()]
    quoted = "\n".join(f"    {line}" for line in lines[-QUOTED_LINES:])
    where = f" (checked in {image})" if image else ""
    return f"{path} cannot run on the stack's Locust{where}:\n{quoted}"


def _load(ours: Path, theirs: Path) -> str | None:
    """In the child: Locust's loader on both files, as the master and the workers will run."""
    from locust.main import merge_locustfiles_content

    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            users, _shapes, _tasks, _shape = merge_locustfiles_content([str(ours), str(theirs)])
    except SystemExit:
        return errors.getvalue().strip() or "Locust refused the two locustfiles"
    module = theirs.stem
    theirs_users = sorted(name for name, cls in users.items() if cls.__module__ == module)
    if not theirs_users:
        return "it defines no User class (a class deriving from HttpUser, FastHttpUser or User)"
    from locust import LoadTestShape

    imported = sys.modules[module]
    shapes = [
        name
        for name, value in vars(imported).items()
        if isinstance(value, type)
        and issubclass(value, LoadTestShape)
        and value is not LoadTestShape
        and value.__module__ == module
    ]
    if shapes:
        return (
            f"it defines a load shape ({', '.join(shapes)}); the matrix's profile sets the "
            "users and the spawn rate, so leave it out"
        )
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m loadtest.locustfile_check OUR_LOCUSTFILE USER_LOCUSTFILE")
        return 2
    try:
        problem = _load(Path(argv[0]), Path(argv[1]))
    except Exception as error:  # the user's code may raise anything while it is imported
        import traceback

        traceback.print_exc()
        problem = f"importing it failed: {type(error).__name__}: {error}"
    if problem:
        print(problem)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
