"""Builds a target's image when the engine lacks it and the matrix file says where it comes from
(`target.build`), so a fresh clone measures the worked example with one command.

Why scripts/build_images.sh and not a `docker build` here: the example's Dockerfile installs
wheels the host downloaded into build/wheels/ and builds FROM the pinned base or, without a
registry, the local debootstrap one; that script is where those rules live. Its progress lines
go straight to the terminal (a first build takes minutes); a failure is refused naming the field.
An image that is there already is used as it is: the lab does not rebuild behind your back
(`docker image rm` it to rebuild)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

from matrix.config import PROJECT_ROOT, MatrixFile, example_image_parts
from matrix.measure.target_smoke import TargetRefused
from stack.engine import Engine

BUILD_SCRIPT = PROJECT_ROOT / "scripts" / "build_images.sh"

# Builds example NAME tagged TAG; returns the script's exit code.
Builder = Callable[[str, str], int]


def build_example(name: str, tag: str) -> int:
    """scripts/build_images.sh --example NAME, with the tag and (no) prefix the target names."""
    command = [str(BUILD_SCRIPT), "--example", name, "--tag", tag, "--prefix", ""]
    return subprocess.run(command, cwd=PROJECT_ROOT, check=False).returncode


def ensure_target_image(
    matrix: MatrixFile,
    engine: Engine,
    say: Callable[[str], None],
    build: Builder = build_example,
) -> None:
    """Builds the target's image from `target.build` when `engine` lacks it; TargetRefused naming
    target.build when that fails. Nothing without a target or without `build`."""
    target = matrix.target
    if target is None or target.build is None:
        return
    if engine.image_exists(target.image):
        say(f"target {target.image}: the image is here, used as it is (target.build not rebuilt)")
        return
    name, tag = example_image_parts(target.image)
    # TargetSpec validated that the image is the one build_images.sh makes from this folder.
    assert name is not None
    say(
        f"target {target.image}: not an image of this engine; building it from target.build "
        f"({target.build.relative_to(PROJECT_ROOT)}) with scripts/build_images.sh --example "
        f"{name} (minutes the first time)"
    )
    code = build(name, tag)
    if code != 0:
        raise TargetRefused(
            f"target.build: scripts/build_images.sh --example {name} failed with exit code "
            f"{code} (its last lines above; the whole log in build/example-{name}-image.log)"
        )
    if not engine.image_exists(target.image):
        raise TargetRefused(
            f"target.build: scripts/build_images.sh --example {name} succeeded, but the engine "
            f"still has no {target.image}"
        )
    say(f"target {target.image}: built")
