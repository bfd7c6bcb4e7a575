#!/usr/bin/env bash
# Entry point of the penguin-lab/prometheus image: Prometheus itself or one of the two exporters
# the stack runs from the same image.
set -euo pipefail

usage() {
  cat <<USAGE
Usage: entrypoint.sh [prometheus|nginx-exporter|node-exporter|render|healthcheck|--help]

  prometheus      (default) render the configuration template, then run Prometheus
  nginx-exporter  Debian's prometheus-nginx-exporter on Nginx's internal stub_status page
  node-exporter   Debian's prometheus-node-exporter (host /proc and /sys mounted under /host)
  render          only write \$PROMETHEUS_RUNTIME_DIR/prometheus.yml from the template
  healthcheck     exit 0 when Prometheus answers /-/ready (with the UI login when there is one)

Environment (defaults in brackets):
  PROMETHEUS_SCRAPE_INTERVAL [$PROMETHEUS_SCRAPE_INTERVAL]  api, Nginx and Locust scrapes and DNS refresh
  PROMETHEUS_NODE_SCRAPE_INTERVAL [$PROMETHEUS_NODE_SCRAPE_INTERVAL]
  PROMETHEUS_RETENTION [$PROMETHEUS_RETENTION]  how long samples are kept
  PROMETHEUS_DATA_DIR [$PROMETHEUS_DATA_DIR]
  PROMETHEUS_WEB_CONFIG_FILE [$PROMETHEUS_WEB_CONFIG_FILE]  basic-auth users (bcrypt); empty: no login
  PROMETHEUS_UI_USER [$PROMETHEUS_UI_USER], PROMETHEUS_UI_PASSWORD_FILE [$PROMETHEUS_UI_PASSWORD_FILE]
  PROMETHEUS_API_HOST [$PROMETHEUS_API_HOST], PROMETHEUS_API_PORT [$PROMETHEUS_API_PORT],
  PROMETHEUS_NGINX_EXPORTER_HOST, PROMETHEUS_LOCUST_HOST, PROMETHEUS_LOCUST_PORT,
  PROMETHEUS_NODE_EXPORTER_HOST, PROMETHEUS_AUTOSCALER_HOST: the DNS names (one A record per
  task) of the scrape targets
  NGINX_STATUS_URL [$NGINX_STATUS_URL]  (nginx-exporter)
USAGE
}

log() { printf '[%s] entrypoint: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[%s] entrypoint: error: %s\n' "$(date +%H:%M:%S)" "$*" >&2; exit 1; }

: "${PROMETHEUS_TEMPLATE:=/etc/penguin-prometheus/prometheus.yml.template}"
: "${PROMETHEUS_RUNTIME_DIR:=/run/penguin-prometheus}"
: "${PROMETHEUS_CONSOLES:=/etc/penguin-prometheus/consoles}"
: "${PROMETHEUS_CONSOLE_LIBRARIES:=/etc/penguin-prometheus/consoles}"
: "${PROMETHEUS_DATA_DIR:=/prometheus}"
: "${PROMETHEUS_LISTEN:=:9090}"
: "${PROMETHEUS_RETENTION:=6h}"
: "${PROMETHEUS_WEB_CONFIG_FILE:=}"
: "${PROMETHEUS_UI_USER:=penguin}"
: "${PROMETHEUS_UI_PASSWORD_FILE:=}"
: "${PROMETHEUS_SCRAPE_INTERVAL:=1s}"
: "${PROMETHEUS_NODE_SCRAPE_INTERVAL:=5s}"
: "${PROMETHEUS_API_HOST:=api}"
: "${PROMETHEUS_API_PORT:=8000}"
: "${PROMETHEUS_NGINX_EXPORTER_HOST:=nginx-exporter}"
: "${PROMETHEUS_LOCUST_HOST:=locust-master}"
: "${PROMETHEUS_LOCUST_PORT:=8089}"
: "${PROMETHEUS_NODE_EXPORTER_HOST:=node-exporter}"
: "${PROMETHEUS_AUTOSCALER_HOST:=autoscaler}"
: "${NGINX_STATUS_URL:=http://nginx:8081/nginx_status}"
: "${NGINX_EXPORTER_LISTEN:=:9113}"
: "${NODE_EXPORTER_LISTEN:=:9100}"
: "${NODE_EXPORTER_ROOT:=/host}"

render() {
  [ -r "$PROMETHEUS_TEMPLATE" ] || die "cannot read the template $PROMETHEUS_TEMPLATE"
  mkdir -p "$PROMETHEUS_RUNTIME_DIR"
  # A scrape may not outlast its interval; a timeout equal to it is the most forgiving.
  : "${PROMETHEUS_SCRAPE_TIMEOUT:=$PROMETHEUS_SCRAPE_INTERVAL}"
  if [ -z "$PROMETHEUS_UI_PASSWORD_FILE" ]; then
    # No login configured: scrape with an empty password, which a server without a login ignores.
    PROMETHEUS_UI_PASSWORD_FILE="$PROMETHEUS_RUNTIME_DIR/no-password"
    : >"$PROMETHEUS_UI_PASSWORD_FILE"
  fi
  export PROMETHEUS_SCRAPE_INTERVAL PROMETHEUS_SCRAPE_TIMEOUT PROMETHEUS_NODE_SCRAPE_INTERVAL \
    PROMETHEUS_API_HOST PROMETHEUS_API_PORT PROMETHEUS_NGINX_EXPORTER_HOST PROMETHEUS_LOCUST_HOST \
    PROMETHEUS_LOCUST_PORT PROMETHEUS_NODE_EXPORTER_HOST PROMETHEUS_UI_USER PROMETHEUS_UI_PASSWORD_FILE
  export PROMETHEUS_AUTOSCALER_HOST
  local out="$PROMETHEUS_RUNTIME_DIR/prometheus.yml"
  # shellcheck disable=SC2016  # envsubst wants the literal ${NAME}s
  envsubst "$(compgen -v PROMETHEUS_ | sed 's/.*/${&}/' | tr '\n' ' ')" <"$PROMETHEUS_TEMPLATE" >"$out.tmp"
  local unknown
  unknown="$(grep -oE '[$][{]PROMETHEUS_[A-Z_]*[}]' "$out.tmp" | sort -u | tr '\n' ' ' || true)"
  [ -z "$unknown" ] || { rm -f "$out.tmp"; die "unknown placeholders in $PROMETHEUS_TEMPLATE: $unknown"; }
  mv "$out.tmp" "$out"
}

run_prometheus() {
  render
  local args=(
    --config.file="$PROMETHEUS_RUNTIME_DIR/prometheus.yml"
    --storage.tsdb.path="$PROMETHEUS_DATA_DIR"
    --storage.tsdb.retention.time="$PROMETHEUS_RETENTION"
    --web.listen-address="$PROMETHEUS_LISTEN"
    --web.console.templates="$PROMETHEUS_CONSOLES"
    --web.console.libraries="$PROMETHEUS_CONSOLE_LIBRARIES"
  )
  # No --web.enable-lifecycle: /-/quit and /-/reload would let anyone with the UI login stop
  # Prometheus; a changed configuration arrives as a new Swarm config, which restarts the task.
  if [ -n "$PROMETHEUS_WEB_CONFIG_FILE" ]; then
    [ -r "$PROMETHEUS_WEB_CONFIG_FILE" ] || die "cannot read PROMETHEUS_WEB_CONFIG_FILE=$PROMETHEUS_WEB_CONFIG_FILE"
    args+=(--web.config.file="$PROMETHEUS_WEB_CONFIG_FILE")
  fi
  log "scraping every $PROMETHEUS_SCRAPE_INTERVAL, keeping $PROMETHEUS_RETENTION"
  exec prometheus "${args[@]}"
}

healthcheck() {
  local url="http://127.0.0.1:${PROMETHEUS_LISTEN##*:}/-/ready"
  if [ -n "$PROMETHEUS_WEB_CONFIG_FILE" ] && [ -r "$PROMETHEUS_UI_PASSWORD_FILE" ]; then
    # curl reads the login from a config on stdin, so the password never shows in `ps`.
    printf 'user = "%s:%s"\n' "$PROMETHEUS_UI_USER" "$(cat "$PROMETHEUS_UI_PASSWORD_FILE")" \
      | curl -fsS -o /dev/null --config - "$url"
  else
    curl -fsS -o /dev/null "$url"
  fi
}

case "${1:-prometheus}" in
  prometheus) run_prometheus ;;
  nginx-exporter)
    exec prometheus-nginx-exporter -nginx.scrape-uri="$NGINX_STATUS_URL" \
      -web.listen-address="$NGINX_EXPORTER_LISTEN" -nginx.retries=1000 -nginx.retry-interval=2s ;;
  node-exporter)
    exec prometheus-node-exporter --web.listen-address="$NODE_EXPORTER_LISTEN" \
      --path.procfs="$NODE_EXPORTER_ROOT/proc" --path.sysfs="$NODE_EXPORTER_ROOT/sys" \
      --collector.disable-defaults --collector.cpu --collector.meminfo --collector.loadavg \
      --collector.netdev --collector.pressure --collector.stat ;;
  render) render ;;
  healthcheck) healthcheck ;;
  -h|--help) usage ;;
  *) usage >&2; die "unknown command: $1" ;;
esac
