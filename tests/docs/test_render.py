"""The READMEs' rendered figures against the committed reports they come from (docs/render.py)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from docs.figures import BLOCKS
from docs.render import RenderError, readmes, render_text, stale

# Copies of the reports of 2026-11-26 (report.md and summary.csv), so that the assertions on
# exact figures below keep holding when a newer run replaces docs/quick-run or docs/workshop-run.
FIXTURES = Path(__file__).parent / "fixtures"


def _blank(names: list[str]) -> str:
    return "".join(f"<!-- rendered: {name} -->\n<!-- /rendered -->\n\n" for name in names)


def _render(tmp_path: Path, names: list[str], readme: str = "README.md") -> str:
    return render_text(_blank(names), tmp_path / readme, FIXTURES)


def _copy_fixtures(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    shutil.copytree(FIXTURES, docs)
    return docs


def test_every_readme_agrees_with_its_reports() -> None:
    assert stale(readmes()) == [], "run scripts/render_docs.sh and commit the READMEs"


def test_every_block_is_used_in_some_readme() -> None:
    text = "".join(path.read_text(encoding="utf-8") for path in readmes())
    unused = [name for name in BLOCKS if f"<!-- rendered: {name} -->" not in text]
    assert unused == []


def test_a_figure_typed_over_in_a_readme_is_found(tmp_path: Path) -> None:
    rendered = _render(tmp_path, ["quick-run-table"])
    assert (
        "| r1-c0.1-m256M | 1 x 0.1 | 637 (484-790) | 239 ms / 0.5 ms | 100 % | 0 / 0 |" in rendered
    )
    tampered = rendered.replace("637 (484-790)", "700 (484-790)")
    assert render_text(tampered, tmp_path / "README.md", FIXTURES) == rendered != tampered


def test_a_changed_report_changes_the_rendered_figures(tmp_path: Path) -> None:
    docs = _copy_fixtures(tmp_path)
    summary = docs / "quick-run" / "summary.csv"
    with summary.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows[1]["knee_rps_median"] = "512.3"
    rows[1]["api_mem_peak_mb"] = "99.4"
    with summary.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    text = render_text(
        _blank(["quick-run-table", "quick-run-memory"]), tmp_path / "README.md", docs
    )
    assert "| r1-c0.1-m256M | 1 x 0.1 | 512 (484-790) |" in text
    assert "peaked at 77-99 MB" in text


def test_links_are_relative_to_the_readme(tmp_path: Path) -> None:
    docs = _copy_fixtures(tmp_path)
    text = render_text(_blank(["workshop-run-intro"]), tmp_path / "part" / "README.md", docs)
    assert "[docs/workshop-run/report.md](../docs/workshop-run/report.md)" in text


def test_the_method_and_recommendation_come_from_the_report(tmp_path: Path) -> None:
    text = _render(tmp_path, ["quick-run-method", "quick-run-recommendation"])
    assert "run started 2026-11-26 08:41 UTC, on a 2-core machine" in text
    assert "(3 s each), from 100 req/s, x2 per step" in text
    assert "within 5 %. " in text and "Target load: 400 req/s." in text
    assert "**1 replica(s) x 0.1 CPU x 256M**" in text
    assert "**no measurable difference**" in text


def test_where_the_time_goes_names_the_limit(tmp_path: Path) -> None:
    text = _render(tmp_path, ["quick-run-where-time-goes"])
    assert "(163-239 ms, lowest trials)" in text
    assert "replicas' own (0.5-0.9 ms" in text
    assert "at most 22 % of its cores and the host at most 40 %" in text
    assert "more than 0.75 % of its requests late: the cells, not Locust, were the limit" in text


def test_the_worked_example_follows_the_search(tmp_path: Path) -> None:
    text = _render(tmp_path, ["quick-run-worked-example"])
    # The recommended cell's lowest trial: 800 failed, bisection found 488 passing, 500 failing.
    assert "cell `r1-c0.1-m256M`" in text and "its lowest trial (1)" in text
    assert "The rate grew until 800 req/s failed" in text
    assert "450, 475, 488 passed, 600, 500 failed" in text
    assert "500 is within 5 % of 488" in text
    assert "**484 req/s served**" in text
    assert "from 400 req/s on the replicas used their whole 0.1 CPU quota" in text


def test_the_workshop_table_names_failure_kinds(tmp_path: Path) -> None:
    text = _render(tmp_path, ["workshop-table"])
    assert "62.8 % refused with 503 (p95 411 ms)" in text
    assert "0.6 % timeouts, 0.1 % connection errors, 32.6 % other (HTTP 502, HTTP 504)" in text
    assert "| 2 x 0.15 CPU, 256M |" in text and "2732; 15827; no failures" in text


def test_the_workshop_load_counts_answers_and_busy_rows(tmp_path: Path) -> None:
    text = _render(tmp_path, ["workshop-generator-load"])
    assert "took 45-51 % of their cores with admission on" in text
    assert "3 600-5 600 answers a second" in text
    assert "2 of the 4 rows with admission on were flagged busy" in text


def test_an_unknown_block_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="unknown block 'no-such-block'"):
        render_text(_blank(["no-such-block"]), tmp_path / "README.md")


def test_an_unclosed_block_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="closes"):
        render_text("<!-- rendered: quick-run-table -->\nold\n", tmp_path / "README.md")
