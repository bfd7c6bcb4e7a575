#!/usr/bin/env bash
# Docker engine and Swarm helpers shared by the entry points. Source after common.sh.

DOCKERD_LOG="${DOCKERD_LOG:-/var/log/capacity-lab-dockerd.log}"
SWARM_ADVERTISE_ADDR="${SWARM_ADVERTISE_ADDR:-127.0.0.1}"

docker_engine_up() { docker info >/dev/null 2>&1; }

# ensure_docker_engine: installs Debian's docker.io when there is no engine, starts it when stopped.
ensure_docker_engine() {
  docker_engine_up && return 0
  if ! command -v dockerd >/dev/null 2>&1; then
    apt_install docker.io
  fi
  docker_engine_up && return 0
  is_root || die "the Docker engine is not running; start it (sudo systemctl start docker) or run as root"
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    log "starting the Docker engine with systemctl"
    systemctl start docker
  else
    # No systemd (containers, CI sandboxes): run dockerd detached so it outlives this script.
    log "starting dockerd in the background (log: $DOCKERD_LOG)"
    setsid nohup dockerd >"$DOCKERD_LOG" 2>&1 < /dev/null &
  fi
  local waited=0
  until docker_engine_up; do
    sleep 1
    waited=$((waited + 1))
    [ "$waited" -lt 60 ] || die "the Docker engine did not come up within 60 s; see $DOCKERD_LOG"
  done
  log "Docker engine $(docker version --format '{{.Server.Version}}') is up"
}

# ensure_swarm: makes this engine a single-node Swarm manager when it is in no Swarm yet.
ensure_swarm() {
  local state
  state="$(docker info --format '{{.Swarm.LocalNodeState}}')"
  case "$state" in
    active) return 0 ;;
    inactive)
      log "initialising a single-node Swarm (advertise address $SWARM_ADVERTISE_ADDR)"
      docker swarm init --advertise-addr "$SWARM_ADVERTISE_ADDR" >/dev/null ;;
    *) die "this engine's Swarm state is '$state'; fix it (docker swarm leave --force) and retry" ;;
  esac
}
