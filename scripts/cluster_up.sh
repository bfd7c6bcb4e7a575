#!/usr/bin/env bash
# Starts a local multi-node Docker Swarm (engines in network namespaces) and deploys the stack.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=scripts/lib/docker.sh
source "$PROJECT_ROOT/scripts/lib/docker.sh"
# shellcheck source=scripts/lib/cluster.sh
source "$PROJECT_ROOT/scripts/lib/cluster.sh"

usage() {
  cat <<USAGE
Usage: scripts/cluster_up.sh [--nodes N] [--no-build] [--no-deploy] [--timeout SECONDS]

Makes a Docker Swarm of N engines on this machine, each in a network namespace of its own
(separate from the host's engine and its Swarm), with a registry every node trusts; builds the
images on the host engine, pushes them with IMAGE_PREFIX=<registry>/ and deploys
stack/docker-stack.yml on it (Nginx and the Locust master on node 1, the edge). Prints, and
writes to /run/penguins-cluster/env, the DOCKER_HOST of the manager and the Nginx URL. Idempotent;
after a crash half-way it finishes the job. See cluster/README.md.

  --nodes N          engines (default: \$CLUSTER_NODES or 3; node 1 is the manager)
  --no-build         push the images the host engine has, without scripts/build_images.sh
  --no-deploy        engines, Swarm, registry and images only
  --timeout SECONDS  how long the stack may take to converge (default: 300)
  -h, --help         show this help

Remove it all with scripts/cluster_down.sh. Knobs: CLUSTER_SUBNET [10.213.0.0/16],
CLUSTER_PREFIX [pclab], IMAGE_TAG [latest], and the stack's (stack/README.md).
USAGE
}

nodes_args=()
build=1
deploy_args=()
timeout_s=300
while [ "$#" -gt 0 ]; do
  case "$1" in
    --nodes) [ "$#" -ge 2 ] || die "--nodes needs a value"; nodes_args=(--nodes "$2"); shift ;;
    --no-build) build=0 ;;
    --no-deploy) deploy_args=(--no-deploy) ;;
    --timeout) [ "$#" -ge 2 ] || die "--timeout needs a value"; timeout_s="$2"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
  shift
done
[[ "$timeout_s" =~ ^[0-9]+$ ]] || die "--timeout takes whole seconds, not '$timeout_s'"
[ "${#nodes_args[@]}" -eq 0 ] || [[ "${nodes_args[1]}" =~ ^[0-9]+$ ]] \
  || die "--nodes takes a whole number, not '${nodes_args[1]}'"

cd "$PROJECT_ROOT"
cluster_tools
ensure_venv
ensure_docker_engine
registry="$(registry_binary)"
[ "$build" -eq 1 ] && "$PROJECT_ROOT/scripts/build_images.sh"

started=$SECONDS
"$VENV_PYTHON" -m cluster up "${nodes_args[@]}" "${deploy_args[@]}" \
  --registry-binary "$registry" --timeout "$timeout_s"
log "cluster up in $((SECONDS - started))s; target it with: set -a; . ENV_FILE; set +a (above)"
