#!/usr/bin/env bash
# Swarm stack helpers for stack_up.sh / stack_down.sh. Source after common.sh; do not run it.

# validate_stack_name NAME: Docker accepts letters, digits, '-', '_' and '.'; fail early and clearly.
validate_stack_name() {
  [[ "$1" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || die "invalid stack name '$1' (letters, digits, - _ .)"
}

# http_ok URL: true when URL answers 2xx within 3 s (system python3: curl may be missing).
http_ok() {
  python3 - "$1" <<'PY' >/dev/null 2>&1
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=3) as response:
    sys.exit(0 if 200 <= response.status < 300 else 1)
PY
}

# stack_status STACK: one "service running/desired update-state" line per service; all services
# converged when running == desired and no update or rollback is in progress.
stack_status() {
  local name
  for name in $(docker stack services "$1" --format '{{.Name}}' 2>/dev/null); do
    printf '%s %s %s\n' "${name#"$1"_}" \
      "$(docker service ls --filter "name=$name" --format '{{.Name}} {{.Replicas}}' | awk -v n="$name" '$1 == n {print $2}')" \
      "$(docker service inspect --format '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{else}}-{{end}}' "$name" 2>/dev/null)"
  done
}

# wait_for_stack_converged STACK TIMEOUT: waits until every service runs all its replicas.
wait_for_stack_converged() {
  local stack="$1" timeout_s="$2" start status pending
  start=$SECONDS
  while :; do
    status="$(stack_status "$stack")"
    [ -n "$status" ] || die "stack $stack has no services (was it deployed?)"
    # Converged: running equals desired (e.g. 2/2, not 1/2 or 2/2 (max 1 per node)) and no update
    # or rollback still in flight.
    pending="$(awk '{split($2, r, "/"); sub(/ .*/, "", r[2]); if (r[1] != r[2] || $3 == "updating" || $3 == "rollback_started") print $1 " " $2 " " $3}' <<<"$status")"
    if [ -z "$pending" ]; then
      log "stack $stack converged: $(awk '{printf "%s %s  ", $1, $2}' <<<"$status")"
      return 0
    fi
    if [ $((SECONDS - start)) -ge "$timeout_s" ]; then
      log "stack $stack did not converge within ${timeout_s}s; tasks that are not running:"
      docker stack ps "$stack" --no-trunc --filter desired-state=running \
        --format '  {{.Name}} {{.CurrentState}} {{.Error}}' >&2 || true
      die "timed out waiting for stack $stack (still pending: $(tr '\n' ';' <<<"$pending"))"
    fi
    log "waiting for stack $stack ($((SECONDS - start))s): $(tr '\n' ';' <<<"$pending")"
    sleep 3
  done
}

# nginx_upstream_count STACK: how many api servers the local Nginx task balances over ("" when
# the Nginx task runs on another node).
nginx_upstream_count() {
  local container
  container="$(docker ps --quiet --filter "label=com.docker.swarm.service.name=$1_nginx" | head -n 1)"
  [ -n "$container" ] || return 0
  docker exec "$container" sh -c 'grep -c "max_fails" /run/penguin-nginx/upstream-servers.conf || true' 2>/dev/null || true
}

# wait_for_nginx_ready STACK URL TIMEOUT: waits until URL (/ready through Nginx) answers 2xx and
# the local Nginx balances over every api replica.
wait_for_nginx_ready() {
  local stack="$1" url="$2" timeout_s="$3" start want seen
  start=$SECONDS
  want="$(docker service inspect --format '{{.Spec.Mode.Replicated.Replicas}}' "${stack}_api")"
  while :; do
    seen="$(nginx_upstream_count "$stack")"
    if http_ok "$url" && { [ -z "$seen" ] || [ "$seen" -ge "$want" ]; }; then
      log "$url answers through Nginx (${seen:-?}/$want api replicas in its upstream)"
      return 0
    fi
    [ $((SECONDS - start)) -lt "$timeout_s" ] \
      || die "timed out after ${timeout_s}s waiting for $url (Nginx sees ${seen:-?}/$want api replicas); see: docker service logs ${stack}_nginx"
    log "waiting for $url ($((SECONDS - start))s, Nginx sees ${seen:-?}/$want api replicas)"
    sleep 2
  done
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
