"""Builds a target's image when the engine lacks it and the matrix file says where it comes from
(`target.build`), so a fresh clone measures the worked example with one command.

Why scripts/build_images.sh and not a `docker build` here: the example's Dockerfile installs
wheels the host downloaded into build/wheels/ and builds FROM the pinned base or, without a
registry, the local debootstrap one; that script is where those rules live. Its progress lines
go straight to the terminal (a first build takes minutes); a failure is refused naming the field.
An image that is there already is used as it is: the lab does not rebuild behind your back
(`docker image rm` it to rebuild).

On `--cluster` the image then goes to the cluster the way the stack's own images do
(cluster/lifecycle.py load_images: host engine -> manager engine -> the cluster's registry), and
the api service runs it by its registry name, so a replica placed on any node can pull it."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

from cluster.lifecycle import load_images
from cluster.system import ClusterError
from matrix.config import PROJECT_ROOT, MatrixFile, example_image_parts
from matrix.measure.cluster_target import ClusterTarget
from matrix.measure.target_smoke import TargetRefused
from stack.engine import Engine

BUILD_SCRIPT = PROJECT_ROOT / "scripts" / "build_images.sh"

# Builds example NAME tagged TAG; returns the script's exit code.
Builder = Callable[[str, str], int]
# Brings images of the host's engine to a cluster: (manager engine, registry prefix, names) ->
# the names its nodes pull.
Loader = Callable[[str, str, list[str]], list[str]]


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


def load_onto_cluster(
    matrix: MatrixFile,
    cluster: ClusterTarget,
    say: Callable[[str], None],
    load: Loader = load_images,
) -> MatrixFile:
    """The matrix with its target's image pushed to the cluster's registry and named as the
    nodes pull it; TargetRefused naming target.image when that fails. Unchanged without a
    target."""
    target = matrix.target
    if target is None:
        return matrix
    say(f"target {target.image}: loading it into the cluster's registry ({cluster.image_prefix})")
    try:
        (pushed,) = load(cluster.docker_host, cluster.image_prefix, [target.image])
    except ClusterError as error:
        raise TargetRefused(
            f"target.image: cannot load {target.image} into the cluster: {error}"
        ) from None
    say(f"target {target.image}: the cluster's nodes pull it as {pushed}")
    return matrix.model_copy(update={"target": target.model_copy(update={"image": pushed})})
