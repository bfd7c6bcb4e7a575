#!/usr/bin/env bash
# Benchmarks one API replica as the containers run it (Gunicorn master + one Uvicorn worker),
# pinned to one core, against the server stack's own ceiling: a bare ASGI app with a fixed JSON
# answer (service/ceiling.py), run by the same Gunicorn config and worker, on the same core, in
# the same run. Three regimes, each as a ratio to the bare app measured in the same run:
#   - saturated: wrk in interleaved rounds, from the server's own core ("same core", judged) and
#     from another core ("apart"): requests/s, p50/p99, CPU and wake-up interrupts per request;
#   - paced: open-model arrivals at a few rates (default 100 and 400 req/s) over a few
#     kept-alive connections, so requests mostly arrive alone: CPU per request;
#   - idle: CPU per second of each server with no request at all;
#   - spaced: one GET /metrics (a scrape), then one GET /health, every 50 ms over one kept-alive
#     connection: the replica's CPU per request, its idle rate removed.
# Then the replica's memory (summed PSS and RSS) and PASS/FAIL per target:
#   - POST /predict costs at most 2.5x the bare ceiling's CPU per request (>= 40 % of its
#     requests per CPU-second), for every model, saturated with wrk on the server's core;
#   - at the first paced rate /predict costs at most 1.15x the bare app's CPU per request;
#   - the replica stays under 110 MB summed PSS after serving the load (fits a 128 MB limit).
# The logic beyond starting servers and wrk lives in service/benchmark.py. Why two saturated
# layouts, and why the same-core one is judged: service/README.md, "Performance".
# With --stack-idle it measures instead an idle api replica of the stack scripts/stack_up.sh
# deployed, from its cgroup, split into scrapes, health probe and the rest (service/stack_idle.py),
# and judges it against at most 2.5 ms of CPU per second and 0.5 ms per scrape.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() {
  cat <<USAGE
Usage: scripts/bench_service.sh [--duration SECONDS] [--rounds N] [--connections N] [--server-core N]
                                [--wrk-core N] [--port N] [--rates R,R...] [--paced-seconds SECONDS]
                                [--paced-rounds N] [--paced-connections N] [--idle-seconds SECONDS]
                                [--spaced-seconds SECONDS]
       scripts/bench_service.sh --stack-idle [--stack-name NAME] [--stack-seconds SECONDS]

  --duration SECONDS   total wrk time per endpoint, split over the rounds (default 20)
  --rounds N           interleaved rounds over all endpoints (default 5)
  --connections N      concurrent wrk connections (default 32)
  --server-core N      core the server is pinned to with taskset (default 0)
  --wrk-core N         the "apart" layout's wrk core (default: the next core; none on a
                       one-core machine). The "same core" layout always runs and is judged.
  --port N             loopback port (default: a free one)
  --rates R,R...       paced arrival rates in req/s (default 100,400); the first is judged
  --paced-seconds S    seconds per target, rate and paced round (default 5)
  --paced-rounds N     interleaved paced rounds (default 2)
  --paced-connections N  kept-alive connections of the paced client (default 4)
  --idle-seconds S     the idle window (default 10)
  --spaced-seconds S   seconds of spaced GETs (/metrics, /health) per paced round (default 5)
  --stack-idle         only measure an idle api replica of the deployed stack (no local servers):
                       its cgroup's CPU as deployed, with Prometheus paused, and per probe run
  --stack-name NAME    the stack --stack-idle measures (default: \$STACK_NAME or penguins)
  --stack-seconds S    each --stack-idle window (default 30)
  -h, --help           show this help

Exit status 1 when a target fails. Figures vary with the machine and its other load.
USAGE
}

PREDICT_RATIO_TARGET=0.40
PACED_RATIO_TARGET=1.15
PSS_LIMIT_MB=110

duration=20
rounds=5
connections=32
server_core=0
wrk_core=""
port=""
rates_csv="100,400"
paced_seconds=5
paced_rounds=2
paced_connections=4
idle_seconds=10
spaced_seconds=5
stack_idle=0
stack_name="${STACK_NAME:-penguins}"
stack_seconds=30
while [ "$#" -gt 0 ]; do
  case "$1" in
    --duration) [ "$#" -ge 2 ] || die "--duration needs a value"; duration="$2"; shift ;;
    --rounds) [ "$#" -ge 2 ] || die "--rounds needs a value"; rounds="$2"; shift ;;
    --connections) [ "$#" -ge 2 ] || die "--connections needs a value"; connections="$2"; shift ;;
    --server-core) [ "$#" -ge 2 ] || die "--server-core needs a value"; server_core="$2"; shift ;;
    --wrk-core) [ "$#" -ge 2 ] || die "--wrk-core needs a value"; wrk_core="$2"; shift ;;
    --port) [ "$#" -ge 2 ] || die "--port needs a value"; port="$2"; shift ;;
    --rates) [ "$#" -ge 2 ] || die "--rates needs a value"; rates_csv="$2"; shift ;;
    --paced-seconds) [ "$#" -ge 2 ] || die "--paced-seconds needs a value"; paced_seconds="$2"; shift ;;
    --paced-rounds) [ "$#" -ge 2 ] || die "--paced-rounds needs a value"; paced_rounds="$2"; shift ;;
    --paced-connections) [ "$#" -ge 2 ] || die "--paced-connections needs a value"; paced_connections="$2"; shift ;;
    --idle-seconds) [ "$#" -ge 2 ] || die "--idle-seconds needs a value"; idle_seconds="$2"; shift ;;
    --spaced-seconds) [ "$#" -ge 2 ] || die "--spaced-seconds needs a value"; spaced_seconds="$2"; shift ;;
    --stack-idle) stack_idle=1 ;;
    --stack-name) [ "$#" -ge 2 ] || die "--stack-name needs a value"; stack_name="$2"; shift ;;
    --stack-seconds) [ "$#" -ge 2 ] || die "--stack-seconds needs a value"; stack_seconds="$2"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
  shift
done

if [ "$stack_idle" -eq 1 ]; then
  if ! [[ "$stack_seconds" =~ ^[1-9][0-9]*$ ]]; then
    die "--stack-seconds takes a positive integer, got '$stack_seconds'"
  fi
  cd "$PROJECT_ROOT"
  ensure_venv
  exec "$VENV_PYTHON" -m service.stack_idle --stack "$stack_name" --seconds "$stack_seconds"
fi

IFS=, read -r -a rates <<<"$rates_csv"
[ "${#rates[@]}" -ge 1 ] || die "--rates needs at least one rate"
for value in "$duration" "$rounds" "$connections" "$server_core" ${wrk_core:+"$wrk_core"} ${port:+"$port"} \
    "${rates[@]}" "$paced_seconds" "$paced_rounds" "$paced_connections" "$idle_seconds" "$spaced_seconds"; do
  [[ "$value" =~ ^[0-9]+$ ]] || die "options take non-negative integers, got '$value'"
done
for value in "$duration" "$rounds" "$connections" "${rates[@]}" "$paced_seconds" "$paced_rounds" \
    "$paced_connections" "$idle_seconds" "$spaced_seconds"; do
  [ "$value" -ge 1 ] || die "--duration, --rounds, --connections and the paced and idle options must be >= 1"
done
cores="$(nproc)"
[ "$server_core" -lt "$cores" ] || die "--server-core $server_core: this machine has $cores cores"
if [ -z "$wrk_core" ] && [ "$cores" -gt 1 ]; then wrk_core=$(( (server_core + 1) % cores )); fi
if [ -n "$wrk_core" ]; then
  [ "$wrk_core" -lt "$cores" ] || die "--wrk-core $wrk_core: this machine has $cores cores"
  [ "$wrk_core" -ne "$server_core" ] || die "--wrk-core must differ from --server-core (the same-core layout always runs)"
fi
# The paced client runs apart from the server when it can, as Nginx or a client would.
client_core="${wrk_core:-$server_core}"
# layout name -> wrk's core
layouts=("same")
layout_cores=("$server_core")
if [ -n "$wrk_core" ]; then
  layouts+=("apart")
  layout_cores+=("$wrk_core")
fi

cd "$PROJECT_ROOT"
ensure_venv
ensure_models
command -v wrk >/dev/null 2>&1 || apt_install wrk
command -v taskset >/dev/null 2>&1 || apt_install util-linux
free_port() {
  "$VENV_PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
[ -n "$port" ] || port="$(free_port)"
ceiling_port="$(free_port)"
[ "$ceiling_port" != "$port" ] || ceiling_port=$((port + 1))
# The model set is service/registry.py's.
read -r -a models <<<"$("$VENV_PYTHON" -c 'from service.registry import MODELS; print(*MODELS.names)')"

work_dir="$(mktemp -d -t penguin-bench.XXXXXX)"
server_pid=""
ceiling_pid=""
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  local pid
  for pid in "$server_pid" "$ceiling_pid"; do
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$work_dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "starting the server on 127.0.0.1:$port, pinned to core $server_core (log: $work_dir/server.log)"
PENGUIN_WORKERS=1 PENGUIN_BIND="127.0.0.1:$port" PENGUIN_ACCESS_LOG=false \
  taskset -c "$server_core" "$VENV_DIR/bin/gunicorn" -c service/gunicorn_conf.py service.app:app \
  >"$work_dir/server.log" 2>&1 &
server_pid=$!
log "starting the bare ASGI ceiling on 127.0.0.1:$ceiling_port, pinned to core $server_core"
PENGUIN_WORKERS=1 PENGUIN_BIND="127.0.0.1:$ceiling_port" PENGUIN_ACCESS_LOG=false \
  taskset -c "$server_core" "$VENV_DIR/bin/gunicorn" -c service/gunicorn_conf.py service.ceiling:app \
  >"$work_dir/ceiling.log" 2>&1 &
ceiling_pid=$!

# wait_ready PID URL LOG: polls URL until it answers 200.
wait_ready() {
  local pid="$1" url="$2" server_log="$3"
  for _ in $(seq 1 300); do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$server_log" >&2
      die "a server exited during start-up"
    fi
    if "$VENV_PYTHON" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)" \
        "$url" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  die "$url was not ready within 60 s; see $server_log"
}
base="http://127.0.0.1:$port"
ceiling="http://127.0.0.1:$ceiling_port"
wait_ready "$server_pid" "$base/ready" "$work_dir/server.log"
wait_ready "$ceiling_pid" "$ceiling/" "$work_dir/ceiling.log"

# wrk sends POST bodies from a Lua script.
predict_body='{"island": "Biscoe", "culmen_length_mm": 50.0, "culmen_depth_mm": 18.5, "flipper_length_mm": 200.0, "body_mass_g": 4000.0, "sex": "MALE"}'
cat >"$work_dir/predict.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '$predict_body'
LUA
batch_rows=100
"$VENV_PYTHON" - "$work_dir/batch.lua" "$batch_rows" <<'PY'
import json, sys
row = {"island": "Dream", "culmen_length_mm": 46.5, "culmen_depth_mm": 17.9,
       "flipper_length_mm": 192.0, "body_mass_g": 3500.0, "sex": "FEMALE"}
body = json.dumps({"instances": [row] * int(sys.argv[2])})
with open(sys.argv[1], "w") as lua:
    lua.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n')
    lua.write(f"wrk.body = [[{body}]]\n")
PY

# replica_cpu_ticks MASTER_PID: user+system clock ticks used so far by a master and its workers.
replica_cpu_ticks() {
  local total=0 pid fields
  for pid in "$1" $(pgrep -P "$1" || true); do
    # Fields 14 and 15 of /proc/PID/stat, counted after the ")" that ends the command name.
    fields="$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null)" || continue
    total=$((total + $(awk '{ print $12 + $13 }' <<<"$fields")))
  done
  echo "$total"
}

# wakeup_interrupts: rescheduling and function-call interrupts so far, summed over all CPUs.
# These are how one core wakes a task on another; each costs the sender kernel time.
wakeup_interrupts() {
  awk '$1 == "RES:" || $1 == "CAL:" { for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) total += $i }
       END { print total + 0 }' /proc/interrupts
}

# run_wrk LAYOUT CORE NAME MASTER_PID URL [LUA]: appends
# "LAYOUT/NAME rps p50_ms p99_ms non2xx socket_errors requests ticks interrupts".
run_wrk() {
  local layout="$1" core="$2" name="$3" pid="$4" url="$5" script="${6:-}"
  local out ticks_before ticks_after irq_before irq_after
  local args=(-t1 "-c$connections" "-d${round_seconds}s" --latency)
  [ -n "$script" ] && args+=(-s "$script")
  ticks_before="$(replica_cpu_ticks "$pid")"
  irq_before="$(wakeup_interrupts)"
  out="$(taskset -c "$core" wrk "${args[@]}" "$url")"
  irq_after="$(wakeup_interrupts)"
  ticks_after="$(replica_cpu_ticks "$pid")"
  printf '%s\n' "$out" >>"$work_dir/wrk-$layout-$name.txt"
  awk -v name="$layout/$name" -v ticks="$((ticks_after - ticks_before))" \
    -v irqs="$((irq_after - irq_before))" '
    function ms(v) {
      if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
      if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
      if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
      return v + 0
    }
    $1 == "Requests/sec:" { rps = $2 }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    $2 == "requests" && $3 == "in" { requests = $1 }
    /Non-2xx or 3xx responses:/ { non2xx = $NF }
    /Socket errors:/ { errors = $0; sub(/.*Socket errors: /, "", errors); gsub(/ /, "", errors) }
    END {
      printf "%s %.1f %.3f %.3f %d %s %d %d %d\n", name, rps, p50, p99, non2xx + 0,
        (errors == "" ? "none" : errors), requests + 0, ticks, irqs
    }' <<<"$out" >>"$results"
}

log "warming up"
taskset -c "$server_core" wrk -t1 "-c$connections" -d2s "$ceiling/" >/dev/null
taskset -c "$server_core" wrk -t1 "-c$connections" -d2s "$base/health" >/dev/null
taskset -c "$server_core" wrk -t1 "-c$connections" -d2s -s "$work_dir/predict.lua" "$base/predict?model=${models[0]}" >/dev/null

# Rounds interleave the endpoints, so load from elsewhere on the machine hits them all alike;
# the summary takes the median over rounds.
round_seconds=$(( (duration + rounds - 1) / rounds ))
log "measuring: $rounds rounds of ${round_seconds}s per endpoint and layout (${layouts[*]}), $connections connections"
results="$work_dir/results.txt"
: >"$results"
for round in $(seq 1 "$rounds"); do
  log "round $round/$rounds"
  for index in "${!layouts[@]}"; do
    layout="${layouts[$index]}"
    core="${layout_cores[$index]}"
    run_wrk "$layout" "$core" bare-asgi "$ceiling_pid" "$ceiling/"
    # The same POST as /predict, answered without reading it: the ceiling for that request.
    run_wrk "$layout" "$core" bare-asgi-post "$ceiling_pid" "$ceiling/predict" "$work_dir/predict.lua"
    run_wrk "$layout" "$core" health "$server_pid" "$base/health"
    for model in "${models[@]}"; do
      run_wrk "$layout" "$core" "predict-$model" "$server_pid" "$base/predict?model=$model" \
        "$work_dir/predict.lua"
    done
    run_wrk "$layout" "$core" "batch$batch_rows-${models[0]}" "$server_pid" \
      "$base/predict/batch?model=${models[0]}" "$work_dir/batch.lua"
  done
done

# Memory after the load: the master plus its worker; PSS counts each shared page once overall.
pids=("$server_pid")
mapfile -t children < <(pgrep -P "$server_pid" || true)
pids+=("${children[@]}")
pss_kb=0
rss_kb=0
for pid in "${pids[@]}"; do
  pss=$(awk '$1 == "Pss:" { print $2 }' "/proc/$pid/smaps_rollup")
  rss=$(awk '$1 == "Rss:" { print $2 }' "/proc/$pid/smaps_rollup")
  pss_kb=$((pss_kb + pss))
  rss_kb=$((rss_kb + rss))
done

# Paced and idle: the same servers, not saturated (service/benchmark.py).
windows="$work_dir/windows.jsonl"
: >"$windows"
paced_targets=(--target "bare-asgi-post=$ceiling_pid=$ceiling_port=/predict")
for model in "${models[@]}"; do
  paced_targets+=(--target "predict-$model=$server_pid=$port=/predict?model=$model")
done
paced_rates=()
for rate in "${rates[@]}"; do paced_rates+=(--rate "$rate"); done
printf '%s' "$predict_body" >"$work_dir/predict.json"
log "measuring idle (${idle_seconds}s), then paced at ${rates[*]} req/s over $paced_connections connections: $paced_rounds rounds of ${paced_seconds}s per target and rate, client on core $client_core"
taskset -c "$client_core" "$VENV_PYTHON" -m service.benchmark paced "${paced_targets[@]}" "${paced_rates[@]}" \
  --seconds "$paced_seconds" --rounds "$paced_rounds" --connections "$paced_connections" \
  --idle-seconds "$idle_seconds" \
  --spaced "metrics=$server_pid=$port=/metrics" --spaced "health=$server_pid=$port=/health" \
  --spaced-seconds "$spaced_seconds" --idle "replica=$server_pid=$port=/" --idle "bare-asgi=$ceiling_pid=$ceiling_port=/" \
  --body-file "$work_dir/predict.json" --out "$windows"

echo
"$VENV_PYTHON" -m service.benchmark report --wrk "$results" --windows "$windows" --models "${models[*]}" \
  --clk-tck "$(getconf CLK_TCK)" --saturated-share "$PREDICT_RATIO_TARGET" \
  --paced-ratio "$PACED_RATIO_TARGET" --paced-rate "${rates[0]}" --pss-limit-mb "$PSS_LIMIT_MB" \
  --pss-kb "$pss_kb" --rss-kb "$rss_kb" --processes "${#pids[@]}"
