"""The committed Palmer penguins CSVs: layout, size, values, provenance and manifest checksum."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys

import pytest

from tests.support import PROJECT_ROOT, require

DATA_DIR = PROJECT_ROOT / "data"
SIZE_COLUMNS = [
    "species",
    "island",
    "culmen_length_mm",
    "culmen_depth_mm",
    "flipper_length_mm",
    "body_mass_g",
    "sex",
]
LTER_COLUMNS = [
    "studyName",
    "Sample Number",
    "Species",
    "Region",
    "Island",
    "Stage",
    "Individual ID",
    "Clutch Completion",
    "Date Egg",
    "Culmen Length (mm)",
    "Culmen Depth (mm)",
    "Flipper Length (mm)",
    "Body Mass (g)",
    "Sex",
    "Delta 15 N (o/oo)",
    "Delta 13 C (o/oo)",
    "Comments",
]


def _read(name: str) -> tuple[list[str], list[dict[str, str]]]:
    with (DATA_DIR / name).open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def test_size_file_has_the_known_layout_and_344_rows() -> None:
    columns, rows = _read("penguins_size.csv")
    assert columns == SIZE_COLUMNS
    assert len(rows) == 344
    assert {row["species"] for row in rows} == {"Adelie", "Chinstrap", "Gentoo"}
    assert {row["island"] for row in rows} == {"Biscoe", "Dream", "Torgersen"}
    assert {row["sex"] for row in rows} == {"MALE", "FEMALE", "NA"}
    counts = {
        s: sum(row["species"] == s for row in rows) for s in ("Adelie", "Chinstrap", "Gentoo")
    }
    assert counts == {"Adelie": 152, "Chinstrap": 68, "Gentoo": 124}


def test_size_file_values_are_plausible_measurements() -> None:
    _, rows = _read("penguins_size.csv")
    bounds = {
        "culmen_length_mm": (30, 60),
        "culmen_depth_mm": (13, 22),
        "flipper_length_mm": (170, 232),
        "body_mass_g": (2700, 6300),
    }
    missing = 0
    for row in rows:
        for column, (low, high) in bounds.items():
            if row[column] == "NA":
                missing += 1
                continue
            assert low <= float(row[column]) <= high, (column, row)
    # Two birds were never measured: four NA each.
    assert missing == 8
    assert sum(row["sex"] == "NA" for row in rows) == 11


def test_lter_file_is_the_raw_layout_and_matches_the_size_file() -> None:
    columns, lter = _read("penguins_lter.csv")
    assert columns == LTER_COLUMNS
    assert len(lter) == 344
    assert lter[0]["Species"] == "Adelie Penguin (Pygoscelis adeliae)"
    _, size = _read("penguins_size.csv")
    for raw, short in zip(lter, size, strict=True):
        assert raw["Species"].split(" ")[0] == short["species"]
        assert raw["Island"] == short["island"]
        assert raw["Culmen Length (mm)"] == short["culmen_length_mm"]
        assert raw["Body Mass (g)"] == short["body_mass_g"]
        assert (raw["Sex"] or "NA") == short["sex"]


def test_regenerating_reproduces_the_committed_files() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "data.regenerate", "--check"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_regenerate_check_fails_on_a_stale_file(tmp_path) -> None:
    (tmp_path / "penguins_size.csv").write_text("species\nAdelie\n")
    (tmp_path / "penguins_lter.csv").write_bytes((DATA_DIR / "penguins_lter.csv").read_bytes())
    result = subprocess.run(
        [sys.executable, "-m", "data.regenerate", "--check", "--output-dir", str(tmp_path)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "penguins_size.csv" in result.stderr


def test_readme_states_provenance_and_licence() -> None:
    text = (DATA_DIR / "README.md").read_text(encoding="utf-8")
    assert "CC0" in text
    assert "Gorman" in text
    assert "python -m data.regenerate" in text


def test_data_checksum_matches_the_trained_manifest() -> None:
    manifest_path = PROJECT_ROOT / "models" / "manifest.json"
    require(manifest_path.is_file(), "models/ is not trained (scripts/test.sh trains it first)")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    digest = hashlib.sha256((DATA_DIR / "penguins_size.csv").read_bytes()).hexdigest()
    assert manifest["data"]["file"] == "data/penguins_size.csv"
    assert manifest["data"]["rows"] == 344
    if manifest["data"]["sha256"] != digest:
        pytest.fail("models/ was trained on other data: retrain with python -m training")
