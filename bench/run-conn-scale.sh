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

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/hapool-target}
(cd "$repo" && cargo build --release --locked -q)
"$peer/setup.sh" >/dev/null
"$peer/cluster-pg.sh" start >/dev/null
"$peer/proxies-pg.sh" start pgbouncer-tx >/dev/null
mkdir -p /tmp/hapool-bench
"$CARGO_TARGET_DIR/release/hapool" run -c "$here/hapool-peer-bench.toml" >/tmp/hapool-bench/hapool.log 2>&1 &
hapool_pid=$!
trap 'kill $hapool_pid 2>/dev/null || true; "$peer/proxies-pg.sh" stop >/dev/null 2>&1 || true; "$peer/cluster-pg.sh" stop >/dev/null 2>&1 || true' EXIT
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/16500) 2>/dev/null && break; sleep 0.1; done

export RESULTS_DIR=${RESULTS_DIR:-/tmp/peer-bench-results/conn-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$RESULTS_DIR"
"$peer/conn-scale.sh" --target 127.0.0.1:16432 --label pgbouncer-tx --pid "$("$peer/proxies-pg.sh" pid pgbouncer-tx)" -n "$n"
"$peer/conn-scale.sh" --target 127.0.0.1:16500 --label hapool-tx --pid "$hapool_pid" -n "$n"
cat "$RESULTS_DIR/conn-scale.csv"
