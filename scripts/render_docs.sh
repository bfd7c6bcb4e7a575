#!/usr/bin/env bash
# Renders the READMEs' figures from the committed reports under docs/ (docs/render.py): every
# block between '<!-- rendered: NAME -->' and '<!-- /rendered -->' is written anew from the data.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() {
  cat <<USAGE
Usage: scripts/render_docs.sh [--check]

Rewrites the rendered blocks of README.md and each part's README.md from docs/quick-run and
docs/workshop-run (report.md, summary.csv). Run it after committing a new report.

  --check     change nothing; exit 1 and name the READMEs that disagree with their reports
  -h, --help  show this help
USAGE
}

check=()
while [ "$#" -gt 0 ]; do
  case "$1" in
    --check) check=(--check) ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
  shift
done

cd "$PROJECT_ROOT"
ensure_venv
exec "$VENV_PYTHON" -m docs.render "${check[@]}"
