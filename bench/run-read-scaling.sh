#!/usr/bin/env bash
# Read scaling over the peer-bench primary + 2 replicas, one run: pgbench -S (simple and prepared) at 32 and
# 200 clients, direct to the primary, through pgpool-II 4.3 (streaming replication mode, load balancing on,
# num_init_children = 500 ≥ clients: the harness's pgpool-scale) and through hapool (read/write split, primary
# and replicas weight 1: bench/hapool-read-scaling.toml). Stops what it started.
#
#   bench/run-read-scaling.sh [--time 20] [--runs 1]
# Results: $RESULTS_DIR/report.md (default /tmp/peer-bench-results/read-scaling-<timestamp>/).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
peer=${PEER_BENCH:-$repo/../shared/peer-bench}
[ -x "$peer/pgbench.sh" ] || { echo "peer-bench harness not found at $peer (set PEER_BENCH)" >&2; exit 1; }
time=20 runs=1
while [ $# -gt 0 ]; do
  case $1 in
    --time) time=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

# shellcheck source=lib.sh
. "$here/lib.sh"
build_and_start_cluster
has=$(PGPASSWORD=bench psql -X -Atq -h 127.0.0.1 -p 15432 -U bench -d bench \
  -c "select count(*) from pgbench_branches" 2>/dev/null || echo 0)
[ "$has" = 10 ] || "$peer/pgbench.sh" --init --scale 10
"$peer/proxies-pg.sh" start pgpool-scale >/dev/null
start_hapool hapool-read-scaling.toml 16501 hapool-rs.log

export RESULTS_DIR=${RESULTS_DIR:-/tmp/peer-bench-results/read-scaling-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$RESULTS_DIR"
pgpool_pid=$("$peer/proxies-pg.sh" pid pgpool-scale)
for ((r = 1; r <= runs; r++)); do
  for clients in 32 200; do
    # label | target | pid to account CPU of (none for direct)
    while read -r label target pid; do
      args=(--target "$target" --label "$label-c$clients" --run-base "$r" --runs 1 --time "$time"
        --clients "$clients" --threads 2 --workloads select:simple,select:prepared)
      [ "$pid" = - ] || args+=(--proxy-pid "$pid")
      "$peer/pgbench.sh" "${args[@]}" || echo "[$label] pgbench failed" >&2
    done <<TARGETS
direct 127.0.0.1:15432 -
pgpool 127.0.0.1:19997 $pgpool_pid
hapool-rw 127.0.0.1:16501 $hapool_pid
TARGETS
  done
done
# Where hapool's reads went, from each node's own counters.
for port in 15432 15433 15434; do
  echo "node :$port xact_commit $(PGPASSWORD=bench psql -X -Atq -h 127.0.0.1 -p $port -U bench -d bench \
    -c "select xact_commit from pg_stat_database where datname = 'bench'")"
done | tee "$RESULTS_DIR/node-commits.txt"
python3 "$peer/report.py" "$RESULTS_DIR" >"$RESULTS_DIR/report.md" || true
cat "$RESULTS_DIR/report.md"
