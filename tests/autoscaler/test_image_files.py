"""The autoscaler image carries a few of the project's files, not the whole tree
(autoscaler/Dockerfile's COPY lines): what the container runs must import from exactly those
files, and each must be in the build context (.dockerignore excludes everything it does not
name)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

from docker.utils.build import exclude_paths

from tests.support import PROJECT_ROOT

DOCKERFILE = PROJECT_ROOT / "autoscaler" / "Dockerfile"


def _copied_files() -> list[tuple[str, str]]:
    """(source pattern, destination under /app) for each project file the image copies."""
    pairs = []
    for line in DOCKERFILE.read_text().splitlines():
        words = line.split()
        if not words or words[0] != "COPY" or any(w.startswith("--from") for w in words):
            continue
        *sources, destination = words[1:]
        if destination.startswith("/app/"):
            pairs += [(source, destination.removeprefix("/app/")) for source in sources]
    return pairs


def _build_context() -> set[str]:
    """The files `docker build` sends from the project root, as docker-py reads .dockerignore."""
    lines = (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return set(exclude_paths(str(PROJECT_ROOT), patterns))


def test_the_autoscaler_imports_from_the_files_its_image_copies(tmp_path: Path) -> None:
    pairs = _copied_files()
    assert pairs, "no COPY into /app found in autoscaler/Dockerfile"
    context = _build_context()
    for pattern, destination in pairs:
        matches = glob.glob(str(PROJECT_ROOT / pattern))
        assert matches, f"{pattern} (copied by the Dockerfile) matches no file"
        for match in matches:
            relative = str(Path(match).relative_to(PROJECT_ROOT))
            assert relative in context, f"{relative} is copied but .dockerignore leaves it out"
            target = tmp_path / destination
            if destination.endswith("/"):
                target = target / Path(match).name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(match, target)
    # What the container runs (`python3 -m autoscaler`) and everything it imports; from_run.py is
    # the host's (stack_up.sh --autoscale-from) and may need the whole matrix.
    modules = ["autoscaler.__main__"]
    # The copied tree comes first on the path, so `matrix` and `stack` resolve to the copies; the
    # project's editable install (a finder on sys.meta_path that would find any module of the
    # checkout) is taken out first, so a module the image lacks fails here as in the container.
    code = (
        "import importlib, sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if '__editable__' not in f.__module__]\n"
        "for name in sys.argv[1:]:\n"
        "    importlib.import_module(name)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", code, *modules],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
