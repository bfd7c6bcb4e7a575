#!/usr/bin/env bash
# Runs the penguin API in the foreground on loopback with Gunicorn + Uvicorn workers, exactly as
# the container does (same config file), after installing what it needs (venv, trained models).
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() {
  cat <<USAGE
Usage: scripts/serve.sh [--port N] [--workers N] [--host ADDR]

Serves the API (service/app.py) with Gunicorn in the foreground until Ctrl-C.

  --port N      port to listen on (default 8000, or PENGUIN_BIND's)
  --workers N   Gunicorn workers (default: from the cgroup CPU quota, see service/cpu.py)
  --host ADDR   address to bind (default 127.0.0.1: loopback only)
  -h, --help    show this help

Every other knob is a PENGUIN_* environment variable (see service/README.md), e.g.
  PENGUIN_DEFAULT_MODEL=rf PENGUIN_ACCESS_LOG=true scripts/serve.sh --port 8080
USAGE
}

host="127.0.0.1"
port="8000"
workers=""
while [ "$#" -gt 0 ]; do
  case "$1" in
    --port) [ "$#" -ge 2 ] || die "--port needs a value"; port="$2"; shift ;;
    --port=*) port="${1#*=}" ;;
    --workers) [ "$#" -ge 2 ] || die "--workers needs a value"; workers="$2"; shift ;;
    --workers=*) workers="${1#*=}" ;;
    --host) [ "$#" -ge 2 ] || die "--host needs a value"; host="$2"; shift ;;
    --host=*) host="${1#*=}" ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
  shift
done

if ! [[ "$port" =~ ^[0-9]{1,5}$ ]] || [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
  die "--port must be 1-65535, got '$port'"
fi
if [ -n "$workers" ]; then
  if ! [[ "$workers" =~ ^[0-9]{1,3}$ ]] || [ "$workers" -lt 1 ]; then
    die "--workers must be a positive integer, got '$workers'"
  fi
  export PENGUIN_WORKERS="$workers"
fi
export PENGUIN_BIND="$host:$port"

cd "$PROJECT_ROOT"
ensure_venv
ensure_models

log "serving on http://$PENGUIN_BIND (docs: http://$PENGUIN_BIND/docs)"
# exec: Gunicorn's master gets the signals directly, so Ctrl-C / SIGTERM shut down gracefully
# and nothing is left to clean up here.
exec "$VENV_DIR/bin/gunicorn" -c service/gunicorn_conf.py service.app:app
