#!/usr/bin/env bash
# Proxy CPU per transaction, hapool vs PgBouncer, alternating runs on the peer-bench cluster (a quick, steadier
# complement to run-peer-bench.sh). Needs the cluster and pgbouncer-tx running (run-peer-bench.sh starts them,
# or ../shared/peer-bench/cluster-pg.sh start; ../shared/peer-bench/proxies-pg.sh start pgbouncer-tx) and hapool
# listening on 127.0.0.1:16500 (bench/hapool-peer-bench.toml).
#
#   bench/cpu-per-tx.sh HAPOOL_PID PGBOUNCER_PID [runs=3] [clients=32] [tx-per-client=2000] [pgbench flags...]
set -euo pipefail
hp=$1 pb=$2 runs=${3:-3} clients=${4:-32} per=${5:-2000}
shift $(( $# < 5 ? $# : 5 ))
flags=("${@:--S}")
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
export PGPASSWORD=${PGPASSWORD:-bench}
for r in $(seq "$runs"); do
  for t in "hapool $hp 16500" "pgbouncer $pb 16432"; do
    set -- $t
    before=$(ticks "$2")
    tps=$(pgbench -h 127.0.0.1 -p "$3" -U bench -n "${flags[@]}" -c "$clients" -j 2 -t "$per" bench 2>&1 | awk '/^tps/ {print $3}')
    after=$(ticks "$2")
    awk -v n="$1" -v r="$r" -v tps="$tps" -v d=$((after - before)) -v hz="$hz" -v tx=$((clients * per)) \
      'BEGIN { printf "%-10s run %d  tps %8.0f  cpu %5.1f us/tx\n", n, r, tps, d / hz * 1e6 / tx }'
  done
done
