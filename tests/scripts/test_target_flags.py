"""--target-image, --target-port and --request-file: the matrix file's target block from the
command line, checked before anything is installed or started."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from matrix.__main__ import main, matrix_as_run, target_from_flags
from matrix.config import load_matrix_file
from tests.scripts.test_entry_args import run_with_stubs
from tests.support import PROJECT_ROOT

MATRIX = """
name: quick-try
cells: {replicas: [1], cpus: [0.5], memory: [256M]}
profile: {kind: search, start_rate: 50}
target_rps: 20
"""
REQUESTS = """
health_path: /healthz
env: {MODEL: small}
requests:
  - {method: POST, path: /predict, body_file: one.json, expect_status: 200, weight: 2}
  - {method: GET, path: /version}
"""


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(MATRIX)
    # The request file and its body live elsewhere than the matrix file.
    (tmp_path / "req").mkdir()
    (tmp_path / "req" / "one.json").write_text(json.dumps({"x": [1.0, 2.0]}))
    requests = tmp_path / "req" / "requests.yaml"
    requests.write_text(REQUESTS)
    return matrix, requests


def test_the_flags_build_the_target_block(files: tuple[Path, Path]) -> None:
    matrix_path, requests = files
    block = target_from_flags("my-api:1", 8080, requests)
    matrix = load_matrix_file(matrix_path, block)
    target = matrix.target
    assert target is not None
    assert (target.image, target.port, target.health_path) == ("my-api:1", 8080, "/healthz")
    assert target.env == {"MODEL": "small"}
    # body_file is relative to the request file, not to the matrix file.
    assert target.requests[0].body == {"x": [1.0, 2.0]}
    assert [(r.method, r.path, r.weight) for r in target.requests] == [
        ("POST", "/predict", 2.0),
        ("GET", "/version", 1.0),
    ]


def test_a_run_keeps_the_matrix_with_the_flags_block(files: tuple[Path, Path]) -> None:
    matrix_path, requests = files
    matrix = load_matrix_file(matrix_path, target_from_flags("my-api:1", 8080, requests))
    kept = matrix_path.parent / "kept" / "matrix.yaml"
    kept.parent.mkdir()
    kept.write_text(matrix_as_run(matrix_path, matrix, from_flags=True))
    # Read back without the flags or the body file: the same plan (so a resume matches).
    assert load_matrix_file(kept).fingerprint() == matrix.fingerprint()


def test_no_flags_no_target(files: tuple[Path, Path]) -> None:
    assert target_from_flags(None, None, None) is None


@pytest.mark.parametrize(
    ("args", "fault"),
    [
        (["--target-image", "my-api:1"], "missing --target-port, --request-file"),
        (["--target-port", "80", "--request-file", "r.yaml"], "missing --target-image"),
        (
            ["--target-image", "a", "--target-port", "80", "--request-file", "none.yaml"],
            "--request-file none.yaml",
        ),
        (["--target-image", "a", "--target-port", "0", "--request-file", "REQ"], "target.port"),
        (["--target-image", "a b", "--target-port", "80", "--request-file", "REQ"], "target.image"),
    ],
)
def test_bad_flags_are_refused_naming_them(
    files: tuple[Path, Path], args: list[str], fault: str, capsys: pytest.CaptureFixture[str]
) -> None:
    matrix_path, requests = files
    argv = ["--matrix", str(matrix_path), "--validate-only"]
    argv += [str(requests) if arg == "REQ" else arg for arg in args]
    assert main(argv) == 2
    assert fault in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "fault"),
    [
        ("- {path: /p}\n", "a mapping with requests:"),
        ("requests: [{path: /p}]\nimage: other\n", "unknown field(s) image"),
        ("requests: [{path: /p, body_file: missing.json}]\n", "cannot read it"),
        ("requests: [{path: /p, body_file: bad.json}]\n", "bad.json is not JSON"),
        ("requests: [{path: /p, expect_status: 1000}]\n", "target.requests.0.expect_status"),
    ],
)
def test_a_bad_request_file_is_refused_naming_the_field(
    files: tuple[Path, Path], content: str, fault: str, capsys: pytest.CaptureFixture[str]
) -> None:
    matrix_path, requests = files
    (requests.parent / "bad.json").write_text("{not json")
    requests.write_text(content)
    argv = ["--matrix", str(matrix_path), "--validate-only", "--target-image", "a"]
    assert main([*argv, "--target-port", "80", "--request-file", str(requests)]) == 2
    assert fault in capsys.readouterr().err


def test_a_file_with_a_target_block_refuses_the_flags(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    matrix_path, requests = files
    matrix_path.write_text(MATRIX + "target: {image: a, port: 80, requests: [{path: /p}]}\n")
    argv = ["--matrix", str(matrix_path), "--validate-only", "--target-image", "b"]
    assert main([*argv, "--target-port", "80", "--request-file", str(requests)]) == 2
    assert "has a target block already" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--target-image", "--target-port", "--request-file"])
def test_the_script_refuses_a_target_flag_without_its_value(flag: str, tmp_path: Path) -> None:
    code, stderr, calls = run_with_stubs(
        PROJECT_ROOT / "scripts" / "run_matrix.sh", [flag], tmp_path
    )
    assert code == 1
    assert f"{flag} needs a value" in stderr
    assert calls == ""


def test_report_only_of_a_folder_without_a_run_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--report-only", str(tmp_path)]) == 2
    assert f"--report-only {tmp_path}: no readable run.json" in capsys.readouterr().err


def test_report_only_reads_a_file_targets_body_from_where_the_run_started(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    matrix_path, _ = files
    (tmp_path / "bodies").mkdir()
    (tmp_path / "bodies" / "b.json").write_text("{}")
    block = "target: {image: a, port: 80, requests: [{path: /p, body_file: bodies/b.json}]}\n"
    matrix_path.write_text(MATRIX + block)
    run_dir = tmp_path / "results" / "run"
    (run_dir / "cells").mkdir(parents=True)
    (run_dir / "matrix.yaml").write_text(matrix_path.read_text())
    (run_dir / "run.json").write_text(json.dumps({"matrix_file": str(matrix_path)}))
    assert main(["--report-only", str(run_dir)]) == 0, capsys.readouterr().err
    assert (run_dir / "report.md").is_file()


def test_validate_only_lists_the_target(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    matrix_path, requests = files
    argv = ["--matrix", str(matrix_path), "--validate-only", "--target-image", "my-api:1"]
    assert main([*argv, "--target-port", "8080", "--request-file", str(requests)]) == 0
    out = capsys.readouterr().out
    assert "target: my-api:1 (port 8080, health /healthz), 2 request(s)" in out
