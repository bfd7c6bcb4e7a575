#!/usr/bin/env bash
# Shared helpers for the entry points in scripts/. Source it; do not run it.
# Every helper is idempotent: it checks first and installs only what is missing.

PROJECT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV_DIR="${VENV_DIR:-$PROJECT_ROOT/.venv}"
VENV_PYTHON="$VENV_DIR/bin/python"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

# What the lab did to the machine as root, for scripts/uninstall.sh: the packages it installed,
# daemon.json's earlier values, whether it made the Swarm.
LAB_STATE_DIR="${LAB_STATE_DIR:-/var/lib/penguin-lab}"

# Debian's invoke-rc.d and deb-systemd-invoke ask this file whether a package may start its
# service; exit 101 means "no". A variable so the tests can point it elsewhere.
POLICY_RC_D="${POLICY_RC_D:-/usr/sbin/policy-rc.d}"

# apt_install [--services] PKG...: installs the Debian packages that are not installed yet.
# Without --services (every package but the Docker engine) the install starts no service, and the
# services the new packages ship are disabled: Debian's nginx would otherwise listen on :80 and its
# prometheus, without a login, on :9090 (the stack's port), now and after every boot.
apt_install() {
  local services=0
  if [ "${1:-}" = "--services" ]; then services=1; shift; fi
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  command -v apt-get >/dev/null 2>&1 || die "missing packages ${missing[*]} and no apt-get to install them"
  local sudo=()
  if ! is_root; then
    command -v sudo >/dev/null 2>&1 || die "missing packages ${missing[*]}; run as root or install them"
    sudo=(sudo)
  fi
  log "installing Debian packages: ${missing[*]}"
  "${sudo[@]}" apt-get update -qq
  if [ "$services" -eq 1 ]; then
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    return 0
  fi
  local before
  before="$(installed_packages)"
  # A subshell, so its trap removes the policy however the install ends and leaves the calling
  # script's own traps alone. A policy that was already there (a container's) stays as it was.
  (
    if [ ! -e "$POLICY_RC_D" ]; then
      trap '"${sudo[@]}" rm -f "$POLICY_RC_D"' EXIT
      trap 'exit 130' INT TERM
      printf '#!/bin/sh\n# scripts/lib/common.sh apt_install: no service starts during the install.\nexit 101\n' \
        | "${sudo[@]}" tee "$POLICY_RC_D" >/dev/null
      "${sudo[@]}" chmod 0755 "$POLICY_RC_D"
    fi
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  )
  # Dependencies too: every package that was not on the machine before this install.
  local new=()
  mapfile -t new < <(comm -13 <(printf '%s\n' "$before") <(installed_packages))
  disable_package_services "${sudo[@]}" -- "${new[@]}"
  "${sudo[@]}" mkdir -p "$LAB_STATE_DIR"
  printf '%s\n' "${new[@]}" | "${sudo[@]}" tee -a "$LAB_STATE_DIR/packages-installed" >/dev/null
}

# installed_packages: the names of the installed packages (not those removed with their config
# kept, which a reinstall brings back with its services).
installed_packages() {
  dpkg-query -W -f='${db:Status-Status} ${Package}\n' 2>/dev/null | awk '$1 == "installed" { print $2 }' | sort -u
}

# disable_package_services [SUDO] -- PKG...: the packages' systemd units and init scripts do not
# start at boot. Only for packages this script has just installed: nothing the user had before.
disable_package_services() {
  local sudo=() pkg path
  while [ "$1" != "--" ]; do sudo+=("$1"); shift; done
  shift
  for pkg in "$@"; do
    while IFS= read -r path; do
      case "$path" in
        /lib/systemd/system/*.service|/lib/systemd/system/*.socket|/lib/systemd/system/*.timer|\
        /usr/lib/systemd/system/*.service|/usr/lib/systemd/system/*.socket|/usr/lib/systemd/system/*.timer)
          if command -v systemctl >/dev/null 2>&1; then
            "${sudo[@]}" systemctl disable --quiet "${path##*/}" >/dev/null 2>&1 || true
          fi ;;
        /etc/init.d/*)
          if command -v update-rc.d >/dev/null 2>&1; then
            "${sudo[@]}" update-rc.d "${path##*/}" disable >/dev/null 2>&1 || true
          fi ;;
      esac
    done < <(dpkg -L "$pkg" 2>/dev/null || true)
  done
}

# ensure_venv: .venv with the pinned development requirements, reinstalled only when they change.
ensure_venv() {
  local stamp="$VENV_DIR/.requirements.sha256" want
  want="$(cat "$PROJECT_ROOT"/requirements/*.txt "$PROJECT_ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
  if [ -x "$VENV_PYTHON" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    local ver
    ver="$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    apt_install "python3.${ver#3.}-venv" || apt_install python3-venv
  fi
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "Python 3.11 or newer is needed, found $(python3 --version)"
  [ -x "$VENV_PYTHON" ] || { log "creating $VENV_DIR"; python3 -m venv "$VENV_DIR"; }
  log "installing pinned requirements into $VENV_DIR (first run takes a minute)"
  local pip_log="$VENV_DIR/pip-install.log"
  if ! "$VENV_PYTHON" -m pip install --upgrade pip -r "$PROJECT_ROOT/requirements/dev.txt" \
      -c "$PROJECT_ROOT/requirements/constraints.txt" >"$pip_log" 2>&1; then
    tail -n 20 "$pip_log" >&2
    die "pip install failed; the whole log is $pip_log"
  fi
  # The project's own packages (pyproject.toml), editable: every module imports by name.
  if ! "$VENV_PYTHON" -m pip install --no-deps --editable "$PROJECT_ROOT" >>"$pip_log" 2>&1; then
    tail -n 20 "$pip_log" >&2
    die "installing the project into $VENV_DIR failed; the whole log is $pip_log"
  fi
  echo "$want" > "$stamp"
}

# ensure_native: builds the C one-row path of /predict (service/_native.c over service/evaluate.c
# -> service/_native.abi3.so, a CPython extension) when missing or older than its sources,
# installing a C compiler and the Python headers first if they are missing (as root). Without it
# the service still works, with Python and numpy for single rows, at a higher CPU cost.
ensure_native() {
  local missing=()
  if ! command -v cc >/dev/null 2>&1 && ! command -v gcc >/dev/null 2>&1; then
    missing+=(gcc libc6-dev)
  fi
  if ! (cd "$PROJECT_ROOT" && "$VENV_PYTHON" -m service.native --check-headers >/dev/null 2>&1); then
    missing+=(python3-dev)
  fi
  if [ "${#missing[@]}" -gt 0 ]; then
    if is_root; then
      apt_install "${missing[@]}"
    else
      log "warning: ${missing[*]} missing; one-row predictions will use numpy (install them to build service/_native.c)"
      return 0
    fi
  fi
  (cd "$PROJECT_ROOT" && "$VENV_PYTHON" -m service.native >/dev/null) \
    || log "warning: service/_native.c did not build (above); one-row predictions will use numpy"
}

# ensure_models: trains and exports the models when models/manifest.json is missing, or when the
# models there do not load with this code (trained by an older version, e.g. before a compiled
# model kind was renamed).
ensure_models() {
  # Whatever needs the models also serves or evaluates them.
  ensure_native
  if [ ! -f "$PROJECT_ROOT/models/manifest.json" ]; then
    log "training the models (models/manifest.json is missing)"
  elif ! (cd "$PROJECT_ROOT" && "$VENV_PYTHON" -c \
      'from pathlib import Path; from service.inference import load_models; load_models(Path("models"))' \
      >/dev/null 2>&1); then
    log "retraining the models (models/ does not load with this code)"
  else
    return 0
  fi
  (cd "$PROJECT_ROOT" && "$VENV_PYTHON" -m training)
}
