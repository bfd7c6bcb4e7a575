#!/usr/bin/env bash
# Swarm stack helpers for stack_up.sh / stack_down.sh. Source after common.sh; do not run it.

# validate_stack_name NAME: Docker accepts letters, digits, '-', '_' and '.'; fail early and clearly.
validate_stack_name() {
  [[ "$1" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || die "invalid stack name '$1' (letters, digits, - _ .)"
}

# stackctl COMMAND ARGS...: the waits for convergence and readiness and the memory-size parsing,
# written once in Python (matrix/stackctl.py) and shared with the matrix. Needs ensure_venv first.
stackctl() {
  (cd "$PROJECT_ROOT" && "$VENV_PYTHON" -m matrix.stackctl "$@")
}

# wait_for_stack_removed STACK TIMEOUT: waits until the stack's containers and networks are gone.
wait_for_stack_removed() {
  local stack="$1" timeout_s="$2" start containers networks
  start=$SECONDS
  while :; do
    containers="$(docker ps --all --quiet --filter "label=com.docker.stack.namespace=$stack" | wc -l)"
    networks="$(docker network ls --quiet --filter "label=com.docker.stack.namespace=$stack" | wc -l)"
    if [ "$containers" -eq 0 ] && [ "$networks" -eq 0 ]; then
      return 0
    fi
    [ $((SECONDS - start)) -lt "$timeout_s" ] \
      || die "stack $stack still has $containers containers and $networks networks after ${timeout_s}s"
    log "waiting for stack $stack to go ($((SECONDS - start))s): $containers containers, $networks networks left"
    sleep 2
  done
}
