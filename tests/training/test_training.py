"""python -m training: metrics, manifest, determinism, artifacts, CLI errors and atomic writes."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest

from service.inference import FEATURES
from service.registry import MODELS, EstimatorOptions
from tests.support import PROJECT_ROOT
from training.dataset import load_dataset
from training.errors import DatasetError, OutputError, ParityError
from training.settings import TrainingSettings
from training.train import TrainingResult, train

DATA = PROJECT_ROOT / "data" / "penguins_size.csv"
MODEL_NAMES = {"lr", "rf", "svm"}
METRICS = {"holdout_accuracy", "holdout_macro_f1", "cv_accuracy_mean", "cv_accuracy_std"}


def _quiet(_message: str) -> None:
    pass


def _run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "training", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def _copy_models(source: Path, output: Path) -> Path:
    """A copy of a trained models/ folder, for tests that retrain over an existing one."""
    output.mkdir()
    for path in source.iterdir():
        (output / path.name).write_bytes(path.read_bytes())
    return output


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


def test_manifest_lists_three_models_that_each_reach_097(trained: TrainingResult) -> None:
    manifest = json.loads((trained.output / "manifest.json").read_text(encoding="utf-8"))
    assert manifest == trained.manifest
    assert manifest["default_model"] == "lr"
    assert set(manifest["models"]) == MODEL_NAMES
    for name, entry in manifest["models"].items():
        assert entry["name"] == name
        assert entry["title"]
        assert entry["version"].startswith(f"{name}-")
        assert entry["artifact"] == f"{name}.npz"
        assert entry["pipeline"] == f"{name}.joblib"
        assert entry["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
        assert set(entry["metrics"]) == METRICS
        assert entry["metrics"]["holdout_accuracy"] >= 0.97, name
        assert entry["metrics"]["holdout_macro_f1"] >= 0.97, name
        assert entry["metrics"]["cv_accuracy_mean"] >= 0.97, name
        assert 0 <= entry["metrics"]["cv_accuracy_std"] < 0.05


def test_manifest_describes_data_schema_and_libraries(trained: TrainingResult) -> None:
    manifest = trained.manifest
    assert manifest["data"]["file"] == "data/penguins_size.csv"
    assert manifest["data"]["rows"] == 344
    assert manifest["data"]["sha256"] == hashlib.sha256(DATA.read_bytes()).hexdigest()
    schema = manifest["feature_schema"]
    assert schema["features"] == list(FEATURES)
    assert schema["categorical"]["island"]["values"] == ["Biscoe", "Dream", "Torgersen"]
    assert schema["categorical"]["sex"]["values"] == ["FEMALE", "MALE"]
    assert schema["numeric"]["body_mass_g"]["unit"] == "g"
    assert set(manifest["library_versions"]) >= {"numpy", "scikit-learn", "pandas", "joblib"}
    assert manifest["training"]["seed"] == 42
    assert manifest["training"]["rows_used"] + manifest["training"]["rows_excluded"] == 344


def test_artifacts_exist_load_without_pickle_and_match_their_checksums(
    trained: TrainingResult,
) -> None:
    for name, entry in trained.manifest["models"].items():
        artifact = trained.output / entry["artifact"]
        assert hashlib.sha256(artifact.read_bytes()).hexdigest() == entry["artifact_sha256"]
        assert entry["version"] == f"{name}-{entry['artifact_sha256'][:12]}"
        with np.load(artifact, allow_pickle=False) as arrays:
            assert arrays["classes"].tolist() == entry["classes"]
        pipeline = joblib.load(trained.output / entry["pipeline"])
        assert list(pipeline.classes_) == entry["classes"]
    # Small enough to ship in the API image without thinking about it.
    assert (
        sum(
            (trained.output / e["artifact"]).stat().st_size
            for e in trained.manifest["models"].values()
        )
        < 500_000
    )


def test_training_twice_gives_identical_manifest_and_artifacts(
    trained: TrainingResult, tmp_path: Path
) -> None:
    # Retrain over a copy of the first run's directory: also exercises replacing models/.
    output = _copy_models(trained.output, tmp_path / "models")
    (output / "stale.npz").write_bytes(b"from an older run")
    again = train(TrainingSettings(output=output), log=_quiet)
    first = {n: e["metrics"] for n, e in trained.manifest["models"].items()}
    second = {n: e["metrics"] for n, e in again.manifest["models"].items()}
    assert first == second
    assert again.manifest == trained.manifest
    for entry in trained.manifest["models"].values():
        name = entry["artifact"]
        assert (output / name).read_bytes() == (trained.output / name).read_bytes()
    assert not (output / "stale.npz").exists()
    assert _leftovers(tmp_path) == []


def test_cli_trains_with_options_and_environment_defaults(tmp_path: Path) -> None:
    # A small forest keeps this end-to-end run quick; it also proves the env defaults apply.
    env = {"PATH": "/usr/bin:/bin", "PENGUIN_TRAINING_FOREST_TREES": "10"}
    result = _run_cli(
        "--output", str(tmp_path / "out"), "--data", str(DATA), "--seed", "7", env=env
    )
    assert result.returncode == 0, result.stderr
    assert "holdout accuracy" in result.stdout
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["training"]["seed"] == 7
    assert manifest["training"]["forest_trees"] == 10
    assert all(e["metrics"]["holdout_accuracy"] >= 0.95 for e in manifest["models"].values())
    assert _leftovers(tmp_path) == []


def test_cli_help_describes_options() -> None:
    result = _run_cli("--help")
    assert result.returncode == 0
    for option in ("--data", "--output", "--seed", "PENGUIN_TRAINING_DATA"):
        assert option in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "/nonexistent/penguins.csv"], "does not exist"),
        (["--output", "/nonexistent/dir/models"], "does not exist"),
        (["--seed", "abc"], "invalid int value"),
    ],
)
def test_cli_rejects_bad_arguments_clearly(tmp_path: Path, args: list[str], message: str) -> None:
    if "--output" not in args:
        args = [*args, "--output", str(tmp_path / "models")]
    result = _run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "models").exists()


def test_cli_rejects_a_malformed_environment_value(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PENGUIN_TRAINING_SEED": "forty-two"}
    result = _run_cli("--output", str(tmp_path / "models"), env=env)
    assert result.returncode == 2
    assert "PENGUIN_TRAINING_" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_rejects_a_file_as_output(tmp_path: Path) -> None:
    target = tmp_path / "models"
    target.write_text("not a directory")
    result = _run_cli("--output", str(target))
    assert result.returncode == 2
    assert "not a directory" in result.stderr
    assert target.read_text() == "not a directory"


def test_refuses_to_replace_a_directory_that_is_not_a_models_directory(tmp_path: Path) -> None:
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError, match="refusing"):
        train(TrainingSettings(output=precious), log=_quiet)
    assert (precious / "notes.txt").read_text() == "keep me"


def test_bad_data_fails_before_touching_existing_models(
    trained: TrainingResult, tmp_path: Path
) -> None:
    output = _copy_models(trained.output, tmp_path / "models")
    before = _snapshot(output)
    bad = tmp_path / "bad.csv"
    bad.write_text("species,island\nAdelie,Biscoe\n")
    with pytest.raises(DatasetError, match="lacks the column"):
        train(TrainingSettings(data=bad, output=output), log=_quiet)
    assert _snapshot(output) == before
    assert _leftovers(tmp_path) == []


def test_a_failure_mid_run_leaves_existing_models_untouched(
    trained: TrainingResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = _copy_models(trained.output, tmp_path / "models")
    before = _snapshot(output)
    import training.train as train_module

    real_write = train_module.write_artifact
    calls = []

    def write_then_fail(path: Path, arrays: dict[str, np.ndarray]) -> str:
        calls.append(path.name)
        if len(calls) == 2:
            raise OSError("disk full (simulated)")
        return real_write(path, arrays)

    monkeypatch.setattr(train_module, "write_artifact", write_then_fail)
    with pytest.raises(OSError, match="simulated"):
        train(TrainingSettings(output=output, forest_trees=5), log=_quiet)
    assert _snapshot(output) == before
    assert _leftovers(tmp_path) == []


def test_a_parity_failure_writes_nothing(tmp_path: Path) -> None:
    # A negative tolerance cannot be met, which exercises the gate that protects the service.
    with pytest.raises(ParityError, match="differ from scikit-learn"):
        train(
            TrainingSettings(output=tmp_path / "models", forest_trees=5, parity_tolerance=-1.0),
            log=_quiet,
        )
    assert not (tmp_path / "models").exists()
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "cannot read"),
        (
            "species,island,culmen_length_mm,culmen_depth_mm,flipper_length_mm,body_mass_g,sex\n"
            "Adelie,Biscoe,abc,18,190,3800,MALE\n",
            "not numeric",
        ),
        (
            "species,island,culmen_length_mm,culmen_depth_mm,flipper_length_mm,body_mass_g,sex\n"
            "Adelie,Atlantis,39,18,190,3800,MALE\n",
            "unexpected values",
        ),
    ],
)
def test_malformed_data_gives_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "data.csv"
    path.write_text(content)
    with pytest.raises(DatasetError, match=message):
        load_dataset(path)


def test_settings_validate_their_values() -> None:
    with pytest.raises(ValueError, match="test_size"):
        TrainingSettings(test_size=0.9)
    with pytest.raises(ValueError, match="cv_folds"):
        TrainingSettings(cv_folds=1)


def test_export_refuses_an_svc_whose_decision_columns_are_pairs() -> None:
    # With three classes, decision_function_shape="ovo" also yields three columns, so
    # calibration would run silently on pairs instead of classes; the compiler must refuse.
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import SVC

    from training.export import compile_pipeline
    from training.pipelines import build_pipelines

    options = EstimatorOptions(seed=0, forest_trees=1, cv_folds=3)
    pipeline = build_pipelines(options)["svm"]
    pipeline.set_params(
        model=CalibratedClassifierCV(SVC(decision_function_shape="ovo"), cv=3, ensemble=False)
    )
    data = load_dataset(DATA).trainable()
    pipeline.fit(data.features, data.target)
    with pytest.raises(ValueError, match="ovr"):
        compile_pipeline(pipeline, MODELS["svm"])
