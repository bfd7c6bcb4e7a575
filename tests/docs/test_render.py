"""The READMEs' rendered figures against the committed reports they come from (docs/render.py)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from docs.figures import BLOCKS
from docs.render import DOCS_DIR, REPO_ROOT, RenderError, readmes, render_text, stale

RUNS = sorted({block.run for block in BLOCKS.values()})


def _blank(names: list[str]) -> str:
    return "".join(f"<!-- rendered: {name} -->\n<!-- /rendered -->\n\n" for name in names)


def _copy_reports(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    for run in RUNS:
        shutil.copytree(DOCS_DIR / run, docs / run, ignore=shutil.ignore_patterns("*.png"))
    return docs


def test_every_readme_agrees_with_its_reports() -> None:
    assert stale(readmes()) == [], "run scripts/render_docs.sh and commit the READMEs"


def test_every_block_is_used_in_some_readme() -> None:
    text = "".join(path.read_text(encoding="utf-8") for path in readmes())
    unused = [name for name in BLOCKS if f"<!-- rendered: {name} -->" not in text]
    assert unused == []


def test_a_figure_typed_over_in_a_readme_is_found() -> None:
    readme = REPO_ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    rendered = render_text(text, readme)
    assert "| r1-c0.1-m256M | 1 x 0.1 | 637 (484-790) |" in rendered
    tampered = rendered.replace("637 (484-790)", "700 (484-790)")
    assert render_text(tampered, readme) == rendered


def test_a_changed_report_changes_the_rendered_figures(tmp_path: Path) -> None:
    docs = _copy_reports(tmp_path)
    summary = docs / "quick-run" / "summary.csv"
    with summary.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows[1]["knee_rps_median"] = "512.3"
    rows[1]["api_mem_peak_mb"] = "99.4"
    with summary.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    readme = tmp_path / "README.md"
    text = render_text(_blank(["quick-run-table", "quick-run-memory"]), readme, docs)
    assert "| r1-c0.1-m256M | 1 x 0.1 | 512 (484-790) |" in text
    assert "peaked at 77-99 MB" in text


def test_links_are_relative_to_the_readme(tmp_path: Path) -> None:
    docs = _copy_reports(tmp_path)
    nested = tmp_path / "part" / "README.md"
    text = render_text(_blank(["workshop-run-intro"]), nested, docs)
    assert "[docs/workshop-run/report.md](../docs/workshop-run/report.md)" in text


def test_the_worked_example_follows_the_search(tmp_path: Path) -> None:
    text = render_text(
        _blank(["quick-run-worked-example"]), tmp_path / "README.md", _copy_reports(tmp_path)
    )
    # The recommended cell's lowest trial: 800 failed, bisection found 488 passing, 500 failing.
    assert "cell `r1-c0.1-m256M`" in text
    assert "The rate grew until 800 req/s failed" in text
    assert "500 is within 5 % of 488" in text
    assert "**484 req/s served**" in text


def test_the_workshop_table_names_failure_kinds(tmp_path: Path) -> None:
    text = render_text(_blank(["workshop-table"]), tmp_path / "README.md", _copy_reports(tmp_path))
    assert "62.8 % refused with 503 (p95 411 ms)" in text
    assert "32.6 % other (HTTP 502, HTTP 504)" in text
    assert "| 2 x 0.15 CPU, 256M |" in text and "2732; 15827; no failures" in text


def test_an_unknown_block_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="unknown block 'no-such-block'"):
        render_text(_blank(["no-such-block"]), tmp_path / "README.md")


def test_an_unclosed_block_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="closes"):
        render_text("<!-- rendered: quick-run-table -->\nold\n", tmp_path / "README.md")
