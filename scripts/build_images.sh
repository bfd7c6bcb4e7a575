#!/usr/bin/env bash
# Builds the images of the stack (penguin-lab/api, nginx, locust, prometheus and autoscaler).
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=scripts/lib/docker.sh
source "$PROJECT_ROOT/scripts/lib/docker.sh"
# shellcheck source=scripts/lib/base_image.sh
source "$PROJECT_ROOT/scripts/lib/base_image.sh"

usage() {
  cat <<USAGE
Usage: scripts/build_images.sh [--tag TAG] [--prefix PREFIX] [--only NAME]... [--local-base]
                               [--no-cache] [--wheels-only] [--example NAME]...

Builds \${IMAGE_PREFIX}penguin-lab/{api,nginx,locust,prometheus,autoscaler}:\${IMAGE_TAG} from the
repository root; with --example NAME only the example service examples/NAME/ (its Dockerfile and
pinned requirements.txt), as \${IMAGE_PREFIX}penguin-lab/example-NAME:\${IMAGE_TAG}.
Re-running is cheap: wheels, models, the base image and Docker's layer cache are reused.

Steps: trains the models when models/manifest.json is missing; downloads the pinned wheels for
the images' Python (3.11, manylinux x86_64) on the host into build/wheels/ (the images then
install offline, so a build needs no network and no proxy CA inside); picks the base images:
the pinned official ones ($PYTHON_BASE_DEFAULT, $DEBIAN_BASE_DEFAULT)
when present or pullable, otherwise a local Debian bookworm base built once with debootstrap
($LOCAL_BASE_IMAGE), which stands in for both.

  --tag TAG        image tag (default: \$IMAGE_TAG or latest)
  --prefix PREFIX  registry prefix, e.g. registry.example.com:5000/ (default: \$IMAGE_PREFIX)
  --only NAME      build only api, nginx, locust, prometheus or autoscaler (repeatable)
  --local-base     skip pulling; always use the local debootstrap base
  --no-cache       rebuild every layer
  --wheels-only    only prepare build/wheels/ (for a plain \`docker build\` afterwards)
  --example NAME   build the example service examples/NAME/ (repeatable; with --only, those too)
  -h, --help       show this help

Environment: IMAGE_TAG, IMAGE_PREFIX, PYTHON_BASE_IMAGE, NGINX_BASE_IMAGE (force a base),
PULL_TIMEOUT (seconds, default 300), DEBIAN_MIRROR.
USAGE
}

IMAGE_TAG="${IMAGE_TAG:-latest}"
IMAGE_PREFIX="${IMAGE_PREFIX:-}"
WHEELHOUSE="$PROJECT_ROOT/build/wheels"
only=()
examples=()
no_cache=()
wheels_only=0
while [ "$#" -gt 0 ]; do
  case "$1" in
    --tag) [ "$#" -ge 2 ] || die "--tag needs a value"; IMAGE_TAG="$2"; shift ;;
    --prefix) [ "$#" -ge 2 ] || die "--prefix needs a value"; IMAGE_PREFIX="$2"; shift ;;
    --only)
      [ "$#" -ge 2 ] || die "--only needs a value"
      case "$2" in
        api|nginx|locust|prometheus|autoscaler) only+=("$2") ;;
        *) die "--only takes api, nginx, locust, prometheus or autoscaler, not '$2'" ;;
      esac
      shift ;;
    --local-base) export USE_LOCAL_BASE=1 ;;
    --no-cache) no_cache=(--no-cache) ;;
    --wheels-only) wheels_only=1 ;;
    --example)
      [ "$#" -ge 2 ] || die "--example needs a value"
      [[ "$2" =~ ^[a-z0-9][a-z0-9-]*$ ]] || die "--example takes a folder name of examples/, not '$2'"
      if [ ! -f "$PROJECT_ROOT/examples/$2/Dockerfile" ] || [ ! -f "$PROJECT_ROOT/examples/$2/requirements.txt" ]; then
        die "--example $2: examples/$2/ has no Dockerfile and requirements.txt"
      fi
      examples+=("$2")
      shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
  shift
done
[ "${#only[@]}" -gt 0 ] || [ "${#examples[@]}" -gt 0 ] || only=(api nginx locust prometheus autoscaler)

# prepare_wheels PART [REQUIREMENTS CONSTRAINTS]: pinned wheels for requirements/PART.txt (or the
# files given) in build/wheels/PART, downloaded again only when the requirements change. The
# platform flags make this work from any host Python or OS.
prepare_wheels() {
  local part="$1" dest="$WHEELHOUSE/$1" stamp want arch
  local requirements="${2:-$PROJECT_ROOT/requirements/$1.txt}"
  local constraints="${3:-$PROJECT_ROOT/requirements/constraints.txt}"
  # The images run on this host's architecture (x86_64 or aarch64 both have manylinux wheels).
  arch="$(uname -m)"
  stamp="$dest/.requirements.sha256"
  want="$(cat "$requirements" "$constraints" | sha256sum | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  log "downloading the pinned wheels for the $part image into ${dest#"$PROJECT_ROOT"/}"
  rm -rf "$dest"
  mkdir -p "$dest"
  if ! "$VENV_PYTHON" -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
      --python-version 3.11 --implementation cp --abi cp311 \
      --platform "manylinux_2_36_$arch" --platform "manylinux_2_28_$arch" \
      --platform "manylinux_2_17_$arch" --platform "manylinux2014_$arch" \
      -r "$requirements" -c "$constraints" \
      -d "$dest" >"$WHEELHOUSE/$part-download.log" 2>&1; then
    tail -n 20 "$WHEELHOUSE/$part-download.log" >&2
    rm -rf "$dest"
    die "pip download for the $part image failed; the whole log is $WHEELHOUSE/$part-download.log"
  fi
  echo "$want" >"$stamp"
}

# build_image NAME DOCKERFILE BASE [DOCKER-BUILD-ARG...]: one docker build from the repository root,
# quiet unless it fails.
build_image() {
  local name="$1" dockerfile="$2" base="$3" image build_log
  shift 3
  image="${IMAGE_PREFIX}penguin-lab/$name:$IMAGE_TAG"
  build_log="$PROJECT_ROOT/build/$name-image.log"
  log "building $image (FROM $base)"
  if ! docker build "${no_cache[@]}" --build-arg "BASE_IMAGE=$base" "$@" -f "$dockerfile" -t "$image" \
      "$PROJECT_ROOT" >"$build_log" 2>&1; then
    tail -n 30 "$build_log" >&2
    die "building $image failed; the whole log is $build_log"
  fi
  log "built $image ($(docker image inspect --format '{{.Size}}' "$image" | awk '{printf "%d MB", $1/1e6}'))"
}

wants() { local item; for item in "${only[@]}"; do [ "$item" = "$1" ] && return 0; done; return 1; }

cd "$PROJECT_ROOT"
mkdir -p build
ensure_venv
wants api && prepare_wheels service
wants locust && prepare_wheels locust
wants autoscaler && prepare_wheels autoscaler
# An example pins its whole set in its own requirements.txt, so it is its own constraint too.
for example in "${examples[@]}"; do
  prepare_wheels "example-$example" "$PROJECT_ROOT/examples/$example/requirements.txt" \
    "$PROJECT_ROOT/examples/$example/requirements.txt"
done
[ "$wheels_only" -eq 1 ] && { log "wheels are ready in ${WHEELHOUSE#"$PROJECT_ROOT"/}"; exit 0; }

ensure_docker_engine
if wants api; then
  ensure_models
  [ -f models/manifest.json ] || die "models/manifest.json is missing after training"
fi
if wants api || wants locust || wants autoscaler || [ "${#examples[@]}" -gt 0 ]; then
  python_base="${PYTHON_BASE_IMAGE:-$(resolve_base "$PYTHON_BASE_DEFAULT")}"
fi
if wants nginx || wants prometheus; then
  nginx_base="${NGINX_BASE_IMAGE:-$(resolve_base "$DEBIAN_BASE_DEFAULT")}"
fi

wants api && build_image api service/Dockerfile "$python_base"
wants nginx && build_image nginx nginx/Dockerfile "$nginx_base"
wants locust && build_image locust locust/Dockerfile "$python_base"
# Debian's Prometheus and exporters: the same plain bookworm base as Nginx.
wants prometheus && build_image prometheus prometheus/Dockerfile "$nginx_base"
# The autoscaler's user joins the group that owns this host's Docker socket (autoscaler/Dockerfile).
if wants autoscaler; then
  build_image autoscaler autoscaler/Dockerfile "$python_base" \
    --build-arg "DOCKER_GID=$(stat -c %g "${DOCKER_SOCKET:-/var/run/docker.sock}")"
fi
for example in "${examples[@]}"; do
  build_image "example-$example" "examples/$example/Dockerfile" "$python_base"
  only+=("example-$example")
done
log "images ready: $(for name in "${only[@]}"; do printf '%spenguin-lab/%s:%s ' "$IMAGE_PREFIX" "$name" "$IMAGE_TAG"; done)"
