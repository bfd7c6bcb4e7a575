"""The matrix file: valid files load, invalid ones get a clear error before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from matrix import __main__ as matrix_main
from matrix import config
from matrix.__main__ import main
from matrix.config import (
    DEFAULT_MATRIX_FILE,
    QUICK_MATRIX_FILE,
    MatrixFileError,
    load_matrix_file,
    memory_bytes,
)

MINIMAL = """
cells: {replicas: [1, 2], cpus: [0.5, 1.0], memory: [256M]}
profile: {kind: staircase, start_rate: 10, step_rate: 10, step_seconds: 10, max_rate: 50}
target_rps: 30
"""
SEARCH = """
cells: {replicas: [1], cpus: [0.5], memory: [256M]}
profile: {kind: search, start_rate: 100, precision: 0.05, ceiling: 5000}
trials: 2
target_rps: 30
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "matrix.yaml"
    path.write_text(text)
    return path


def test_shipped_matrix_files_are_valid() -> None:
    full = load_matrix_file(DEFAULT_MATRIX_FILE)
    quick = load_matrix_file(QUICK_MATRIX_FILE)
    assert len(full.cell_list()) > len(quick.cell_list()) >= 2
    # The quick matrix must leave room for stack_up's image build in its 10 minutes, measure
    # every cell more than once (to give an interval), search for each cell's own limit, and
    # compare it with a closed loop.
    assert quick.profile.kind == "search" and quick.trials >= 2 and quick.adaptive
    assert quick.closed_loop.enabled and full.closed_loop.enabled
    assert quick.expected_load_seconds() * len(quick.cell_list()) <= 8.5 * 60


def test_minimal_file_gets_defaults_and_the_cartesian_product(tmp_path: Path) -> None:
    matrix = load_matrix_file(write(tmp_path, MINIMAL))
    assert [c.cell_id for c in matrix.cell_list()] == [
        "r1-c0.5-m256M",
        "r1-c1-m256M",
        "r2-c0.5-m256M",
        "r2-c1-m256M",
    ]
    assert matrix.objective.p95_ms == 500
    assert matrix.profile.steps() == 5
    assert matrix.profile.arrival == "constant" and matrix.trials == 1
    assert matrix.objective.min_completion_ratio == 0.99


def test_search_profile_defaults(tmp_path: Path) -> None:
    matrix = load_matrix_file(write(tmp_path, SEARCH))
    assert (matrix.profile.growth, matrix.profile.precision) == (2.0, 0.05)
    assert matrix.trials == 2
    # The safety limit on the run time covers the search's step limit.
    assert matrix.profile.duration_seconds() >= matrix.profile.max_steps * 10


def test_max_total_cpus_drops_big_cells(tmp_path: Path) -> None:
    text = MINIMAL.replace("memory: [256M]", "memory: [256M], max_total_cpus: 1")
    ids = [c.cell_id for c in load_matrix_file(write(tmp_path, text)).cell_list()]
    assert ids == ["r1-c0.5-m256M", "r1-c1-m256M", "r2-c0.5-m256M"]


def test_fingerprint_follows_the_plan_not_the_formatting(tmp_path: Path) -> None:
    a = load_matrix_file(write(tmp_path, MINIMAL))
    b = load_matrix_file(write(tmp_path, "# comment\n" + MINIMAL))
    c = load_matrix_file(write(tmp_path, MINIMAL.replace("target_rps: 30", "target_rps: 40")))
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


@pytest.mark.parametrize(
    "text, fragments",
    [
        ("- just a list", ["YAML mapping"]),
        ("cells: [", ["not valid YAML"]),
        (MINIMAL.replace("replicas: [1, 2]", "replicas: []"), ["cells.replicas"]),
        (MINIMAL.replace("[256M]", "[12 parsecs]"), ["cells.memory", "12 parsecs"]),
        (MINIMAL.replace("[256M]", "[16M]"), ["cells.memory", "64M"]),
        (MINIMAL.replace("kind: staircase", "kind: zigzag"), ["profile", "zigzag"]),
        (MINIMAL.replace("max_rate: 50", "max_rate: 5"), ["profile.staircase", "max_rate"]),
        (MINIMAL.replace("target_rps: 30", "target_rps: -1"), ["target_rps"]),
        (MINIMAL + "objective: {p95: 3}\n", ["objective.p95", "Extra inputs"]),
        (MINIMAL + "load_generator: {model_mix: 'lr=1,rf'}\n", ["model_mix", "not name=weight"]),
        (
            MINIMAL.replace("memory: [256M]", "memory: [256M], max_total_cpus: 0.1"),
            ["no cell to measure"],
        ),
        (SEARCH.replace("trials: 2", "trials: 0"), ["trials", "greater than or equal to 1"]),
        (SEARCH.replace("precision: 0.05", "precision: 0"), ["profile.search.precision"]),
        (SEARCH.replace("ceiling: 5000", "ceiling: -10"), ["profile.search.ceiling"]),
        (SEARCH.replace("ceiling: 5000", "ceiling: 50"), ["profile.search", "below start_rate"]),
        (
            SEARCH.replace("start_rate: 100", "start_rate: 100, growth: 1"),
            ["profile.search.growth"],
        ),
        (
            SEARCH.replace(
                "start_rate: 100", "start_rate: 100, step_seconds: 5, settle_seconds: 5"
            ),
            ["profile.search", "settle_seconds"],
        ),
        (
            SEARCH.replace("start_rate: 100", "start_rate: 100, arrival: bursty"),
            ["profile.search.arrival"],
        ),
        (SEARCH + "objective: {min_completion_ratio: 0}\n", ["objective.min_completion_ratio"]),
        (
            SEARCH.replace("start_rate: 100", "start_rate: 100, confirm_seconds: 3"),
            ["profile.search", "confirm_seconds (3) must be 0 (none) or at least step_seconds"],
        ),
        (SEARCH + "max_trials: 1\n", ["max_trials (1) is below trials (2)"]),
        (SEARCH + "ci_target: 0\n", ["ci_target", "greater than 0"]),
        (SEARCH + "cell_budget_seconds: -5\n", ["cell_budget_seconds"]),
        (SEARCH + "closed_loop: {enabled: true, users: 0}\n", ["closed_loop.users"]),
        (
            MINIMAL.replace(
                "{kind: staircase, start_rate: 10, step_rate: 10, step_seconds: 10, max_rate: 50}",
                "{kind: plain, users: 5, spawn_rate: 5, duration_seconds: 10}",
            )
            + "closed_loop: {enabled: true}\n",
            ["closed_loop", "needs a search or staircase profile"],
        ),
    ],
)
def test_invalid_files_name_file_field_and_fault(
    tmp_path: Path, text: str, fragments: list[str]
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(MatrixFileError) as caught:
        load_matrix_file(path)
    message = str(caught.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message


def test_model_mix_names_the_trained_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_text('{"models": {"lr": {}, "rf": {}, "knn": {}}}')
    monkeypatch.setattr(config, "MODEL_MANIFEST", manifest)
    path = write(tmp_path, MINIMAL + "load_generator: {model_mix: 'lr=1,svm=1'}\n")
    with pytest.raises(
        MatrixFileError,
        match=r"unknown models \['svm'\]; the trained models "
        r"are lr, rf, knn",
    ):
        load_matrix_file(path)
    # A model added to the registry and trained is accepted without touching the matrix code.
    load_matrix_file(write(tmp_path, MINIMAL + "load_generator: {model_mix: 'knn=1'}\n"))
    # The default mix is every model the API serves.
    assert load_matrix_file(write(tmp_path, MINIMAL)).load_generator.model_mix == ""


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MatrixFileError, match="cannot read"):
        load_matrix_file(tmp_path / "absent.yaml")


def test_cli_refuses_an_invalid_file_before_touching_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, MINIMAL.replace("[256M]", "[lots]"))
    assert main(["--matrix", str(path)]) == 2
    assert "cells.memory" in capsys.readouterr().err


def test_cli_refuses_autoscaled_cells_before_deploying_the_autoscaler_off(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Without --no-stack-up, run_matrix deploys the stack itself, with the autoscaler off, and
    # the 'on' cell failed only after that and its own deployment, warm-up and idle baseline.
    def no_engine(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the engine was touched")

    monkeypatch.setattr(matrix_main.DockerEngine, "from_env", no_engine)
    spike = Path(config.__file__).parent / "matrix-spike.yaml"
    assert main(["--matrix", str(spike)]) == 2
    error = capsys.readouterr().err
    assert "has cells with autoscale: on" in error and "--no-stack-up" in error


def test_memory_sizes() -> None:
    assert memory_bytes("512M") == 512 * 1024**2
    assert memory_bytes("1g") == 1024**3
    assert memory_bytes("256MiB") == 256 * 1024**2
    assert memory_bytes("1048576") == 1048576


EXPLICIT = """
name: explicit
cells:
  - {replicas: 1, cpus: 0.2, memory: 256M, observation: "1-4 req/s", search_first: true}
  - {replicas: 3, cpus: 0.15, memory: 256M}
admission: ["on", "off", 32]
profile: {kind: workshop, users: 2000, spawn_rate: 500, hold_seconds: 20, think_time: [1, 2.5]}
reference_search: {kind: search, start_rate: 100}
target_rps: 100
load_generator: {where: stack, workers: 3, model_mix: default, body: seed}
"""


def test_explicit_cells_times_admission_settings(tmp_path: Path) -> None:
    matrix = load_matrix_file(write(tmp_path, EXPLICIT))
    cells = matrix.cell_list()
    assert [c.cell_id for c in cells] == [
        "r1-c0.2-m256M-admon",
        "r1-c0.2-m256M-admoff",
        "r1-c0.2-m256M-adm32",
        "r3-c0.15-m256M-admon",
        "r3-c0.15-m256M-admoff",
        "r3-c0.15-m256M-adm32",
    ]
    assert {c.config_id for c in cells} == {"r1-c0.2-m256M", "r3-c0.15-m256M"}
    assert [c.observation for c in cells[:3]] == ["1-4 req/s"] * 3
    assert [c.search_first for c in cells] == [True] * 3 + [False] * 3
    assert matrix.profile.think_time == (1.0, 2.5)
    assert matrix.profile.duration_seconds() == pytest.approx(4 + 20)
    generator = matrix.load_generator
    assert (generator.where, generator.workers, generator.model_mix, generator.body) == (
        "stack",
        3,
        "default",
        "seed",
    )


def test_a_cross_product_keeps_its_cell_ids_without_admission(tmp_path: Path) -> None:
    matrix = load_matrix_file(write(tmp_path, MINIMAL))
    assert all(c.admission == "stack" and c.cell_id == c.config_id for c in matrix.cell_list())


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (
            ("reference_search: {kind: search, start_rate: 100}\n", ""),
            "search_first needs a reference_search",
        ),
        (("think_time: [1, 2.5]", "think_time: [2.5, 1]"), "think_time [2.5, 1]: the first bound"),
        (('admission: ["on", "off", 32]', "admission: [maybe]"), "admission"),
        (('admission: ["on", "off", 32]', 'admission: ["on", "on"]'), "listed more than once"),
        (
            ("{replicas: 3, cpus: 0.15, memory: 256M}", "{replicas: 3, cpus: 0.15, memory: 16M}"),
            "cells.1.memory",
        ),
        (
            (
                "{replicas: 3, cpus: 0.15, memory: 256M}",
                "{replicas: 3, cpus: 0.15, memory: 256M, x: 1}",
            ),
            "cells.1.x",
        ),
        (
            (
                "profile: {kind: workshop, users: 2000, spawn_rate: 500, hold_seconds: 20, "
                "think_time: [1, 2.5]}",
                "profile: {kind: search, start_rate: 10}",
            ),
            "load_generator.where: 'stack' runs the closed-model profiles",
        ),
    ],
)
def test_bad_explicit_files_say_what_is_wrong(
    tmp_path: Path, change: tuple[str, str], fragment: str
) -> None:
    old, new = change
    assert old in EXPLICIT
    text = EXPLICIT.replace(old, new)
    with pytest.raises(MatrixFileError) as caught:
        load_matrix_file(write(tmp_path, text))
    assert fragment in str(caught.value)


def test_the_workshop_matrix_is_the_workshops_experiment() -> None:
    matrix = load_matrix_file(config.PROJECT_ROOT / "matrix" / "matrix-workshop.yaml")
    profile = matrix.profile
    assert (profile.kind, profile.users, profile.spawn_rate, profile.think_time) == (
        "workshop",
        10_000,
        500,
        (1.0, 2.5),
    )
    assert profile.hold_seconds >= 60
    configs = [(c.replicas, c.cpus, c.memory) for c in matrix.cell_list()]
    assert sorted(set(configs)) == [
        (1, 0.1, "128M"),
        (1, 0.2, "256M"),
        (2, 0.15, "256M"),
        (3, 0.15, "256M"),
    ]
    assert all(c.observation for c in matrix.cell_list())
    assert {c.admission for c in matrix.cell_list()} == {"on", "off"}
    assert matrix.load_generator.where == "stack" and matrix.load_generator.workers >= 2
    assert matrix.load_generator.model_mix == "default" and matrix.load_generator.body == "seed"
