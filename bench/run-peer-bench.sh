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

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/hapool-target}
(cd "$repo" && cargo build --release --locked -q)
bin="$CARGO_TARGET_DIR/release/hapool"

"$peer/setup.sh" >/dev/null
"$peer/cluster-pg.sh" start >/dev/null
mkdir -p /tmp/hapool-bench
"$bin" run -c "$here/hapool-peer-bench.toml" >/tmp/hapool-bench/hapool.log 2>&1 &
echo $! >/tmp/hapool-bench/hapool.pid
stop_all() {
  kill "$(cat /tmp/hapool-bench/hapool.pid)" 2>/dev/null || true
  wait 2>/dev/null || true
  "$peer/proxies-pg.sh" stop >/dev/null 2>&1 || true
  "$peer/cluster-pg.sh" stop >/dev/null 2>&1 || true
}
trap stop_all EXIT
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/16500) 2>/dev/null && break; sleep 0.1; done

export RESULTS_DIR=${RESULTS_DIR:-/tmp/peer-bench-results/hapool-$(date +%Y%m%d-%H%M%S)}
"$peer/run-pg.sh" --targets "$here/peer-targets-pg.conf" "$@"
cat "$RESULTS_DIR/report.md"
