#!/usr/bin/env bash
# Nginx container entry point: renders the configuration template, writes the upstream server list
# from the api service's DNS records and keeps it current while Nginx runs.
#
# Why a loop: Swarm services here use endpoint_mode dnsrr (no IPVS, so no VIP), so the api name
# resolves to one A record per task, and Debian bookworm's nginx 1.22 resolves upstream names only
# at start-up (`server ... resolve` needs open-source nginx >= 1.27.3). Every
# NGINX_RESOLVE_INTERVAL seconds we resolve again and, when the set changed, rewrite the include
# file and `nginx -s reload`, which is graceful: old workers finish their requests.
set -euo pipefail

usage() {
  cat <<USAGE
Usage: entrypoint.sh [run|render|write-upstreams|--help]

  run              (default) render, resolve, start Nginx in the foreground and keep the
                   upstream list current until SIGTERM/SIGINT (then a graceful quit)
  render           only write \$NGINX_RUNTIME_DIR/nginx.conf from the template
  write-upstreams  only write \$NGINX_RUNTIME_DIR/upstream-servers.conf once

Environment (defaults in brackets):
  NGINX_TEMPLATE [$NGINX_TEMPLATE]
  NGINX_RUNTIME_DIR [$NGINX_RUNTIME_DIR]   pid, temp files, rendered config
  NGINX_UPSTREAM_HOST [$NGINX_UPSTREAM_HOST]   DNS name with one A record per api task
  NGINX_UPSTREAM_PORT [$NGINX_UPSTREAM_PORT]
  NGINX_UPSTREAM_SERVERS   static "host:port ..." list instead of DNS (plain hosts)
  NGINX_UPSTREAM_SERVERS_FILE  file of "host:port" lines, re-read like DNS (tests, plain hosts)
  NGINX_RESOLVE_INTERVAL [$NGINX_RESOLVE_INTERVAL] seconds
  NGINX_MAX_FAILS [$NGINX_MAX_FAILS], NGINX_FAIL_TIMEOUT [$NGINX_FAIL_TIMEOUT]
  NGINX_UPSTREAM_MAX_CONNS [$NGINX_UPSTREAM_MAX_CONNS]   admission limit: requests in flight per
                   api server (max_conns); beyond it on every server, 503 + Retry-After; 0 = off
  NGINX_WORKER_RLIMIT_NOFILE [2 x NGINX_WORKER_CONNECTIONS, capped at the hard limit]
  NGINX_GLOBAL_DIRECTIVES [$NGINX_GLOBAL_DIRECTIVES]
  and every \${NGINX_*} placeholder of the template (see TEMPLATE_DEFAULTS in this script).
USAGE
}

log() { printf '[%s] entrypoint: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[%s] entrypoint: error: %s\n' "$(date +%H:%M:%S)" "$*" >&2; exit 1; }

: "${NGINX_TEMPLATE:=/etc/penguin-nginx/nginx.conf.template}"
: "${NGINX_RUNTIME_DIR:=/run/penguin-nginx}"
: "${NGINX_UPSTREAM_HOST:=api}"
: "${NGINX_UPSTREAM_PORT:=8000}"
: "${NGINX_UPSTREAM_SERVERS:=}"
: "${NGINX_UPSTREAM_SERVERS_FILE:=}"
: "${NGINX_RESOLVE_INTERVAL:=2}"
# One failure takes a replica out for NGINX_FAIL_TIMEOUT: a killed task is skipped at once.
: "${NGINX_MAX_FAILS:=1}"
: "${NGINX_FAIL_TIMEOUT:=5s}"
: "${NGINX_GLOBAL_DIRECTIVES:=daemon off;}"
# Admission control: at most this many requests in flight per api server, across all workers
# (the template's upstream zone). The stack sets it from API_MAX_INFLIGHT; 0 means no limit.
: "${NGINX_UPSTREAM_MAX_CONNS:=0}"

# Placeholders of the template and their defaults; the environment overrides each one.
TEMPLATE_DEFAULTS=(
  NGINX_WORKER_PROCESSES=auto
  # Per worker. 10 000 clients, each with a request in flight, take 10 000 client and up to as
  # many upstream connections; accepting is not evenly spread over workers, so one worker alone
  # must be able to hold every client with room to spare.
  NGINX_WORKER_CONNECTIONS=16384
  NGINX_LISTEN_BACKLOG=16384
  NGINX_ERROR_LOG_LEVEL=warn
  NGINX_PROXY_ERROR_LOG_LEVEL=crit
  NGINX_ACCESS_LOG=/dev/stdout
  NGINX_LISTEN_PORT=8000
  NGINX_STATUS_PORT=8081
  NGINX_CLIENT_MAX_BODY_SIZE=1m
  NGINX_CLIENT_BODY_TIMEOUT=10s
  NGINX_CLIENT_KEEPALIVE_TIMEOUT=65s
  NGINX_PROXY_CONNECT_TIMEOUT=2s
  NGINX_PROXY_READ_TIMEOUT=30s
  NGINX_UPSTREAM_KEEPALIVE=64
  NGINX_UPSTREAM_KEEPALIVE_TIMEOUT=30s
  # Shared state of the upstream servers (max_conns counts, failures): a few hundred bytes each.
  NGINX_UPSTREAM_ZONE_SIZE=256k
  # Seconds a refused client is told to wait (503 + Retry-After) before it tries again.
  NGINX_RETRY_AFTER=1
)

[[ "$NGINX_UPSTREAM_MAX_CONNS" =~ ^[0-9]+$ ]] \
  || die "NGINX_UPSTREAM_MAX_CONNS must be a whole number (0 = no limit), not '$NGINX_UPSTREAM_MAX_CONNS'"

conf_file() { printf '%s/nginx.conf\n' "$NGINX_RUNTIME_DIR"; }
upstream_file() { printf '%s/upstream-servers.conf\n' "$NGINX_RUNTIME_DIR"; }

prepare_runtime_dir() {
  mkdir -p "$NGINX_RUNTIME_DIR"/{client_body,proxy,fastcgi,uwsgi,scgi}
}

# default_rlimit_nofile: one descriptor per connection, twice worker_connections for log files,
# listeners and slack; capped at the hard limit, which a non-root master cannot raise (it comes
# from the engine: default-ulimits in daemon.json, set by scripts/lib/docker.sh).
default_rlimit_nofile() {
  local want hard
  want=$((2 * NGINX_WORKER_CONNECTIONS))
  hard="$(ulimit -Hn)"
  if [ "$hard" != unlimited ] && [ "$want" -gt "$hard" ]; then
    log "warning: open-file hard limit $hard < $want wanted for $NGINX_WORKER_CONNECTIONS" \
      "worker_connections; raise the engine's default-ulimits (nofile)"
    want="$hard"
  fi
  printf '%s\n' "$want"
}

render() {
  [ -r "$NGINX_TEMPLATE" ] || die "cannot read the template $NGINX_TEMPLATE"
  prepare_runtime_dir
  local entry name names=(NGINX_RUNTIME_DIR NGINX_WORKER_RLIMIT_NOFILE)
  for entry in "${TEMPLATE_DEFAULTS[@]}"; do
    name="${entry%%=*}"
    export "$name=${!name:-${entry#*=}}"
    names+=("$name")
  done
  : "${NGINX_WORKER_RLIMIT_NOFILE:=$(default_rlimit_nofile)}"
  export NGINX_RUNTIME_DIR NGINX_WORKER_RLIMIT_NOFILE
  # envsubst replaces only the variables named here, so nginx's own ($host, $status, ...) stay.
  # shellcheck disable=SC2016  # the single quotes are meant: envsubst wants literal ${NAME}s
  envsubst "$(printf '${%s} ' "${names[@]}")" <"$NGINX_TEMPLATE" >"$(conf_file).tmp"
  # A placeholder we do not know would reach nginx as a literal and fail obscurely later.
  local unknown
  unknown="$(grep -oE '[$][{]NGINX_[A-Z_]*[}]' "$(conf_file).tmp" | sort -u | tr '\n' ' ' || true)"
  [ -z "$unknown" ] || { rm -f "$(conf_file).tmp"; die "unknown placeholders in $NGINX_TEMPLATE: $unknown"; }
  mv "$(conf_file).tmp" "$(conf_file)"
}

# current_servers: prints the sorted "host:port" list of upstream servers, one a line.
current_servers() {
  if [ -n "$NGINX_UPSTREAM_SERVERS_FILE" ]; then
    { cat "$NGINX_UPSTREAM_SERVERS_FILE" 2>/dev/null || true; } | tr ', ' '\n' | sed '/^$/d' | sort -u
    return 0
  fi
  if [ -n "$NGINX_UPSTREAM_SERVERS" ]; then
    tr ', ' '\n' <<<"$NGINX_UPSTREAM_SERVERS" | sed '/^$/d' | sort -u
    return 0
  fi
  # No answer (no task running yet, DNS hiccup) means an empty set, never a crash.
  { getent ahostsv4 "$NGINX_UPSTREAM_HOST" || true; } | awk -v port="$NGINX_UPSTREAM_PORT" '{print $1 ":" port}' | sort -u
}

# write_upstreams SERVERS: writes the include file; a placeholder keeps the upstream block valid.
write_upstreams() {
  local servers="$1" file tmp
  file="$(upstream_file)"
  tmp="$file.tmp"
  {
    if [ -n "$NGINX_UPSTREAM_SERVERS_FILE" ]; then
      echo "# Written by entrypoint.sh from $NGINX_UPSTREAM_SERVERS_FILE; do not edit."
    elif [ -n "$NGINX_UPSTREAM_SERVERS" ]; then
      echo "# Written by entrypoint.sh from NGINX_UPSTREAM_SERVERS; do not edit."
    else
      echo "# Written by entrypoint.sh from the DNS name $NGINX_UPSTREAM_HOST; do not edit."
    fi
    if [ -z "$servers" ]; then
      echo "server 127.0.0.1:1 down;  # no api task resolved yet"
    else
      local limit=""
      [ "$NGINX_UPSTREAM_MAX_CONNS" -gt 0 ] && limit=" max_conns=$NGINX_UPSTREAM_MAX_CONNS"
      while IFS= read -r server; do
        echo "server $server max_fails=$NGINX_MAX_FAILS fail_timeout=$NGINX_FAIL_TIMEOUT$limit;"
      done <<<"$servers"
    fi
  } >"$tmp"
  mv "$tmp" "$file"
}

nginx_cmd() { nginx -e stderr -c "$(conf_file)" "$@"; }

nginx_pid=""
stop_nginx() {
  log "stopping Nginx gracefully"
  if [ -n "$nginx_pid" ]; then
    kill -QUIT "$nginx_pid" 2>/dev/null || true
    wait "$nginx_pid" 2>/dev/null || true
  fi
  exit 0
}

run() {
  render
  local servers new
  servers="$(current_servers)"
  write_upstreams "$servers"
  nginx_cmd -t -q || die "the rendered configuration $(conf_file) is invalid"
  log "upstreams: $(tr '\n' ' ' <<<"${servers:-none}")"
  # nginx itself in the background (not a function, which would fork a subshell): $! is the
  # master, whose exit we wait for and whom SIGQUIT stops gracefully.
  nginx -e stderr -c "$(conf_file)" -g "$NGINX_GLOBAL_DIRECTIVES" &
  nginx_pid=$!
  trap stop_nginx TERM INT
  while kill -0 "$nginx_pid" 2>/dev/null; do
    # Sleep in the background so a SIGTERM is handled at once, not after the sleep.
    sleep "$NGINX_RESOLVE_INTERVAL" &
    wait $! || true
    new="$(current_servers)"
    if [ "$new" != "$servers" ]; then
      write_upstreams "$new"
      if nginx_cmd -t -q 2>/dev/null; then
        nginx_cmd -s reload
        log "upstreams changed, reloaded: $(tr '\n' ' ' <<<"${new:-none}")"
        servers="$new"
      else
        log "upstream list rejected by nginx -t; keeping the previous one"
        write_upstreams "$servers"
      fi
    fi
  done
  wait "$nginx_pid"
}

case "${1:-run}" in
  run) run ;;
  render) render ;;
  write-upstreams) prepare_runtime_dir; write_upstreams "$(current_servers)" ;;
  -h|--help) usage ;;
  *) usage >&2; die "unknown command: $1" ;;
esac
