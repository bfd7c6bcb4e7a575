#!/usr/bin/env bash
# Compares two finished matrix runs cell by cell (python -m matrix.report.compare): whether
# their knees agree, and when not, whether the cost of one answer moved with them.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() {
  cat <<USAGE
Usage: scripts/compare_runs.sh RUN_A RUN_B

Prints, as Markdown, each cell both runs measured: the two knees with their 95 % intervals,
B's knee over A's with its interval, whether each run's median lies inside the other's
interval, the CPU used at the knees and what one answer cost there, and the host speed index
of each run (matrix/README.md, "Two runs that disagree"). Reads only the run directories
(results/<timestamp>); needs no Docker.

  -h, --help  show this help
USAGE
}

runs=()
while [ "$#" -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option: $1" ;;
    *) runs+=("$1") ;;
  esac
  shift
done
[ "${#runs[@]}" -eq 2 ] || { usage >&2; die "give two run directories, not ${#runs[@]}"; }

# No cd: the run directories are read as given, relative to where the user stands (the
# project's packages are installed in the virtualenv, so they import from anywhere).
ensure_venv
exec "$VENV_PYTHON" -m matrix.report.compare "${runs[@]}"
