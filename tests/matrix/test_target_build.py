"""`target.build`: the lab builds a target's image from the repository's examples/ when the engine
lacks it, uses one that is there as it is, and refuses a failed build naming the field. The build
script is a fake recording its calls; the engine is tests/stack/fake_engine.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.system import ClusterError
from matrix.config import PROJECT_ROOT, MatrixFile, MatrixFileError, load_matrix_file
from matrix.measure.cluster_target import ClusterTarget
from matrix.measure.deploy import target_container
from matrix.measure.target_build import ensure_target_image, load_onto_cluster
from matrix.measure.target_smoke import TargetRefused
from tests.matrix.test_runner import new_engine
from tests.stack.fake_engine import FakeEngine

EXAMPLE = PROJECT_ROOT / "examples" / "tutorial-api"
IMAGE = "penguin-lab/example-tutorial-api:latest"


class FakeBuilder:
    """Records (name, tag) per call; adds the image to the engine when it 'succeeds'."""

    def __init__(self, engine: FakeEngine, code: int = 0, makes_image: bool = True) -> None:
        self.engine, self.code, self.makes_image = engine, code, makes_image
        self.calls: list[tuple[str, str]] = []

    def __call__(self, name: str, tag: str) -> int:
        self.calls.append((name, tag))
        if self.code == 0 and self.makes_image:
            self.engine.images.add(f"penguin-lab/example-{name}:{tag}")
        return self.code


def example_matrix() -> MatrixFile:
    return load_matrix_file(EXAMPLE / "matrix.yaml")


def matrix_with(tmp_path: Path, image: str, build: str) -> MatrixFile:
    """The example's matrix file with another image and build folder (relative to the example)."""
    path = tmp_path / "matrix.yaml"
    text = (EXAMPLE / "matrix.yaml").read_text(encoding="utf-8")
    path.write_text(
        text.replace(f"image: {IMAGE}", f"image: {image}").replace("build: .", f"build: {build}")
    )
    return load_matrix_file(path, base_dir=EXAMPLE)


def test_both_example_matrix_files_build_the_example_folder() -> None:
    for name in ("matrix.yaml", "matrix-locustfile.yaml"):
        target = load_matrix_file(EXAMPLE / name, check_files=False).target
        assert target is not None
        assert target.build == EXAMPLE
        assert target.image == IMAGE


def test_a_missing_image_is_built_from_the_folder() -> None:
    engine = new_engine()
    builder = FakeBuilder(engine)
    said: list[str] = []
    ensure_target_image(example_matrix(), engine, said.append, builder)
    assert builder.calls == [("tutorial-api", "latest")]
    assert "building it from target.build (examples/tutorial-api)" in said[0]
    assert said[-1] == f"target {IMAGE}: built"


def test_an_image_that_is_there_is_not_rebuilt() -> None:
    engine = new_engine()
    engine.images.add(IMAGE)
    builder = FakeBuilder(engine)
    said: list[str] = []
    ensure_target_image(example_matrix(), engine, said.append, builder)
    assert builder.calls == []
    assert "used as it is" in said[0]


def test_a_failed_build_is_refused_naming_the_field() -> None:
    engine = new_engine()
    with pytest.raises(TargetRefused) as error:
        ensure_target_image(example_matrix(), engine, lambda _: None, FakeBuilder(engine, code=1))
    assert str(error.value).startswith(
        "target.build: scripts/build_images.sh --example tutorial-api failed with exit code 1"
    )


def test_a_build_that_makes_no_such_image_is_refused() -> None:
    engine = new_engine()
    builder = FakeBuilder(engine, makes_image=False)
    with pytest.raises(TargetRefused, match="^target.build: .* still has no penguin-lab/example"):
        ensure_target_image(example_matrix(), engine, lambda _: None, builder)


def test_no_build_field_builds_nothing(tmp_path: Path) -> None:
    matrix = matrix_with(tmp_path, IMAGE, "null")
    engine = new_engine()
    builder = FakeBuilder(engine)
    ensure_target_image(matrix, engine, lambda _: None, builder)
    assert builder.calls == []


def test_a_folder_outside_the_examples_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MatrixFileError, match=r"target\.build: .* is not a folder of .*examples"):
        matrix_with(tmp_path, IMAGE, str(tmp_path))


def test_an_image_the_folder_does_not_build_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MatrixFileError, match="builds penguin-lab/example-tutorial-api:TAG"):
        matrix_with(tmp_path, "my-api:1", ".")


def test_the_tag_is_the_images(tmp_path: Path) -> None:
    matrix = matrix_with(tmp_path, "penguin-lab/example-tutorial-api:v2", ".")
    engine = new_engine()
    builder = FakeBuilder(engine)
    ensure_target_image(matrix, engine, lambda _: None, builder)
    assert builder.calls == [("tutorial-api", "v2")]


def _cluster() -> ClusterTarget:
    return ClusterTarget(
        docker_host="tcp://10.213.0.2:2375",
        stack_name="penguins",
        nginx_url="http://10.213.0.2:8000",
        edge_address="10.213.0.2",
        interface="pclab0",
        node_cgroups={},
        image_prefix="10.213.0.2:5000/",
    )


def test_on_a_cluster_the_target_runs_its_image_from_the_clusters_registry() -> None:
    loaded: list[tuple[str, str, list[str]]] = []

    def load(host: str, prefix: str, names: list[str]) -> list[str]:
        loaded.append((host, prefix, names))
        return [prefix + name for name in names]

    matrix = load_onto_cluster(example_matrix(), _cluster(), lambda _: None, load)
    assert loaded == [("tcp://10.213.0.2:2375", "10.213.0.2:5000/", [IMAGE])]
    assert matrix.target is not None and matrix.target.image == f"10.213.0.2:5000/{IMAGE}"
    assert target_container(matrix.target)["Image"] == f"10.213.0.2:5000/{IMAGE}"


def test_an_image_the_cluster_cannot_get_is_refused_naming_the_field() -> None:
    def load(_host: str, _prefix: str, _names: list[str]) -> list[str]:
        raise ClusterError(f"the host engine has no image {IMAGE}: run scripts/build_images.sh")

    with pytest.raises(TargetRefused) as error:
        load_onto_cluster(example_matrix(), _cluster(), lambda _: None, load)
    assert str(error.value).startswith(f"target.image: cannot load {IMAGE} into the cluster")
