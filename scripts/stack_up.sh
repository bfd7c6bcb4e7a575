#!/usr/bin/env bash
# Deploys (or updates) the capacity lab stack on Docker Swarm and waits until it serves.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=scripts/lib/docker.sh
source "$PROJECT_ROOT/scripts/lib/docker.sh"
# shellcheck source=scripts/lib/stack.sh
source "$PROJECT_ROOT/scripts/lib/stack.sh"

usage() {
  cat <<USAGE
Usage: scripts/stack_up.sh [--stack-name NAME] [--no-build] [--timeout SECONDS]
                           [--with-registry-auth] [--public-host HOST]
                           [--autoscale] [--autoscale-from RUN]

Starts the Docker engine and a single-node Swarm when missing, builds the images
(scripts/build_images.sh), deploys stack/docker-stack.yml, waits until every service has all its
replicas running and /ready answers through Nginx, then prints the URLs. Idempotent: running it
again applies changed settings as a rolling update.

  --stack-name NAME     stack name (default: \$STACK_NAME or penguins)
  --no-build            deploy the images as they are (e.g. pulled from a registry)
  --timeout SECONDS     how long to wait for convergence (default: 300)
  --with-registry-auth  multi-node Swarm: send registry credentials to the nodes and resolve
                        image digests in the registry (use with IMAGE_PREFIX)
  --public-host HOST    multi-node Swarm: the address of the node that publishes Nginx's port
                        (default: this machine); used to wait for /ready and in the URLs
  --autoscale           run the autoscaler (autoscaler/README.md): the api follows the traffic
                        between AUTOSCALE_MIN_REPLICAS and AUTOSCALE_MAX_REPLICAS
  --autoscale-from RUN  --autoscale, with AUTOSCALE_TARGET_RPS_PER_REPLICA from a matrix run
                        (results/<run>): 70 % of its knee per replica at API_CPUS / API_MEMORY
  -h, --help            show this help

Knobs (environment, defaults in brackets): API_REPLICAS [2], API_CPUS [1.0], API_MEMORY [512M],
API_CPUS_RESERVATION [0.1], API_MEMORY_RESERVATION [64M], NGINX_PORT [8000],
LOCUST_WEB_PORT [8089], PROMETHEUS_PORT [9090], LOCUST_WORKERS [1], IMAGE_TAG [latest],
IMAGE_PREFIX [], LAB_NETWORK_ACCESS [local: the ports answer this machine only; open: every
network, for a multi-node Swarm], and the rest listed in stack/README.md.

Logins: the Locust web UI and Prometheus want the stack's UI login. The first deploy of a stack
makes a random one, prints it once and keeps it in ~/.config/penguin-lab/STACK.login (mode 0600;
PENGUIN_LAB_CREDENTIALS_DIR moves it). LAB_UI_USER / LAB_UI_PASSWORD bring your own.
USAGE
}

STACK_NAME="${STACK_NAME:-penguins}"
timeout_s=300
build=1
registry=0
public_host=""
autoscale=0
autoscale_run=""
while [ "$#" -gt 0 ]; do
  case "$1" in
    --stack-name) [ "$#" -ge 2 ] || die "--stack-name needs a value"; STACK_NAME="$2"; shift ;;
    --no-build) build=0 ;;
    --timeout) [ "$#" -ge 2 ] || die "--timeout needs a value"; timeout_s="$2"; shift ;;
    --with-registry-auth) registry=1 ;;
    --public-host) [ "$#" -ge 2 ] || die "--public-host needs a value"; public_host="$2"; shift ;;
    --autoscale) autoscale=1 ;;
    --autoscale-from)
      [ "$#" -ge 2 ] || die "--autoscale-from needs a matrix run's directory"
      autoscale=1; autoscale_run="$2"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
  shift
done
[[ "$timeout_s" =~ ^[0-9]+$ ]] || die "--timeout takes whole seconds, not '$timeout_s'"
validate_stack_name "$STACK_NAME"
check_network_access

cd "$PROJECT_ROOT"
ensure_venv
# The autoscaler: off (0 replicas) unless asked for; its target measured by a matrix run or given.
if [ "$autoscale" -eq 1 ]; then
  export AUTOSCALE_ENABLED=true AUTOSCALE_REPLICAS=1
  # An added replica takes traffic only after its first health probe: every 5 s (6 failures,
  # still 30 s, before it is replaced) instead of the idle-cheap 20 s, at 2.1 ms/s more per
  # replica (stack/README.md, "What an idle replica costs").
  export API_HEALTH_INTERVAL="${API_HEALTH_INTERVAL:-5s}" API_HEALTH_RETRIES="${API_HEALTH_RETRIES:-6}"
  if [ -n "$autoscale_run" ]; then
    AUTOSCALE_TARGET_RPS_PER_REPLICA="$("$VENV_PYTHON" -m autoscaler.from_run "$autoscale_run" \
      --cpus "${API_CPUS:-1.0}" --memory "${API_MEMORY:-512M}")" || die "--autoscale-from: see above"
    export AUTOSCALE_TARGET_RPS_PER_REPLICA
  fi
  log "autoscaler on${AUTOSCALE_TARGET_RPS_PER_REPLICA:+, target $AUTOSCALE_TARGET_RPS_PER_REPLICA req/s per replica}"
else
  export AUTOSCALE_ENABLED=false AUTOSCALE_REPLICAS=0
fi
ensure_docker_engine
ensure_swarm
[ "$build" -eq 1 ] && "$PROJECT_ROOT/scripts/build_images.sh"

export STACK_NAME
export NGINX_PORT="${NGINX_PORT:-8000}" LOCUST_WEB_PORT="${LOCUST_WEB_PORT:-8089}"
export PROMETHEUS_PORT="${PROMETHEUS_PORT:-9090}"
# Before the deploy, so the ports are never open to the network, not even for a moment.
if engine_is_local; then
  publish_ports "$STACK_NAME" "$NGINX_PORT" "$LOCUST_WEB_PORT" "$PROMETHEUS_PORT"
fi
export API_REPLICAS="${API_REPLICAS:-2}"
# Swarm rejects a reservation above its limit: with a tiny limit (say API_CPUS=0.05), the default
# reservation follows the limit down instead of failing the deploy.
if [ -z "${API_CPUS_RESERVATION:-}" ]; then
  API_CPUS_RESERVATION="$(awk -v limit="${API_CPUS:-1.0}" 'BEGIN { print (limit + 0 < 0.1) ? limit : 0.1 }')"
  export API_CPUS_RESERVATION
fi
if [ -z "${API_MEMORY_RESERVATION:-}" ]; then
  API_MEMORY_RESERVATION=64M
  limit_bytes="$(stackctl memory-bytes "${API_MEMORY:-512M}")" || die "API_MEMORY: see above"
  if [ "$limit_bytes" -gt 0 ] && [ "$limit_bytes" -lt "$(stackctl memory-bytes 64M)" ]; then
    API_MEMORY_RESERVATION="$API_MEMORY"
  fi
  export API_MEMORY_RESERVATION
fi
# Swarm configs are immutable; a content hash in the name turns an edit into a new config.
NGINX_TEMPLATE_VERSION="$(sha256sum nginx/nginx.conf.template | cut -c1-12)"
PROMETHEUS_TEMPLATE_VERSION="$(sha256sum prometheus/prometheus.yml.template | cut -c1-12)"
PROMETHEUS_CONSOLE_VERSION="$(sha256sum prometheus/consoles/penguins.html | cut -c1-12)"
export NGINX_TEMPLATE_VERSION PROMETHEUS_TEMPLATE_VERSION PROMETHEUS_CONSOLE_VERSION

# Locally built images keep their tag across rebuilds and Swarm does not look at what a tag points
# to: with each image's ID in a container label, a rebuilt image rolls the services that use it.
for name in api nginx locust prometheus autoscaler; do
  image_id="$(docker image inspect --format '{{.Id}}' \
    "${IMAGE_PREFIX:-}penguin-lab/$name:${IMAGE_TAG:-latest}" 2>/dev/null || true)"
  export "${name^^}_IMAGE_ID=${image_id#sha256:}"
done

# The UI login as Swarm secrets (scripts/lib/stack.sh): exports LAB_UI_USER,
# LAB_UI_PASSWORD_SECRET and PROMETHEUS_WEB_CONFIG_SECRET for the stack file.
ensure_ui_login_secrets "$STACK_NAME" "${IMAGE_PREFIX:-}penguin-lab/prometheus:${IMAGE_TAG:-latest}"

deploy_args=(--compose-file stack/docker-stack.yml --prune)
if [ "$registry" -eq 1 ]; then
  deploy_args+=(--with-registry-auth --resolve-image always)
else
  # Locally built images have no registry digest; asking a registry would only warn and slow down.
  deploy_args+=(--resolve-image never)
fi
log "deploying stack $STACK_NAME (api replicas $API_REPLICAS, Nginx on port $NGINX_PORT)"
deploy_log="$(mktemp)"
trap 'rm -f "$deploy_log"' EXIT
if ! docker stack deploy "${deploy_args[@]}" "$STACK_NAME" >"$deploy_log" 2>&1; then
  cat "$deploy_log" >&2
  die "docker stack deploy failed"
fi

stackctl wait-converged "$STACK_NAME" "$timeout_s"
stackctl wait-ready "$STACK_NAME" "http://${public_host:-127.0.0.1}:$NGINX_PORT/ready" "$timeout_s"
url_host="${public_host:-localhost}"

cat <<URLS
Stack $STACK_NAME is up:
  API (through Nginx)  http://$url_host:$NGINX_PORT/predict
  API docs             http://$url_host:$NGINX_PORT/docs
  Locust web UI        http://$url_host:$LOCUST_WEB_PORT  (login below)
  Live console         http://$url_host:$PROMETHEUS_PORT/consoles/penguins.html  (login below)
  Prometheus           http://$url_host:$PROMETHEUS_PORT
  Login                user $LAB_UI_USER, password in $UI_LOGIN_FILE
  Scale                docker service scale ${STACK_NAME}_api=N
  Remove               scripts/stack_down.sh --stack-name $STACK_NAME
  Reachable from       $(network_is_local && echo "this machine only (LAB_NETWORK_ACCESS=local)" || echo "every network (LAB_NETWORK_ACCESS=open)")
URLS
