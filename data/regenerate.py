"""Regenerates data/penguins_size.csv and data/penguins_lter.csv from the `palmerpenguins` package.

Run from the repository root: `python -m data.regenerate` (or `python data/regenerate.py`).
The output is byte-for-byte deterministic, so a regenerated file that differs from the committed
one means the upstream package changed, and `--check` turns that into a non-zero exit for CI.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import pandas as pd
from palmerpenguins import load_penguins_raw

DATA_DIR = Path(__file__).resolve().parent
SIZE_FILE = "penguins_size.csv"
LTER_FILE = "penguins_lter.csv"

# Column layout of the widely used penguins_size.csv: short species names, culmen_* names and the
# raw file's upper-case MALE/FEMALE.
SIZE_COLUMNS = {
    "Species": "species",
    "Island": "island",
    "Culmen Length (mm)": "culmen_length_mm",
    "Culmen Depth (mm)": "culmen_depth_mm",
    "Flipper Length (mm)": "flipper_length_mm",
    "Body Mass (g)": "body_mass_g",
    "Sex": "sex",
}
# Measured as whole numbers; pandas would print them as 181.0 because missing values make the
# column float, so they are written through a nullable integer type instead.
INTEGER_COLUMNS = ("Sample Number", "Flipper Length (mm)", "Body Mass (g)")
MISSING = "NA"


def build_lter() -> pd.DataFrame:
    """The raw Palmer LTER table (344 rows, 17 columns), integral columns kept integral."""
    raw = load_penguins_raw()
    for column in INTEGER_COLUMNS:
        raw[column] = raw[column].astype("Int64")
    return raw


def build_size(lter: pd.DataFrame) -> pd.DataFrame:
    """The penguins_size layout derived from the raw table."""
    size = lter[list(SIZE_COLUMNS)].rename(columns=SIZE_COLUMNS)
    # "Adelie Penguin (Pygoscelis adeliae)" -> "Adelie"
    size["species"] = size["species"].str.split(" ", n=1).str[0]
    return size


def render(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False, na_rep=MISSING, lineterminator="\n").encode("utf-8")


def regenerate(output_dir: Path, check: bool = False) -> dict[str, str]:
    """Writes (or with check=True only compares) both files; returns name -> sha256."""
    lter = build_lter()
    outputs = {LTER_FILE: render(lter), SIZE_FILE: render(build_size(lter))}
    digests: dict[str, str] = {}
    stale: list[str] = []
    for name, content in outputs.items():
        path = output_dir / name
        digests[name] = hashlib.sha256(content).hexdigest()
        if check:
            if not path.is_file() or path.read_bytes() != content:
                stale.append(name)
            continue
        tmp = path.with_suffix(".csv.tmp")
        tmp.write_bytes(content)
        tmp.replace(path)  # atomic: readers never see a half-written CSV
    if stale:
        raise SystemExit(f"error: out of date in {output_dir}: {', '.join(stale)}")
    return digests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data.regenerate", description=__doc__)
    parser.add_argument("--output-dir", type=Path, default=DATA_DIR, help="default: data/")
    parser.add_argument(
        "--check", action="store_true", help="only verify that the files are up to date"
    )
    args = parser.parse_args(argv)
    if not args.output_dir.is_dir():
        parser.error(f"--output-dir {args.output_dir} is not a directory")
    for name, digest in regenerate(args.output_dir, check=args.check).items():
        print(f"{digest}  {args.output_dir / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
