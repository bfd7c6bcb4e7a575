#!/usr/bin/env bash
# Undoes what scripts/run_matrix.sh, scripts/test.sh and the stack scripts changed on this machine.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=scripts/lib/network_access.sh
source "$PROJECT_ROOT/scripts/lib/network_access.sh"

usage() {
  cat <<USAGE
Usage: scripts/uninstall.sh [--dry-run] [--yes] [--packages] [--venv] [--build] [--results]
                            [--logins] [--all]

Removes, as root, what the lab put on this machine (README.md, "What the two commands change"):
  - every Swarm stack that runs penguin-lab images, with its Prometheus volume
  - the local multi-node cluster (scripts/cluster_down.sh) and its cache $CLUSTER_CACHE_DIR_DEFAULT
  - the iptables chains $LAB_FORWARD_CHAIN and $LAB_INPUT_CHAIN and the jumps to them
  - the Swarm, if the lab made it and no other service is left on it
  - the daemon.json keys the lab set, back to their earlier values (the engine keeps its settings
    until it restarts)
  - $LAB_STATE_DIR, where the lab noted all this
The Docker engine itself stays. Only when asked:

  --packages   purge the Debian packages the lab installed (listed in $LAB_STATE_DIR)
  --venv       remove .venv
  --build      remove build/ (wheels, image logs) and models/
  --results    remove results/
  --logins     remove the stacks' UI logins (~/.config/penguin-lab)
  --all        all five above
  --dry-run    print what would be done, change nothing
  --yes        do not ask (it never asks when not run from a terminal)
  -h, --help   show this help
USAGE
}

CLUSTER_CACHE_DIR_DEFAULT=/var/cache/penguins-cluster
dry_run=0
assume_yes=0
packages=0
venv=0
build=0
results=0
logins=0
while [ "$#" -gt 0 ]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --yes) assume_yes=1 ;;
    --packages) packages=1 ;;
    --venv) venv=1 ;;
    --build) build=1 ;;
    --results) results=1 ;;
    --logins) logins=1 ;;
    --all) packages=1; venv=1; build=1; results=1; logins=1 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
  shift
done

[ "$dry_run" -eq 1 ] || is_root || die "run as root (or with --dry-run to see what it would do)"
if [ "$dry_run" -eq 0 ] && [ "$assume_yes" -eq 0 ] && [ -t 0 ]; then
  read -r -p "Remove the lab's stacks, Swarm, firewall rules and settings from this machine? [y/N] " answer
  case "$answer" in y|Y|yes) ;; *) die "nothing done" ;; esac
fi

# act DESCRIPTION COMMAND...: runs COMMAND, or with --dry-run only says it would.
act() {
  local what="$1"
  shift
  if [ "$dry_run" -eq 1 ]; then
    printf 'would %s: %s\n' "$what" "$*"
  else
    log "$what"
    "$@"
  fi
}

engine_up=0
command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 && engine_up=1

# Stacks whose services run penguin-lab images (any stack name, the tests' included).
lab_stacks() {
  docker service ls --filter label=com.docker.stack.namespace \
    --format '{{.Label "com.docker.stack.namespace"}} {{.Image}}' 2>/dev/null \
    | awk '$2 ~ /penguin-lab\// { print $1 }' | sort -u
}

if [ "$engine_up" -eq 1 ]; then
  while IFS= read -r stack; do
    [ -n "$stack" ] || continue
    act "remove stack $stack" "$PROJECT_ROOT/scripts/stack_down.sh" --stack-name "$stack"
    if docker volume inspect "${stack}_prometheus_data" >/dev/null 2>&1; then
      act "remove volume ${stack}_prometheus_data" docker volume rm "${stack}_prometheus_data"
    fi
  done < <(lab_stacks)
fi

if [ -d /run/penguins-cluster ] || [ -d /var/lib/penguins-cluster ]; then
  act "remove the local cluster" "$PROJECT_ROOT/scripts/cluster_down.sh"
fi
if [ -d "$CLUSTER_CACHE_DIR_DEFAULT" ]; then
  act "remove the cluster's cache" rm -rf "$CLUSTER_CACHE_DIR_DEFAULT"
fi

if command -v iptables >/dev/null 2>&1; then
  for pair in "DOCKER-USER $LAB_FORWARD_CHAIN" "INPUT $LAB_INPUT_CHAIN"; do
    read -r parent chain <<<"$pair"
    if iptables -w -n -L "$chain" >/dev/null 2>&1; then
      while iptables -w -C "$parent" -j "$chain" 2>/dev/null; do
        act "remove the jump $parent -> $chain" iptables -w -D "$parent" -j "$chain"
        [ "$dry_run" -eq 0 ] || break
      done
      act "remove the iptables chain $chain" sh -c "iptables -w -F '$chain' && iptables -w -X '$chain'"
    fi
  done
fi

if [ "$engine_up" -eq 1 ] && [ -f "$LAB_STATE_DIR/swarm-created-by-lab" ] \
    && [ "$(docker info --format '{{.Swarm.LocalNodeState}}')" = active ]; then
  # Services that are not the lab's (the lab's are gone by now, or will be after a dry run).
  others="$(docker service ls --format '{{.Image}}' | grep -cv 'penguin-lab/' || true)"
  if [ "$others" -gt 0 ]; then
    log "keeping the Swarm: $others service(s) not the lab's run on it"
  else
    act "leave the Swarm the lab made" docker swarm leave --force
  fi
fi

if [ -f "$LAB_STATE_DIR/daemon-json-before.json" ]; then
  # The standard library only: no virtualenv needed.
  act "restore daemon.json's earlier values" sh -c "cd '$PROJECT_ROOT' && python3 -m stack.daemon_config restore --file '${DOCKER_DAEMON_JSON:-/etc/docker/daemon.json}' --record '$LAB_STATE_DIR/daemon-json-before.json'"
fi

if [ "$packages" -eq 1 ] && [ -s "$LAB_STATE_DIR/packages-installed" ]; then
  mapfile -t installed < <(sort -u "$LAB_STATE_DIR/packages-installed")
  act "purge the packages the lab installed" env DEBIAN_FRONTEND=noninteractive \
    apt-get purge -y -qq "${installed[@]}"
fi

[ "$venv" -eq 0 ] || act "remove .venv" rm -rf "$VENV_DIR"
[ "$build" -eq 0 ] || act "remove build/ and models/" rm -rf "$PROJECT_ROOT/build" "$PROJECT_ROOT/models"
[ "$results" -eq 0 ] || act "remove results/" rm -rf "$PROJECT_ROOT/results"
if [ "$logins" -eq 1 ]; then
  act "remove the UI logins" rm -rf "${PENGUIN_LAB_CREDENTIALS_DIR:-$HOME/.config/penguin-lab}"
fi
# What is left of the notes: the package list stays unless the packages went.
if [ "$packages" -eq 1 ] || [ ! -s "$LAB_STATE_DIR/packages-installed" ]; then
  [ -d "$LAB_STATE_DIR" ] && act "remove $LAB_STATE_DIR" rm -rf "$LAB_STATE_DIR"
fi
log "done$([ "$dry_run" -eq 0 ] || echo ' (dry run: nothing changed)')"
