#!/usr/bin/env bash
# Measures the capacity matrix: for each replicas x CPU x memory cell of the api service, a
# distributed Locust load profile through Nginx; writes results/<timestamp>/ with a report.
# A thin entry point: installs what is needed, then hands over to `python -m matrix`.
set -euo pipefail
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=scripts/lib/docker.sh
source "$PROJECT_ROOT/scripts/lib/docker.sh"

usage() {
  cat <<USAGE
Usage: scripts/run_matrix.sh [--quick | --matrix FILE] [--resume RUN_DIR] [--fresh]
                             [--stack-name NAME] [--nginx-port N] [--no-stack-up] [--stack-down]
                             [--cluster]
                             [--target-image IMAGE --target-port PORT --request-file FILE]
                             [--validate-only] [--report-only RUN_DIR]

Deploys the stack (scripts/stack_up.sh), then measures every cell of the matrix file and writes
results/<timestamp>/{summary.csv,report.md,report.html,plots/,cells/}.

  --quick              the small matrix matrix/matrix-quick.yaml (10-12 minutes on 2 cores)
  --matrix FILE        matrix file (default matrix/matrix.yaml; format in matrix/README.md)
  --resume RUN_DIR     continue an interrupted run (by default the latest unfinished run of the
                       same matrix is resumed automatically)
  --fresh              start a new run even if an unfinished one exists
  --stack-name NAME    stack to measure (env STACK_NAME, default penguins)
  --nginx-port N       Nginx's published port on this host (env NGINX_PORT, default 8000)
  --no-stack-up        the stack is already deployed: do not run scripts/stack_up.sh
  --cluster            measure the local multi-node Swarm of scripts/cluster_up.sh: its engine,
                       stack and Nginx (from /run/penguins-cluster/env), without stack_up.sh;
                       Locust runs here and the report says where each api task ran
  --stack-down         remove the stack (scripts/stack_down.sh) when done
  --target-image IMAGE measure this local image of another model API in place of the penguin
                       service (with the next two: the matrix file's target block, for a
                       quick try; see matrix/README.md, "Bring your own service")
  --target-port PORT   the port its container listens on
  --request-file FILE  YAML with its requests: (and optionally health_path:, env:)
  --validate-only      check the matrix file and print the cells, change nothing
  --report-only DIR    rebuild summary, plots and report of a run from its recorded cells
  -h, --help           show this help

Ctrl-C restores the api service's replicas and limits and keeps the cells already measured;
run the same command again to resume.
USAGE
}

# Every flag is checked here, before anything is installed or started: names and values present
# (python -m matrix checks the values themselves; tests/matrix/test_run_matrix_args.py keeps this
# list equal to its parser's).
needs_docker=1
args=("$@")
while [ "$#" -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --quick|--fresh|--no-stack-up|--stack-down) ;;
    # cluster_up.sh installed the engine and made the Swarm; the host's Swarm is not needed.
    --cluster) needs_docker=0 ;;
    --validate-only) needs_docker=0 ;;
    --report-only) [ "$#" -ge 2 ] || die "$1 needs a value"; needs_docker=0; shift ;;
    --report-only=*) needs_docker=0 ;;
    --matrix|--resume|--stack-name|--nginx-port|--target-image|--target-port|--request-file)
      [ "$#" -ge 2 ] || die "$1 needs a value"; shift ;;
    --matrix=*|--resume=*|--stack-name=*|--nginx-port=*) ;;
    --target-image=*|--target-port=*|--request-file=*) ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
  shift
done
set -- "${args[@]}"
check_network_access

cd "$PROJECT_ROOT"
ensure_venv
if [ "$needs_docker" -eq 1 ]; then
  ensure_models
  ensure_docker_engine
  ensure_swarm
fi

# exec: Ctrl-C and SIGTERM reach Python directly, which restores the service before exiting.
exec "$VENV_PYTHON" -m matrix "$@"
