#!/usr/bin/env bash
# Removes the capacity lab stack and waits until its containers and network are gone.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=scripts/lib/docker.sh
source "$PROJECT_ROOT/scripts/lib/docker.sh"
# shellcheck source=scripts/lib/stack.sh
source "$PROJECT_ROOT/scripts/lib/stack.sh"

usage() {
  cat <<USAGE
Usage: scripts/stack_down.sh [--stack-name NAME] [--timeout SECONDS]

Removes the stack (services, network, configs) and waits until its containers and networks are
gone, so a following deploy or test starts clean. Idempotent: a missing stack is not an error.

  --stack-name NAME   stack name (default: \$STACK_NAME or penguins)
  --timeout SECONDS   how long to wait for the removal (default: 120)
  -h, --help          show this help
USAGE
}

STACK_NAME="${STACK_NAME:-penguins}"
timeout_s=120
while [ "$#" -gt 0 ]; do
  case "$1" in
    --stack-name) [ "$#" -ge 2 ] || die "--stack-name needs a value"; STACK_NAME="$2"; shift ;;
    --timeout) [ "$#" -ge 2 ] || die "--timeout needs a value"; timeout_s="$2"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
  shift
done
[[ "$timeout_s" =~ ^[0-9]+$ ]] || die "--timeout takes whole seconds, not '$timeout_s'"
validate_stack_name "$STACK_NAME"
docker info >/dev/null 2>&1 || die "the Docker engine is not running; nothing to remove"

if docker stack ls --format '{{.Name}}' | grep -qxF "$STACK_NAME"; then
  log "removing stack $STACK_NAME"
  docker stack rm "$STACK_NAME" >/dev/null
else
  log "stack $STACK_NAME is not deployed"
fi
wait_for_stack_removed "$STACK_NAME" "$timeout_s"
# The stack's firewall rules (stack_up.sh, LAB_NETWORK_ACCESS=local) go with it.
if engine_is_local; then
  unpublish_ports "$STACK_NAME"
fi
log "stack $STACK_NAME is gone"
