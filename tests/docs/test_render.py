"""The READMEs' rendered figures against the committed reports they come from (docs/render.py)."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from docs.figures import BLOCKS
from docs.render import RenderError, readmes, render_text, stale

# Copies of the reports of 2026-11-26 and 2026-12-05 (report.md and summary.csv), so that the
# assertions on exact figures below keep holding when a newer run replaces docs/quick-run,
# docs/workshop-run or docs/example-run.
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


def _edit_summary(docs: Path, edit: Callable[[list[dict[str, str]]], None]) -> None:
    """Rewrites the quick run's summary.csv after `edit` changed its rows."""
    summary = docs / "quick-run" / "summary.csv"
    with summary.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    edit(rows)
    with summary.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_a_changed_report_changes_the_rendered_figures(tmp_path: Path) -> None:
    docs = _copy_fixtures(tmp_path)

    def edit(rows: list[dict[str, str]]) -> None:
        rows[1]["knee_rps_median"] = "512.3"
        rows[1]["api_mem_peak_mb"] = "99.4"

    _edit_summary(docs, edit)
    text = render_text(
        _blank(["quick-run-table", "quick-run-memory"]), tmp_path / "README.md", docs
    )
    assert "| r1-c0.1-m256M | 1 x 0.1 | 512 (484-790) |" in text
    assert "peaked at 77-99 MB" in text


def test_links_are_relative_to_the_readme(tmp_path: Path) -> None:
    docs = _copy_fixtures(tmp_path)
    text = render_text(_blank(["workshop-run-intro"]), tmp_path / "part" / "README.md", docs)
    assert "[docs/workshop-run/report.md](../docs/workshop-run/report.md)" in text


# Per block, what it must say from the fixture reports: the figures and the conclusions drawn
# from them.
EXPECTED = {
    "quick-run-method": [
        "run started 2026-11-26 08:41 UTC, on a 2-core machine",
        "(3 s each), from 100 req/s, x2 per step",
        "within 5 %. ",
        "Target load: 400 req/s.",
    ],
    "quick-run-recommendation": [
        "**1 replica(s) x 0.1 CPU x 256M**",
        "**no measurable difference**",
    ],
    "quick-run-where-time-goes": [
        "(163-239 ms, lowest trials)",
        "replicas' own (0.5-0.9 ms",
        "at most 22 % of its cores and the host at most 40 %",
        "more than 0.75 % of its requests late: the cells, not Locust, were the limit",
    ],
    # The recommended cell's first trial: 800 failed, bisection found 488 passing, 500 failing.
    "quick-run-worked-example": [
        "cell `r1-c0.1-m256M`",
        "its first trial (a full search from the file's start rate)",
        "The rate grew until 800 req/s failed",
        "then bisected: 450, 475, 488 passed, 600, 500 failed; 500 is within 5 % of 488",
        "**484 req/s served**",
        "from 400 req/s on the replicas used their whole 0.1 CPU quota",
    ],
    "quick-run-example-plot": ["/quick-run/plots/steps-r1-c0.1-m256M.png)"],
    "workshop-table": [
        "62.8 % refused with 503 (p95 411 ms)",
        "0.6 % timeouts, 0.1 % connection errors, 32.6 % other (HTTP 502, HTTP 504)",
        "| 2 x 0.15 CPU, 256M |",
        "2732; 15827; no failures",
    ],
    # The worked example's run of 2026-12-05 beside the quick run, per 0.1 CPU.
    "example-side-by-side": [
        "run started 2026-12-05 19:59 UTC, on a 2-core machine",
        "| the tutorial's (FastAPI + scikit-learn) | r1-c0.25-m512M | 1 x 0.25 "
        "| 58 (54-62, 2 trials) | **23** | - | 223 ms |",
        "| ours (own ASGI layer, C evaluators) | r1-c0.1-m256M | 1 x 0.1 | 637 (484-790, 2 trials) "
        "| **637** | - | 239 ms |",
        "the tutorial's service served 21-23 req/s and ours 552-747",
        "even ours' lowest cell served 24 times the tutorial's highest per CPU.",
    ],
    "workshop-generator-load": [
        "took 45-51 % of their cores with admission on",
        "3 600-5 600 answers a second",
        "2 of the 4 rows with admission on were flagged busy",
    ],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_block_says_what_its_report_holds(tmp_path: Path, name: str) -> None:
    text = _render(tmp_path, [name])
    missing = [expected for expected in EXPECTED[name] if expected not in text]
    assert missing == [], text


def test_an_unknown_block_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="unknown block 'no-such-block'"):
        render_text(_blank(["no-such-block"]), tmp_path / "README.md")


def test_an_unclosed_block_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="closes"):
        render_text("<!-- rendered: quick-run-table -->\nold\n", tmp_path / "README.md")


def test_a_summary_with_intervals_renders_them(tmp_path: Path) -> None:
    docs = _copy_fixtures(tmp_path)

    def edit(rows: list[dict[str, str]]) -> None:
        for row, (low, high) in zip(rows, [(250, 300), (600, 680), (700, 790)], strict=True):
            row.update(knee_rps_ci_low=str(low), knee_rps_ci_high=str(high))
        rows[1]["trials"] = "4"

    _edit_summary(docs, edit)
    text = render_text(
        _blank(["quick-run-table", "quick-run-worked-example"]), tmp_path / "README.md", docs
    )
    assert "median (95 % interval of 2-4 trials)" in text
    assert "| r1-c0.1-m256M | 1 x 0.1 | 637 (600-680) |" in text
    assert "**637 req/s (600-680)** (median and 95 % interval)" in text
