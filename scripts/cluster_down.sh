#!/usr/bin/env bash
# Removes the local multi-node Swarm of scripts/cluster_up.sh: engines, namespaces, links, data.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() {
  cat <<USAGE
Usage: scripts/cluster_down.sh

Removes everything scripts/cluster_up.sh made: kills every process of the cluster's engines,
their containers and the registry, unmounts what they mounted, deletes the network namespaces,
veths, cgroups and the folders /run/penguins-cluster and /var/lib/penguins-cluster (engine data
roots and the registry's storage). Also after a crash half-way; a missing cluster is no error.
The host's own Docker engine and its Swarm are not touched.

  -h, --help   show this help
USAGE
}

case "${1:-}" in
  "") ;;
  -h|--help) usage; exit 0 ;;
  *) usage >&2; die "unknown option: $1" ;;
esac

is_root || die "the local cluster is root's (namespaces, engines): run as root"
cd "$PROJECT_ROOT"
ensure_venv
exec "$VENV_PYTHON" -m cluster down
