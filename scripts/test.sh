#!/usr/bin/env bash
# Runs the whole test suite: lint, unit tests, integration tests on loopback, then Swarm tests.
# Installs what it needs first: .venv with pinned requirements, trained models, Debian's nginx and
# chromium (the offline /docs test), and (as root) the Docker engine with a single-node Swarm.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=scripts/lib/docker.sh
source "$PROJECT_ROOT/scripts/lib/docker.sh"

usage() {
  cat <<USAGE
Usage: scripts/test.sh [--no-swarm] [--unit-only] [-- PYTEST_ARGS...]

Runs ruff, shellcheck and pytest over tests/ (unit, then integration, then Swarm tests).

  --no-swarm    do not install or start Docker; the Swarm tests are skipped (fail when CI=true)
  --unit-only   run only the fast unit tests (no real processes, no Docker)
  -h, --help    show this help

Anything after -- goes to pytest, e.g. scripts/test.sh -- -k predict -x
USAGE
}

with_docker=1
pytest_args=()
while [ "$#" -gt 0 ]; do
  case "$1" in
    --no-swarm) with_docker=0 ;;
    --unit-only) with_docker=0; pytest_args+=(-m "not integration and not swarm") ;;
    -h|--help) usage; exit 0 ;;
    --) shift; pytest_args+=("$@"); break ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
  shift
done

cd "$PROJECT_ROOT"
ensure_venv

# Tools the integration tests drive for real. Without root they may be missing: those tests skip.
if is_root || command -v sudo >/dev/null 2>&1; then
  apt_install nginx shellcheck chromium
  if [ "$with_docker" -eq 1 ]; then
    ensure_docker_engine
    ensure_swarm
  fi
else
  log "not root: nginx, shellcheck, chromium and Docker are used only if already installed"
fi

ensure_models

log "ruff"
"$VENV_DIR/bin/ruff" check .
log "mypy"
"$VENV_DIR/bin/mypy" --strict service
if command -v shellcheck >/dev/null 2>&1; then
  log "shellcheck"
  shellcheck -x scripts/*.sh scripts/lib/*.sh
fi

log "pytest"
status=0
"$VENV_PYTHON" -m pytest "${pytest_args[@]}" || status=$?
# Exit code 5 means no test was collected, which must not pass as green.
[ "$status" -eq 5 ] && die "pytest collected no tests"
exit "$status"
