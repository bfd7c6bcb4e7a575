#!/usr/bin/env bash
# Base image selection for scripts/build_images.sh. Source after common.sh; do not run it.
#
# The Dockerfiles take `ARG BASE_IMAGE` defaulting to pinned official images. On an air-gapped
# machine (no registry) those cannot be pulled, so we build an equivalent local base once:
# debootstrap a minimal Debian bookworm with python3 (+ venv) and `docker import` it. The same
# local image stands in for both python:3.11-slim-bookworm and debian:bookworm-slim: it is the
# same Debian release, and our Dockerfiles only rely on `python3 -m venv`, apt-get and useradd.

# Pinned upstream bases (a user with Docker Hub gets exactly these).
PYTHON_BASE_DEFAULT="${PYTHON_BASE_DEFAULT:-python:3.11.14-slim-bookworm}"
DEBIAN_BASE_DEFAULT="${DEBIAN_BASE_DEFAULT:-debian:12.12-slim}"
LOCAL_BASE_IMAGE="${LOCAL_BASE_IMAGE:-penguin-lab/base:bookworm-python3.11}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DEBIAN_SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# try_pull IMAGE: true when IMAGE is present locally or could be pulled now.
try_pull() {
  local image="$1"
  image_exists "$image" && return 0
  log "pulling $image"
  timeout "${PULL_TIMEOUT:-300}" docker pull --quiet "$image" >/dev/null 2>&1
}

# build_local_base: debootstrap bookworm (minbase + python3, python3-venv) and docker-import it.
build_local_base() {
  image_exists "$LOCAL_BASE_IMAGE" && return 0
  is_root || die "building the local base image needs root (debootstrap); run as root"
  command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
  local work rootfs
  work="$(mktemp -d "${TMPDIR:-/tmp}/penguin-base.XXXXXX")"
  rootfs="$work/rootfs"
  log "building the local base image $LOCAL_BASE_IMAGE with debootstrap (about a minute)"
  if ! debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
      bookworm "$rootfs" "$DEBIAN_MIRROR" >"$work/debootstrap.log" 2>&1; then
    tail -n 20 "$work/debootstrap.log" >&2
    rm -rf "$work"
    die "debootstrap failed (mirror $DEBIAN_MIRROR)"
  fi
  # Same apt sources as the official image, so security updates (and pinned versions) resolve.
  cat >"$rootfs/etc/apt/sources.list" <<SOURCES
deb $DEBIAN_MIRROR bookworm main
deb $DEBIAN_MIRROR bookworm-updates main
deb $DEBIAN_SECURITY_MIRROR bookworm-security main
SOURCES
  # Keep the image small: docs, man pages, locales and apt caches are never used at run time.
  rm -rf "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
    "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
    "$rootfs"/var/log/*.log
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'en*' -exec rm -rf {} + 2>/dev/null || true
  tar --numeric-owner -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --message "debootstrap bookworm minbase + python3 (stand-in for $PYTHON_BASE_DEFAULT and $DEBIAN_BASE_DEFAULT)" \
    - "$LOCAL_BASE_IMAGE" >/dev/null
  rm -rf "$work"
  log "built $LOCAL_BASE_IMAGE ($(docker image inspect --format '{{.Size}}' "$LOCAL_BASE_IMAGE" | awk '{printf "%d MB", $1/1e6}'))"
}

# resolve_base WANTED: prints the image to build FROM: WANTED when available, else the local base.
resolve_base() {
  local wanted="$1"
  if [ "${USE_LOCAL_BASE:-0}" != 1 ] && try_pull "$wanted"; then
    printf '%s\n' "$wanted"
    return 0
  fi
  build_local_base
  log "$wanted is not available (no registry reachable?): using the local base $LOCAL_BASE_IMAGE instead"
  printf '%s\n' "$LOCAL_BASE_IMAGE"
}
