#!/usr/bin/env bash
# Resident memory per idle client: N idle clients (asyncpg, SCRAM) through hapool and through PgBouncer
# (transaction mode), measured by the shared peer-bench harness's conn-scale.sh in one run.
#
#   bench/run-conn-scale.sh [N]      (default 5000)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
peer=${PEER_BENCH:-$repo/../shared/peer-bench}
n=${1:-5000}

# shellcheck source=lib.sh
. "$here/lib.sh"
start_hapool_and_pgbouncer hapool.log

export RESULTS_DIR=${RESULTS_DIR:-/tmp/peer-bench-results/conn-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$RESULTS_DIR"
"$peer/conn-scale.sh" --target 127.0.0.1:16432 --label pgbouncer-tx --pid "$("$peer/proxies-pg.sh" pid pgbouncer-tx)" -n "$n"
"$peer/conn-scale.sh" --target 127.0.0.1:16500 --label hapool-tx --pid "$hapool_pid" -n "$n"
cat "$RESULTS_DIR/conn-scale.csv"
