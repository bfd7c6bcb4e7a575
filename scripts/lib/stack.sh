#!/usr/bin/env bash
# Swarm stack helpers for stack_up.sh / stack_down.sh. Source after common.sh; do not run it.

# validate_stack_name NAME: Docker accepts letters, digits, '-', '_' and '.'; fail early and clearly.
validate_stack_name() {
  [[ "$1" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || die "invalid stack name '$1' (letters, digits, - _ .)"
}

# stackctl COMMAND ARGS...: the waits for convergence and readiness and the memory-size parsing,
# written once in Python (stack/ctl.py) and shared with the matrix. Needs ensure_venv first.
stackctl() {
  (cd "$PROJECT_ROOT" && "$VENV_PYTHON" -m stack.ctl "$@")
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

# ensure_ui_login_secrets STACK PROMETHEUS_IMAGE: the stack's UI login (stack/credentials.py,
# created and printed once on the first deploy) as two Swarm secrets: the password itself (Locust
# checks it, Prometheus scrapes Locust and itself with it) and Prometheus' web config with its
# bcrypt hash, made by htpasswd in the Prometheus image (no bcrypt tool needed on the host). The
# secrets are named after the login's fingerprint and reused while it stays the same. Exports
# LAB_UI_USER, UI_LOGIN_FILE, LAB_UI_PASSWORD_SECRET and PROMETHEUS_WEB_CONFIG_SECRET.
ensure_ui_login_secrets() {
  local stack="$1" image="$2" lines user password fingerprint created hash
  lines="$(stackctl ui-credentials "$stack")" || die "cannot read or create the UI login of $stack"
  { read -r user; read -r password; read -r fingerprint; read -r created; } <<<"$lines"
  export LAB_UI_USER="$user"
  UI_LOGIN_FILE="$(cd "$PROJECT_ROOT" && "$VENV_PYTHON" -c \
    'import sys; from stack.credentials import credentials_file; print(credentials_file(sys.argv[1]))' "$stack")"
  export UI_LOGIN_FILE
  export LAB_UI_PASSWORD_SECRET="${stack}_lab_ui_password_$fingerprint"
  export PROMETHEUS_WEB_CONFIG_SECRET="${stack}_prometheus_web_config_$fingerprint"
  if ! docker secret inspect "$LAB_UI_PASSWORD_SECRET" >/dev/null 2>&1; then
    printf '%s' "$password" | docker secret create \
      --label "com.docker.stack.namespace=$stack" "$LAB_UI_PASSWORD_SECRET" - >/dev/null \
      || die "cannot create the secret $LAB_UI_PASSWORD_SECRET"
  fi
  if ! docker secret inspect "$PROMETHEUS_WEB_CONFIG_SECRET" >/dev/null 2>&1; then
    # The password goes in on stdin (htpasswd -i), never on a command line.
    hash="$(printf '%s\n' "$password" | docker run --rm -i --network none --entrypoint htpasswd \
      "$image" -niBC 10 "$user")" || die "htpasswd in $image failed"
    printf 'basic_auth_users:\n  "%s": "%s"\n' "$user" "${hash#*:}" | docker secret create \
      --label "com.docker.stack.namespace=$stack" "$PROMETHEUS_WEB_CONFIG_SECRET" - >/dev/null \
      || die "cannot create the secret $PROMETHEUS_WEB_CONFIG_SECRET"
  fi
  if [ "$created" = 1 ]; then
    log "the UI login of stack $stack (shown once; kept in $UI_LOGIN_FILE): user $user password $password"
  fi
}
