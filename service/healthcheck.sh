#!/usr/bin/env bash
# The api container's health check: GET /ready on the local Gunicorn, healthy on 200.
# Bash's /dev/tcp rather than Python: the probe runs inside the container's CPU quota, and under
# load a Python start-up (~40 ms of CPU) could take seconds at 0.1 CPU, so an overloaded replica
# failed its probe and was replaced exactly when its capacity was needed.
set -euo pipefail
bind="${PENGUIN_BIND:-0.0.0.0:8000}"
exec 3<>"/dev/tcp/127.0.0.1/${bind##*:}"
printf 'GET /ready HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
read -r -t 4 status <&3
[[ "$status" == *" 200 "* ]]
