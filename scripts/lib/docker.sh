#!/usr/bin/env bash
# Docker engine and Swarm helpers shared by the entry points. Source after common.sh.
# shellcheck source=scripts/lib/network_access.sh
source "$PROJECT_ROOT/scripts/lib/network_access.sh"

DOCKERD_LOG="${DOCKERD_LOG:-/var/log/capacity-lab-dockerd.log}"
# The address a new Swarm advertises with LAB_NETWORK_ACCESS=open (local mode: 127.0.0.1 always).
SWARM_ADVERTISE_ADDR="${SWARM_ADVERTISE_ADDR:-127.0.0.1}"
# The engine's settings file, and the open-file limit for dockerd and every container: 10 000
# clients take a descriptor each in Locust and twice in Nginx (stack/daemon_config.py says why).
DOCKER_DAEMON_JSON="${DOCKER_DAEMON_JSON:-/etc/docker/daemon.json}"
ENGINE_NOFILE="${ENGINE_NOFILE:-1048576}"
DOCKERD_PIDFILE="${DOCKERD_PIDFILE:-/var/run/docker.pid}"
# The pid of a dockerd this project started in the background: only that one may be restarted.
DOCKERD_OURS="${DOCKERD_OURS:-/run/capacity-lab-dockerd.pid}"

docker_engine_up() { docker info >/dev/null 2>&1; }

# engine_is_local: DOCKER_HOST is this machine's engine (not a remote one, nor the cluster's).
engine_is_local() {
  case "${DOCKER_HOST:-unix:///var/run/docker.sock}" in
    unix:///var/run/docker.sock) return 0 ;;
    *) return 1 ;;
  esac
}

daemon_config() { (cd "$PROJECT_ROOT" && "$VENV_PYTHON" -m stack.daemon_config "$@"); }

# engine_nofile: ENGINE_NOFILE, or the most this machine allows: without CAP_SYS_RESOURCE (a
# sandbox, a container) no process can go above its hard limit, nor can runc for a container.
engine_nofile() {
  if (ulimit -n "$ENGINE_NOFILE") 2>/dev/null; then
    printf '%s\n' "$ENGINE_NOFILE"
  else
    ulimit -Hn
  fi
}

# apply_engine_settings: merges the lab's settings into daemon.json (other settings kept), before
# the engine starts: neither setting can be changed in a running engine.
apply_engine_settings() {
  local changes nofile logs=()
  nofile="$(engine_nofile)"
  # The stack file's logging knobs, also the engine's default (stack/daemon_config.py's otherwise).
  [ -z "${LAB_LOG_MAX_SIZE:-}" ] || logs+=(--log-max-size "$LAB_LOG_MAX_SIZE")
  [ -z "${LAB_LOG_MAX_FILE:-}" ] || logs+=(--log-max-file "$LAB_LOG_MAX_FILE")
  [ "$nofile" = "$ENGINE_NOFILE" ] \
    || log "open-file limit for the engine: $nofile, the most this machine allows (not $ENGINE_NOFILE)"
  changes="$(daemon_config apply --file "$DOCKER_DAEMON_JSON" --nofile "$nofile" "${logs[@]}" \
    --record "$LAB_STATE_DIR/daemon-json-before.json")" \
    || die "cannot update $DOCKER_DAEMON_JSON (see above)"
  [ -z "$changes" ] || log "engine settings: $changes"
}

# dockerd_detached: without systemd (containers, CI sandboxes), dockerd in its own session so it
# outlives this script, with the open-file limit its docker.service would give it, and none of
# this shell's descriptors above 2: it would hold whatever they are open for as long as it runs,
# such as the lock of a caller that wrapped this script in `flock`, which then never came free.
dockerd_detached() {
  (
    local fd
    ulimit -n "$(engine_nofile)"
    for fd in /proc/self/fd/*; do
      fd="${fd##*/}"
      if [ "$fd" -gt 2 ]; then
        exec {fd}>&-
      fi
    done
    exec setsid nohup dockerd >"$DOCKERD_LOG" 2>&1 </dev/null
  ) &
}

# start_dockerd: starts the stopped engine and waits until it answers.
start_dockerd() {
  local background=0 waited=0
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    # Debian's docker.service already gives dockerd LimitNOFILE=infinity.
    log "starting the Docker engine with systemctl"
    systemctl start docker
  else
    log "starting dockerd in the background (log: $DOCKERD_LOG)"
    dockerd_detached
    background=1
  fi
  until docker_engine_up; do
    sleep 1
    waited=$((waited + 1))
    [ "$waited" -lt 60 ] || die "the Docker engine did not come up within 60 s; see $DOCKERD_LOG"
  done
  # Remember which dockerd is ours: check_engine_settings may restart that one, no other.
  [ "$background" -eq 0 ] || cp "$DOCKERD_PIDFILE" "$DOCKERD_OURS"
  log "Docker engine $(docker version --format '{{.Server.Version}}') is up"
}

# check_engine_settings: a running local engine without the lab's settings is restarted only if
# this project started it and no container runs on it; any other engine (a user's, a shared one)
# is left alone, with a warning that says how to apply them.
check_engine_settings() {
  local pid problems problem
  engine_is_local || return 0  # a remote engine or the local cluster's: not ours to configure
  pid="$(cat "$DOCKERD_PIDFILE" 2>/dev/null || true)"
  [ -n "$pid" ] && [ -r "/proc/$pid/limits" ] || return 0  # not visible from here
  problems="$(daemon_config check --pid "$pid" --file "$DOCKER_DAEMON_JSON" \
    --nofile "$(engine_nofile)")" && return 0
  [ -n "$problems" ] || return 0  # the check itself failed and said why: not a reason to stop
  if is_root && [ "$(cat "$DOCKERD_OURS" 2>/dev/null || true)" = "$pid" ] \
      && [ -z "$(docker ps --quiet)" ]; then
    log "restarting the idle dockerd this project started: $(paste -sd ';' <<<"$problems")"
    kill "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.5; done
    apply_engine_settings
    start_dockerd
    return 0
  fi
  log "warning: the running Docker engine lacks what 10 000 connections need:"
  while IFS= read -r problem; do log "  - $problem"; done <<<"$problems"
  log "  Stop it and run this script again, which merges the settings into $DOCKER_DAEMON_JSON"
  log "  and starts it (its containers stop too): sudo systemctl stop docker.socket docker"
  log "  (without systemd: sudo kill \$(cat $DOCKERD_PIDFILE))"
}

# ensure_docker_engine: installs Debian's docker.io when there is no engine, starts it when
# stopped, with the lab's settings (no userland proxy, raised open-file limits).
ensure_docker_engine() {
  if docker_engine_up; then
    check_engine_settings
    return 0
  fi
  # Settings first: the package's own start of the engine then has them.
  is_root && apply_engine_settings
  if ! command -v dockerd >/dev/null 2>&1; then
    apt_install --services docker.io
  fi
  if docker_engine_up; then
    check_engine_settings
    return 0
  fi
  is_root || die "the Docker engine is not running; start it (sudo systemctl start docker) or run as root"
  start_dockerd
}

# note_lab_swarm: scripts/uninstall.sh leaves only a Swarm the lab made.
note_lab_swarm() {
  if ! { mkdir -p "$LAB_STATE_DIR" && : >"$LAB_STATE_DIR/swarm-created-by-lab"; } 2>/dev/null; then
    log "warning: cannot note in $LAB_STATE_DIR that the lab made this Swarm (scripts/uninstall.sh keeps it)"
  fi
}

# ensure_swarm: makes this engine a single-node Swarm manager when it is in no Swarm yet. With
# LAB_NETWORK_ACCESS=local (scripts/lib/network_access.sh) the Swarm listens on loopback only: a
# lab Swarm from before that listens on every address is moved there in place, and its ports are
# firewalled from other interfaces.
ensure_swarm() {
  local state
  state="$(docker info --format '{{.Swarm.LocalNodeState}}')"
  case "$state" in
    active) ;;
    inactive)
      if network_is_local; then
        log "initialising a single-node Swarm on loopback (LAB_NETWORK_ACCESS=local)"
        docker swarm init --listen-addr 127.0.0.1:2377 --advertise-addr 127.0.0.1:2377 >/dev/null
      else
        log "initialising a Swarm advertised on $SWARM_ADVERTISE_ADDR, listening on every address (LAB_NETWORK_ACCESS=open)"
        docker swarm init --advertise-addr "$SWARM_ADVERTISE_ADDR" >/dev/null
      fi
      note_lab_swarm ;;
    *) die "this engine's Swarm state is '$state'; fix it (docker swarm leave --force) and retry" ;;
  esac
  if ! network_is_local || ! engine_is_local; then
    return 0
  fi
  swarm_on_loopback
  close_swarm_ports
}

# swarm_on_loopback: a single-node Swarm advertised on 127.0.0.1 (what this lab makes) that
# listens on every address is re-initialised in place to listen on 127.0.0.1: `swarm init
# --force-new-cluster` keeps the node, its services, secrets and configs, and running tasks. Any
# other Swarm (a user's, several nodes) is not the lab's to change: local mode refuses it.
swarm_on_loopback() {
  swarm_listens_on_wildcard || return 0
  local addr nodes
  addr="$(docker info --format '{{.Swarm.NodeAddr}}')"
  nodes="$(docker info --format '{{.Swarm.Nodes}}')"
  if [ "$addr" != 127.0.0.1 ] || [ "$nodes" != 1 ]; then
    die "this engine's Swarm ($nodes node(s), advertised on $addr) listens on every address; the lab does not change a Swarm it did not make: deploy with LAB_NETWORK_ACCESS=open (stack/README.md) or leave that Swarm"
  fi
  log "moving this single-node Swarm's listener from every address to 127.0.0.1 (swarm init --force-new-cluster: services and secrets kept)"
  docker swarm init --force-new-cluster --listen-addr 127.0.0.1:2377 \
    --advertise-addr 127.0.0.1:2377 >/dev/null
  # Only this lab makes a Swarm advertised on loopback (no other node could ever reach it).
  note_lab_swarm
}
