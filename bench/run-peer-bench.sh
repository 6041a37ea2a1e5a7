#!/usr/bin/env bash
# Measures hapool side by side with direct PostgreSQL and PgBouncer 1.18 (transaction mode) in one run of the
# shared peer-bench harness (pgbench: select simple/prepared, TPC-B, simple-update at 32 clients; latency at
# 1 client; proxy CPU per transaction), then stops what it started.
#
#   bench/run-peer-bench.sh [--runs 1] [--time 20] [--lat-time 10]
# Results: $RESULTS_DIR/report.md (default /tmp/peer-bench-results/hapool-<timestamp>/report.md).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
peer=${PEER_BENCH:-$repo/../shared/peer-bench}
[ -x "$peer/run-pg.sh" ] || { echo "peer-bench harness not found at $peer (set PEER_BENCH)" >&2; exit 1; }

# shellcheck source=lib.sh
. "$here/lib.sh"
build_and_start_cluster
start_hapool hapool-peer-bench.toml 16500 hapool.log

export RESULTS_DIR=${RESULTS_DIR:-/tmp/peer-bench-results/hapool-$(date +%Y%m%d-%H%M%S)}
"$peer/run-pg.sh" --targets "$here/peer-targets-pg.conf" "$@"
cat "$RESULTS_DIR/report.md"
