#!/usr/bin/env bash
# Benchmarks one API replica as the containers run it (Gunicorn master + one Uvicorn worker),
# pinned to one core, with wrk on another core. Prints requests/s and p50/p99 latency per
# endpoint and model, the replica's memory (summed PSS and RSS), and PASS/FAIL per target:
#   - POST /predict reaches at least 60 % of GET /health's requests/s, for every model;
#   - the replica stays under 110 MB summed PSS after serving the load (fits a 128 MB limit).
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() {
  cat <<USAGE
Usage: scripts/bench_service.sh [--duration SECONDS] [--connections N] [--server-core N]
                                [--wrk-core N] [--port N]

  --duration SECONDS   wrk run per endpoint (default 10)
  --connections N      concurrent wrk connections (default 32)
  --server-core N      core the server is pinned to with taskset (default 0)
  --wrk-core N         core wrk is pinned to (default 1, or 0 on a one-core machine)
  --port N             loopback port (default: a free one)
  -h, --help           show this help

Exit status 1 when a target fails. Figures vary with the machine and its other load.
USAGE
}

PREDICT_RATIO_TARGET=0.60
PSS_LIMIT_MB=110

duration=10
connections=32
server_core=0
wrk_core=""
port=""
while [ "$#" -gt 0 ]; do
  case "$1" in
    --duration) [ "$#" -ge 2 ] || die "--duration needs a value"; duration="$2"; shift ;;
    --connections) [ "$#" -ge 2 ] || die "--connections needs a value"; connections="$2"; shift ;;
    --server-core) [ "$#" -ge 2 ] || die "--server-core needs a value"; server_core="$2"; shift ;;
    --wrk-core) [ "$#" -ge 2 ] || die "--wrk-core needs a value"; wrk_core="$2"; shift ;;
    --port) [ "$#" -ge 2 ] || die "--port needs a value"; port="$2"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
  shift
done

for value in "$duration" "$connections" "$server_core" ${wrk_core:+"$wrk_core"} ${port:+"$port"}; do
  [[ "$value" =~ ^[0-9]+$ ]] || die "options take non-negative integers, got '$value'"
done
if [ "$duration" -lt 1 ] || [ "$connections" -lt 1 ]; then
  die "--duration and --connections must be >= 1"
fi
cores="$(nproc)"
[ "$server_core" -lt "$cores" ] || die "--server-core $server_core: this machine has $cores cores"
if [ -z "$wrk_core" ]; then
  if [ "$cores" -gt 1 ]; then wrk_core=$(( (server_core + 1) % cores )); else wrk_core=0; fi
fi
[ "$wrk_core" -lt "$cores" ] || die "--wrk-core $wrk_core: this machine has $cores cores"
[ "$wrk_core" -ne "$server_core" ] || log "warning: wrk shares core $server_core with the server; figures will be low"

cd "$PROJECT_ROOT"
ensure_venv
ensure_models
command -v wrk >/dev/null 2>&1 || apt_install wrk
command -v taskset >/dev/null 2>&1 || apt_install util-linux
[ -n "$port" ] || port="$("$VENV_PYTHON" -c 'import sys; sys.path.insert(0, "."); from tests.support import free_port; print(free_port())')"

work_dir="$(mktemp -d -t penguin-bench.XXXXXX)"
server_pid=""
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work_dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "starting the server on 127.0.0.1:$port, pinned to core $server_core (log: $work_dir/server.log)"
PENGUIN_WORKERS=1 PENGUIN_BIND="127.0.0.1:$port" PENGUIN_ACCESS_LOG=false \
  taskset -c "$server_core" "$VENV_DIR/bin/gunicorn" -c service/gunicorn_conf.py service.app:app \
  >"$work_dir/server.log" 2>&1 &
server_pid=$!

base="http://127.0.0.1:$port"
ready=0
for _ in $(seq 1 300); do
  if ! kill -0 "$server_pid" 2>/dev/null; then
    tail -n 20 "$work_dir/server.log" >&2
    die "the server exited during start-up"
  fi
  if "$VENV_PYTHON" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)" \
      "$base/ready" >/dev/null 2>&1; then
    ready=1
    break
  fi
  sleep 0.2
done
[ "$ready" -eq 1 ] || die "the server was not ready within 60 s; see $work_dir/server.log"

# wrk sends POST bodies from a Lua script.
cat >"$work_dir/predict.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"island": "Biscoe", "culmen_length_mm": 50.0, "culmen_depth_mm": 18.5, "flipper_length_mm": 200.0, "body_mass_g": 4000.0, "sex": "MALE"}'
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

# run_wrk NAME URL [LUA]: prints "NAME rps p50_ms p99_ms non2xx errors".
run_wrk() {
  local name="$1" url="$2" script="${3:-}" out
  local args=(-t1 "-c$connections" "-d${duration}s" --latency)
  [ -n "$script" ] && args+=(-s "$script")
  out="$(taskset -c "$wrk_core" wrk "${args[@]}" "$url")"
  printf '%s\n' "$out" >"$work_dir/wrk-$name.txt"
  awk -v name="$name" '
    function ms(v) {
      if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
      if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
      if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
      return v + 0
    }
    $1 == "Requests/sec:" { rps = $2 }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    /Non-2xx or 3xx responses:/ { non2xx = $NF }
    /Socket errors:/ { errors = $0; sub(/.*Socket errors: /, "", errors); gsub(/ /, "", errors) }
    END {
      printf "%s %.1f %.3f %.3f %d %s\n", name, rps, p50, p99, non2xx + 0, (errors == "" ? "none" : errors)
    }' <<<"$out"
}

log "warming up"
taskset -c "$wrk_core" wrk -t1 "-c$connections" -d2s "$base/health" >/dev/null
taskset -c "$wrk_core" wrk -t1 "-c$connections" -d2s -s "$work_dir/predict.lua" "$base/predict?model=rf" >/dev/null

log "measuring, ${duration}s per endpoint, $connections connections"
results="$work_dir/results.txt"
: >"$results"
run_wrk health "$base/health" >>"$results"
for model in lr rf svm; do
  run_wrk "predict-$model" "$base/predict?model=$model" "$work_dir/predict.lua" >>"$results"
done
run_wrk "batch$batch_rows-lr" "$base/predict/batch?model=lr" "$work_dir/batch.lua" >>"$results"

# Memory after the load: the master plus its worker, PSS counts shared pages once overall.
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

failed=0
echo
printf '%-16s %12s %10s %10s %8s  %s\n' endpoint "requests/s" "p50 ms" "p99 ms" non-2xx "socket errors"
while read -r name rps p50 p99 non2xx errors; do
  printf '%-16s %12s %10s %10s %8s  %s\n' "$name" "$rps" "$p50" "$p99" "$non2xx" "$errors"
  if [ "$non2xx" -ne 0 ]; then
    echo "FAIL $name: $non2xx non-2xx responses (see $work_dir/wrk-$name.txt)"
    failed=1
  fi
done <"$results"
echo

health_rps="$(awk '$1 == "health" { print $2 }' "$results")"
for model in lr rf svm; do
  rps="$(awk -v n="predict-$model" '$1 == n { print $2 }' "$results")"
  verdict="$(awk -v r="$rps" -v h="$health_rps" -v t="$PREDICT_RATIO_TARGET" \
    'BEGIN { ratio = (h > 0 ? r / h : 0); printf "%s %.0f", (ratio >= t ? "PASS" : "FAIL"), ratio * 100 }')"
  read -r outcome percent <<<"$verdict"
  echo "$outcome predict-$model: $rps req/s = $percent % of /health ($health_rps req/s); target >= $(awk -v t="$PREDICT_RATIO_TARGET" 'BEGIN { print t * 100 }') %"
  [ "$outcome" = PASS ] || failed=1
done

pss_mb="$(awk -v k="$pss_kb" 'BEGIN { printf "%.1f", k * 1024 / 1e6 }')"
rss_mb="$(awk -v k="$rss_kb" 'BEGIN { printf "%.1f", k * 1024 / 1e6 }')"
if [ "$pss_kb" -gt 0 ] && awk -v k="$pss_kb" -v l="$PSS_LIMIT_MB" 'BEGIN { exit !(k * 1024 < l * 1e6) }'; then
  outcome=PASS
else
  outcome=FAIL
  failed=1
fi
echo "$outcome memory: ${pss_mb} MB summed PSS over ${#pids[@]} processes (RSS sum ${rss_mb} MB); target < $PSS_LIMIT_MB MB"
exit "$failed"
