#!/usr/bin/env bash
# The api container's health check: GET /ready on the local Gunicorn.
#   200                                   healthy
#   any other answer, or connection refused   unhealthy (not ready, or nothing listening)
#   no answer within PENGUIN_HEALTH_WAIT s    healthy, but busy: reported on stdout
# Why a slow answer counts as healthy: one Uvicorn worker serves its requests one after another,
# so under overload the probe's request waits behind the queue (seconds without Nginx's admission
# limit) and a strict probe would get an overloaded replica replaced exactly when its capacity is
# needed. A hung worker is not left alone: Gunicorn restarts a worker that stops reporting for
# PENGUIN_TIMEOUT seconds. Bash's /dev/tcp rather than Python: the probe runs inside the CPU
# quota, where a Python start-up (~40 ms of CPU) could take seconds at 0.1 CPU.
set -euo pipefail

if [ "${1:-}" = --ask ]; then
  # The request itself; the caller bounds it in time (a full backlog can stall even the connect).
  bind="${PENGUIN_BIND:-0.0.0.0:8000}"
  # A server that closes early must leave a reason in the health log: ignore SIGPIPE so a write
  # to a closed socket fails with a message (Bash writes the request a line at a time).
  trap '' PIPE
  exec 3<>"/dev/tcp/127.0.0.1/${bind##*:}"
  printf 'GET /ready HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
  if ! read -r status <&3; then
    printf 'unhealthy: /ready closed the connection without an answer\n'
    exit 1
  fi
  [[ "$status" == *" 200 "* ]] && exit 0
  printf 'unhealthy: /ready answered %s\n' "${status%$'\r'}"
  exit 1
fi

wait_s="${PENGUIN_HEALTH_WAIT:-3}"
status=0
timeout "$wait_s" "$0" --ask 2>&1 || status=$?
case "$status" in
  0) exit 0 ;;
  124) printf 'busy: no answer from /ready within %ss (overloaded, still serving)\n' "$wait_s" ;;
  *) exit 1 ;;
esac
