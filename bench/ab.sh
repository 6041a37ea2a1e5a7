#!/usr/bin/env bash
# Two hapool builds side by side with PgBouncer 1.18 (transaction mode, 20 server connections, the peer-bench
# primary), for measuring a change: build A (say, the commit before it) on 127.0.0.1:16500, build B on :16510,
# PgBouncer on :16432, all running at once; each round runs pgbench -S -M simple through the three in one of the
# six orders, so that no proxy always goes first. Per run: tps, and the proxy's user and system CPU µs per
# transaction (/proc/PID/stat over the run ÷ transactions): user time is what a change to hapool's own code
# moves, and it is steadier than tps on this shared 2-core box. The summary gives medians and the median of the
# per-round ratios (each round's runs are within a minute of each other). Both builds are started again before
# every round, the one started last alternating (see start_both); use an even number of rounds (a multiple of
# 12 meets every run order with both start orders).
#
#   bench/ab.sh A_BINARY B_BINARY [--rounds 6] [--clients 32] [--time 5]
# Build A with, for example: git stash && cargo build --release && cp $CARGO_TARGET_DIR/release/hapool /tmp/a
# && git stash pop. Raw rows: $RESULTS_DIR/ab.tsv.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
peer=${PEER_BENCH:-$repo/../shared/peer-bench}
[ -x "$peer/cluster-pg.sh" ] || { echo "peer-bench harness not found at $peer (set PEER_BENCH)" >&2; exit 1; }
[ $# -ge 2 ] && [ -x "$1" ] && [ -x "$2" ] || { echo "usage: bench/ab.sh A_BINARY B_BINARY [options]" >&2; exit 2; }
a_bin=$1 b_bin=$2
shift 2
rounds=6 clients=32 seconds=5
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --time) seconds=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
results=${RESULTS_DIR:-/tmp/hapool-bench/ab-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$results"

"$peer/setup.sh" >/dev/null
"$peer/cluster-pg.sh" start >/dev/null
"$peer/proxies-pg.sh" start pgbouncer-tx >/dev/null
sed 's/16500/16510/' "$here/hapool-peer-bench.toml" >"$results/b.toml"
a_pid='' b_pid=''
trap 'kill $a_pid $b_pid 2>/dev/null || true; "$peer/proxies-pg.sh" stop >/dev/null 2>&1 || true; "$peer/cluster-pg.sh" stop >/dev/null 2>&1 || true' EXIT
# Starts both builds (stopping those running), B last when $1 is "B" and A last otherwise: of two hapools, the
# one started last ran 3–5 % faster in every run of this script while it started them once (B ÷ A 1.03–1.08
# for one binary twice; 0.968 with the start order swapped), so the order changes every round.
start_both() {
  if [ -n "$a_pid" ]; then kill "$a_pid" "$b_pid"; wait "$a_pid" "$b_pid" 2>/dev/null || true; fi
  local first=a
  [ "$1" = B ] || first=b
  for which in $first $([ $first = a ] && echo b || echo a); do
    # Each in a session of its own, as bench/lib.sh explains (autogroup scheduling).
    if [ "$which" = a ]; then
      setsid "$a_bin" run -c "$here/hapool-peer-bench.toml" >>"$results/a.log" 2>&1 &
      a_pid=$!
    else
      setsid "$b_bin" run -c "$results/b.toml" >>"$results/b.log" 2>&1 &
      b_pid=$!
    fi
  done
  for port in 16500 16510; do
    for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
    # Warm-up, not counted: the pool opens its server connections.
    pgbench -h 127.0.0.1 -p $port -U bench -n -S -c "$clients" -j 2 -T 2 bench >/dev/null 2>&1
  done
}
pgbouncer_pid=$("$peer/proxies-pg.sh" pid pgbouncer-tx)

export PGPASSWORD=bench
pgbench -h 127.0.0.1 -p 16432 -U bench -n -S -c "$clients" -j 2 -T 3 bench >/dev/null 2>&1
declare -A name=([16500]=A [16510]=B [16432]=PgBouncer)
orders=("16500 16510 16432" "16510 16432 16500" "16432 16500 16510" "16500 16432 16510" "16510 16500 16432"
  "16432 16510 16500")
ticks=$(getconf CLK_TCK)
printf 'round\tproxy\ttps\tuser_us_per_tx\tsys_us_per_tx\n' >"$results/ab.tsv"
for ((r = 1; r <= rounds; r++)); do
  start_both "$([ $((r % 2)) = 1 ] && echo B || echo A)"
  declare -A pid=([16500]=$a_pid [16510]=$b_pid [16432]=$pgbouncer_pid)
  for port in ${orders[$(((r - 1) % 6))]}; do
    read -r u0 s0 < <(awk '{print $14, $15}' "/proc/${pid[$port]}/stat")
    out=$(pgbench -h 127.0.0.1 -p $port -U bench -n -S -c "$clients" -j 2 -T "$seconds" bench 2>&1)
    read -r u1 s1 < <(awk '{print $14, $15}' "/proc/${pid[$port]}/stat")
    tx=$(awk '/^number of transactions actually processed/ {split($6, a, "/"); print a[1]}' <<<"$out")
    awk -v r=$r -v n=${name[$port]} -v tx="$tx" -v s="$seconds" -v t="$ticks" -v u=$((u1 - u0)) -v k=$((s1 - s0)) \
      'BEGIN { printf "%d\t%s\t%.0f\t%.2f\t%.2f\n", r, n, tx / s, u * 1e6 / t / tx, k * 1e6 / t / tx }' |
      tee -a "$results/ab.tsv"
  done
done

echo
echo "medians over $rounds rounds, $clients clients (A = $a_bin, B = $b_bin):"
awk -F'\t' 'NR > 1 { tps[$2] = tps[$2] " " $3; user[$2] = user[$2] " " $4; sys[$2] = sys[$2] " " $5; per[$1, $2] = $3 }
  function median(list,   v, n, i, j, x) {
    n = split(list, v, " ")
    for (i = 2; i <= n; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] + 0 > x + 0; j--) v[j + 1] = v[j]; v[j + 1] = x }
    return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
  }
  END {
    for (p in tps) printf "  %-9s tps %8.0f  user %5.2f µs/tx  sys %5.2f µs/tx\n", p, median(tps[p]), median(user[p]), median(sys[p])
    for (r = 1; (r, "A") in per; r++) { ab = ab " " per[r, "B"] / per[r, "A"]; bp = bp " " per[r, "B"] / per[r, "PgBouncer"]; ap = ap " " per[r, "A"] / per[r, "PgBouncer"] }
    printf "  per-round tps ratio, median: B ÷ A %.3f  A ÷ PgBouncer %.3f  B ÷ PgBouncer %.3f\n", median(ab), median(ap), median(bp)
  }' "$results/ab.tsv"
echo "raw: $results/ab.tsv"
