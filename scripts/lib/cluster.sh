#!/usr/bin/env bash
# Helpers for cluster_up.sh / cluster_down.sh. Source after common.sh; do not run it.

CLUSTER_CACHE_DIR="${CLUSTER_CACHE_DIR:-/var/cache/penguins-cluster}"

# cluster_tools: the commands python -m cluster drives (iproute2, util-linux's nsenter/unshare).
cluster_tools() {
  is_root || die "the local cluster makes network namespaces and Docker engines: run as root"
  command -v ip >/dev/null 2>&1 || apt_install iproute2
  command -v nsenter >/dev/null 2>&1 || apt_install util-linux
  command -v dockerd >/dev/null 2>&1 || apt_install --services docker.io
}

# registry_binary: prints the path of Debian's docker-registry server. Installing the package
# would start a registry service on the host (port 5000, every interface); we only want the
# binary, run inside the cluster's own namespace, so we unpack the package into a cache instead.
registry_binary() {
  local unpacked="$CLUSTER_CACHE_DIR/docker-registry/usr/bin/docker-registry" deb
  if command -v docker-registry >/dev/null 2>&1; then
    command -v docker-registry
    return 0
  fi
  if [ ! -x "$unpacked" ]; then
    log "fetching Debian's docker-registry package (unpacked into $CLUSTER_CACHE_DIR, not installed)"
    mkdir -p "$CLUSTER_CACHE_DIR/deb"
    if ! (cd "$CLUSTER_CACHE_DIR/deb" && apt-get download docker-registry >/dev/null 2>&1); then
      apt-get update -qq
      (cd "$CLUSTER_CACHE_DIR/deb" && apt-get download docker-registry >/dev/null) \
        || die "apt-get download docker-registry failed"
    fi
    deb="$(find "$CLUSTER_CACHE_DIR/deb" -name 'docker-registry_*.deb' | sort | tail -n 1)"
    dpkg-deb -x "$deb" "$CLUSTER_CACHE_DIR/docker-registry"
  fi
  printf '%s\n' "$unpacked"
}
