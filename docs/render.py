"""Renders the READMEs' figures from the committed reports, between marker comments:

    <!-- rendered: quick-run-table -->
    ...whatever docs/figures.py renders for that block...
    <!-- /rendered -->

`python -m docs.render` rewrites every README that has such blocks; `--check` only says which
are stale (exit 1), and tests/docs runs the same comparison, so a README cannot disagree with
the data it quotes.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from docs.figures import BLOCKS
from docs.reports import Report, ReportError, load_report

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCS_DIR = Path(__file__).resolve().parent
# The READMEs that may hold rendered blocks: the project's and each part's.
README_GLOBS = ("README.md", "*/README.md")
BLOCK = re.compile(
    r"(?P<open><!-- rendered: (?P<name>[a-z0-9-]+) -->\n)(?P<body>.*?)"
    r"(?P<close><!-- /rendered -->)",
    re.DOTALL,
)


class RenderError(ValueError):
    """A README names a block that does not exist, or a marker is left open."""


def readmes(root: Path = REPO_ROOT) -> list[Path]:
    return sorted(path for pattern in README_GLOBS for path in root.glob(pattern))


def render_text(text: str, readme: Path, docs_dir: Path = DOCS_DIR) -> str:
    """`text` (the README at `readme`) with every block's body rendered anew."""
    reports: dict[str, Report] = {}

    def body(match: re.Match[str]) -> str:
        name = match.group("name")
        block = BLOCKS.get(name)
        if block is None:
            raise RenderError(f"{readme}: unknown block {name!r} (known: {', '.join(BLOCKS)})")
        folder = docs_dir / block.run
        if block.run not in reports:
            reports[block.run] = load_report(folder)
        link = Path(os.path.relpath(folder, readme.parent)).as_posix()
        rendered = block.render(reports[block.run], link).rstrip("\n")
        return f"{match.group('open')}{rendered}\n{match.group('close')}"

    result = BLOCK.sub(body, text)
    opened = len(re.findall(r"<!-- rendered: ", text))
    closed = len(re.findall(r"<!-- /rendered -->", text))
    if opened != closed or opened != len(BLOCK.findall(text)):
        raise RenderError(f"{readme}: {opened} '<!-- rendered: NAME -->' against {closed} closes")
    return result


def stale(paths: list[Path], docs_dir: Path = DOCS_DIR) -> list[Path]:
    """The READMEs whose blocks differ from what their reports render now."""
    return [
        path
        for path in paths
        if render_text(path.read_text(encoding="utf-8"), path, docs_dir)
        != path.read_text(encoding="utf-8")
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m docs.render",
        description="Render the READMEs' figures from the committed reports under docs/.",
    )
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if a README is stale"
    )
    args = parser.parse_args(argv)
    try:
        paths = readmes()
        out_of_date = stale(paths)
        if args.check:
            for path in out_of_date:
                print(f"stale: {path.relative_to(REPO_ROOT)}", file=sys.stderr)
            return 1 if out_of_date else 0
        for path in out_of_date:
            path.write_text(render_text(path.read_text(encoding="utf-8"), path), "utf-8")
            print(f"rendered: {path.relative_to(REPO_ROOT)}")
    except (ReportError, RenderError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
