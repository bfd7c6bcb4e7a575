"""The run folder results/<timestamp>/: picked, created, or found again to resume a run of the
same matrix; its run.json written atomically."""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from matrix.config import MatrixFile, MatrixSettings
from matrix.errors import MatrixRunError
from matrix.report.report import CELLS_DIR

RUN_FILE = "run.json"


def read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def write_json(path: Path, data: object) -> None:
    temp = path.with_suffix(path.suffix + ".tmp")
    temp.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
    temp.replace(path)


def find_unfinished_run(results_dir: Path, fingerprint: str) -> Path | None:
    """The latest run of the same matrix that did not finish, to resume automatically."""
    if not results_dir.is_dir():
        return None
    for run_dir in sorted(results_dir.iterdir(), reverse=True):
        info_path = run_dir / RUN_FILE
        if not info_path.is_file():
            continue
        try:
            info = read_json(info_path)
        except (OSError, ValueError):
            continue
        if info.get("fingerprint") == fingerprint and info.get("status") != "complete":
            return run_dir
    return None


def prepare_run_dir(
    matrix: MatrixFile,
    matrix_path: Path,
    settings: MatrixSettings,
    resume: Path | None,
    fresh: bool,
    matrix_text: str | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Picks the run directory: --resume, else the latest unfinished run of this matrix, else a
    new results/<timestamp>/. A new one keeps the matrix as run: `matrix_text` when given (the
    file with the command line's target block), else a copy of the file."""
    fingerprint = matrix.fingerprint()
    if resume is not None:
        info_path = resume / RUN_FILE
        if not info_path.is_file():
            raise MatrixRunError(f"--resume {resume}: no {RUN_FILE} there, not a matrix run")
        info = read_json(info_path)
        if info.get("fingerprint") != fingerprint:
            raise MatrixRunError(
                f"--resume {resume}: that run measured a different matrix "
                f"(fingerprint {info.get('fingerprint')} != {fingerprint})"
            )
        return resume, info
    if not fresh:
        found = find_unfinished_run(settings.results_dir, fingerprint)
        if found is not None:
            return found, read_json(found / RUN_FILE)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    run_dir = settings.results_dir / stamp
    suffix = 1
    while run_dir.exists():
        run_dir = settings.results_dir / f"{stamp}-{suffix}"
        suffix += 1
    (run_dir / CELLS_DIR).mkdir(parents=True)
    if matrix_text is not None:
        (run_dir / "matrix.yaml").write_text(matrix_text, encoding="utf-8")
    else:
        shutil.copyfile(matrix_path, run_dir / "matrix.yaml")
    info = {
        "fingerprint": fingerprint,
        "matrix_file": str(matrix_path),
        "status": "running",
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "stack": settings.stack_name,
        "host_cores": os.cpu_count(),
    }
    write_json(run_dir / RUN_FILE, info)
    return run_dir, info
