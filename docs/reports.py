"""Reads a committed report folder (report.md and summary.csv, as matrix/report writes them).

The cell records behind a report are not committed, so the figures come from the two files a
reader sees: summary.csv for each cell's totals, report.md's tables for steps and server-side
figures, and its header lines for how the run was set up.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

REPORT_FILE = "report.md"
SUMMARY_FILE = "summary.csv"
KNEE_MARK = "(knee)"


class ReportError(ValueError):
    """The report does not hold what a README block needs (names the file and the fact)."""


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]

    def records(self) -> list[dict[str, str]]:
        return [dict(zip(self.header, row, strict=True)) for row in self.rows]


@dataclass
class Section:
    """A heading of report.md with the lines up to the next heading of any level."""

    level: int
    title: str
    lines: list[str] = field(default_factory=list)

    def tables(self) -> list[Table]:
        return _tables(self.lines)

    def paragraphs(self) -> list[str]:
        """Blocks of text separated by blank lines, tables and images left out."""
        blocks: list[str] = []
        current: list[str] = []
        for line in [*self.lines, ""]:
            if line.strip() and not line.startswith(("|", "![")):
                current.append(line.strip())
            elif current:
                blocks.append(" ".join(current))
                current = []
        return blocks


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _tables(lines: list[str]) -> list[Table]:
    tables: list[Table] = []
    block: list[str] = []
    for line in [*lines, ""]:
        if line.startswith("|"):
            block.append(line)
            continue
        if len(block) >= 2:
            tables.append(Table(_cells(block[0]), [_cells(row) for row in block[2:]]))
        block = []
    return tables


@dataclass
class Report:
    """One committed run: its folder, report.md split into sections, summary.csv's rows."""

    folder: Path
    sections: list[Section]
    summary: list[dict[str, str]]

    def fail(self, what: str) -> ReportError:
        return ReportError(f"{self.folder / REPORT_FILE}: {what}")

    def section(self, title: str) -> Section:
        for section in self.sections:
            if section.title == title:
                return section
        raise self.fail(f"no section titled {title!r}")

    def header_search(self, pattern: str) -> re.Match[str] | None:
        """The first match of `pattern` in the lines before the first '##' section, if any."""
        return re.search(pattern, " ".join(self.sections[0].lines))

    def header_match(self, pattern: str) -> re.Match[str]:
        """The first match of `pattern` in the lines before the first '##' section."""
        match = self.header_search(pattern)
        if match is None:
            raise self.fail(f"the header has nothing like {pattern!r}")
        return match

    def summary_row(self, cell: str) -> dict[str, str]:
        for row in self.summary:
            if row["cell"] == cell:
                return row
        raise ReportError(f"{self.folder / SUMMARY_FILE}: no cell {cell!r}")

    def trial_steps(self, cell: str) -> list[list[dict[str, str]]]:
        """Per trial, in order, the rows of the cell's step table."""
        return [table.records() for table in self.section(cell).tables()]

    def server_side(self, cell: str) -> list[list[dict[str, str]]]:
        """Per trial, the rows of the cell's server-side table."""
        return [table.records() for table in self.section(f"{cell}: server side").tables()]


def load_report(folder: Path) -> Report:
    lines = (folder / REPORT_FILE).read_text(encoding="utf-8").splitlines()
    sections: list[Section] = []
    for line in lines:
        heading = re.match(r"(#{1,6}) (.*)", line)
        if heading:
            sections.append(Section(len(heading.group(1)), heading.group(2).strip()))
        elif sections:
            sections[-1].lines.append(line)
    if not sections:
        raise ReportError(f"{folder / REPORT_FILE}: no heading")
    with (folder / SUMMARY_FILE).open(encoding="utf-8", newline="") as handle:
        summary = list(csv.DictReader(handle))
    return Report(folder, sections, summary)


def number(text: str) -> float:
    """A figure as the report prints it ('1928', '62.8 %', '0.437'); '-' is refused."""
    match = re.match(r"-?[0-9.]+", text.strip())
    if match is None:
        raise ReportError(f"not a number: {text!r}")
    return float(match.group(0))
