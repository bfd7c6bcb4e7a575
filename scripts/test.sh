#!/usr/bin/env bash
# Runs the whole test suite: lint, unit tests, integration tests on loopback, Swarm tests, then
# the multi-node cluster tests (engines in network namespaces, as root).
# Installs what it needs first: .venv with pinned requirements, trained models, Debian's nginx and
# chromium (the offline /docs test; their services are neither started nor enabled), and (as root)
# the Docker engine with a single-node Swarm on loopback. scripts/uninstall.sh undoes it.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=scripts/lib/docker.sh
source "$PROJECT_ROOT/scripts/lib/docker.sh"

usage() {
  cat <<USAGE
Usage: scripts/test.sh [--no-swarm] [--unit-only] [-- PYTEST_ARGS...]

Runs ruff, mypy (strict, on the parts pyproject.toml lists), shellcheck, then pytest over
tests/: unit, then integration, then Swarm tests, then the multi-node cluster tests.

  --no-swarm    do not install or start Docker, and leave out the Swarm and cluster tests (even
                where a Swarm is already running: they would deploy on it)
  --unit-only   run only the fast unit tests (no real processes, no Docker)
  -h, --help    show this help

Anything after -- goes to pytest, e.g. scripts/test.sh -- -k predict -x
USAGE
}

with_docker=1
markers=""
pytest_args=()
while [ "$#" -gt 0 ]; do
  case "$1" in
    --no-swarm) with_docker=0; markers="${markers:-not swarm and not cluster}" ;;
    --unit-only) with_docker=0; markers="not integration and not swarm and not cluster" ;;
    -h|--help) usage; exit 0 ;;
    --) shift; pytest_args+=("$@"); break ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
  shift
done
check_network_access

cd "$PROJECT_ROOT"
ensure_venv

# Tools the integration tests drive for real. Without root they may be missing: those tests skip.
if is_root || command -v sudo >/dev/null 2>&1; then
  # gettext-base: envsubst, with which nginx/entrypoint.sh renders its template; chromium: the
  # offline /docs test; prometheus and its Nginx exporter: the loopback scrape test.
  apt_install nginx shellcheck gettext-base chromium prometheus prometheus-nginx-exporter
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
"$VENV_DIR/bin/ruff" format --check .
log "mypy"
"$VENV_PYTHON" -m mypy
if command -v shellcheck >/dev/null 2>&1; then
  log "shellcheck"
  shellcheck -x scripts/*.sh scripts/lib/*.sh nginx/*.sh prometheus/*.sh
fi

log "pytest"
status=0
# A marker expression after -- comes later on the command line, and pytest keeps the last one.
[ -n "$markers" ] && pytest_args=(-m "$markers" "${pytest_args[@]}")
"$VENV_PYTHON" -m pytest "${pytest_args[@]}" || status=$?
# Exit code 5 means no test was collected, which must not pass as green.
[ "$status" -eq 5 ] && die "pytest collected no tests"
exit "$status"
