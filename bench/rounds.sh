#!/usr/bin/env bash
# hapool against PgBouncer 1.18 (both in transaction mode, 20 server connections, the peer-bench primary), in
# alternating rounds: each round runs every case through both proxies, the order swapped from one round to the
# next, and the summary gives each proxy's median per case. Single runs on a shared 2-core box move by ±10 %;
# medians of alternating rounds are the comparison to trust. Use an even number of rounds: the run that goes
# first in a pair was slower in most rounds, so an odd count favours the proxy that starts second more often.
# The summary also gives the median of the per-round ratios hapool ÷ PgBouncer (each round's pair ran within a
# minute, so the ratio cancels the box's slower and faster minutes), in how many rounds hapool was ahead, and a
# bootstrap interval of that median: with ±10 % from run to run, 6 rounds cannot tell 2 % apart; 20 can better.
#
#   bench/rounds.sh [--rounds 6] [--clients "1 32 500"] [--restart]
#   bin=$(scripts/build-pgo) && HAPOOL_BINARY=$bin bench/rounds.sh …   (another binary than the tree's release build)
# Cases: pgbench -S -M simple at 1 client (-T 5: latency), 32 clients (-t 1500 each) and 500 clients
# (-t 300 each; its CPU includes the 500 SCRAM logins); each measured run follows one uncounted second of the
# same load through the same proxy. CPU µs/tx = the proxy's utime+stime over the run ÷
# transactions. Raw rows: $RESULTS_DIR/rounds.tsv.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
peer=${PEER_BENCH:-$repo/../shared/peer-bench}
[ -x "$peer/cluster-pg.sh" ] || { echo "peer-bench harness not found at $peer (set PEER_BENCH)" >&2; exit 1; }
rounds=6 clients_list="1 32 500" restart=false
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --clients) clients_list=$2; shift 2 ;;
    # Both proxies restarted before every round, the one started last alternating: of two hapool builds started
    # once, the one started last ran 3–5 % faster (bench/ab.sh); between hapool and PgBouncer two runs did not
    # agree (bench/RESULTS.md, "Start order"). This takes the start order out of the comparison.
    --restart) restart=true; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
for clients in $clients_list; do
  case $clients in 1 | 32 | 500) ;; *) echo "--clients takes 1, 32 and 500" >&2; exit 2 ;; esac
done

# shellcheck source=lib.sh
. "$here/lib.sh"
start_hapool_and_pgbouncer hapool-rounds.log
pgbouncer_pid=$("$peer/proxies-pg.sh" pid pgbouncer-tx)

export PGPASSWORD=${PGPASSWORD:-bench}
export RESULTS_DIR=${RESULTS_DIR:-/tmp/peer-bench-results/rounds-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$RESULTS_DIR"
raw="$RESULTS_DIR/rounds.tsv"
printf 'round\tproxy\tclients\ttps\tlatency_ms\tcpu_us_per_tx\n' >"$raw"
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# One pgbench run through one proxy; appends a row.
run() {
  local round=$1 name=$2 pid=$3 port=$4 clients=$5 before after out tps lat tx
  shift 5
  # One second of the same load first, not counted: the measured run then follows this proxy's own work, not
  # the other proxy's (without it, the first run of each pair followed the other proxy's lighter case and
  # was 6–9 % slower: bench/RESULTS.md, "twenty rounds").
  pgbench -h 127.0.0.1 -p "$port" -U bench -n -S -c "$clients" -j "$(( clients < 2 ? 1 : 2 ))" -T 1 bench >/dev/null 2>&1
  before=$(ticks "$pid")
  out=$(pgbench -h 127.0.0.1 -p "$port" -U bench -n -S -c "$clients" -j "$(( clients < 2 ? 1 : 2 ))" "$@" bench 2>&1)
  after=$(ticks "$pid")
  tps=$(awk '/^tps/ {print $3}' <<<"$out")
  lat=$(awk '/^latency average/ {print $4}' <<<"$out")
  tx=$(awk '/^number of transactions actually processed/ {split($6, a, "/"); print a[1]}' <<<"$out")
  awk -v r="$round" -v n="$name" -v c="$clients" -v tps="$tps" -v lat="$lat" -v d=$((after - before)) \
    -v hz="$hz" -v tx="$tx" 'BEGIN { printf "%d\t%s\t%d\t%.0f\t%.3f\t%.1f\n", r, n, c, tps, lat, d / hz * 1e6 / tx }' \
    | tee -a "$raw"
}

# Warm-up, not counted: both proxies open their server connections.
for port in 16500 16432; do pgbench -h 127.0.0.1 -p "$port" -U bench -n -S -c 32 -j 2 -T 3 bench >/dev/null 2>&1; done

declare -A load=([1]="-T 5" [32]="-t 1500" [500]="-t 300")
for ((r = 1; r <= rounds; r++)); do
  if $restart; then
    kill "$hapool_pid"
    wait "$hapool_pid" 2>/dev/null || true
    "$peer/proxies-pg.sh" stop pgbouncer-tx >/dev/null
    # Which proxy starts last changes every two rounds, which runs first every round: with a multiple of four
    # rounds each order meets each order equally often.
    if (((r - 1) / 2 % 2 == 1)); then
      start_hapool hapool-peer-bench.toml 16500 hapool-rounds.log
      "$peer/proxies-pg.sh" start pgbouncer-tx >/dev/null
    else
      "$peer/proxies-pg.sh" start pgbouncer-tx >/dev/null
      start_hapool hapool-peer-bench.toml 16500 hapool-rounds.log
    fi
    pgbouncer_pid=$("$peer/proxies-pg.sh" pid pgbouncer-tx)
    for port in 16500 16432; do pgbench -h 127.0.0.1 -p "$port" -U bench -n -S -c 32 -j 2 -T 2 bench >/dev/null 2>&1; done
  fi
  order=("hapool $hapool_pid 16500" "pgbouncer $pgbouncer_pid 16432")
  ((r % 2 == 0)) && order=("${order[1]}" "${order[0]}")
  for clients in $clients_list; do
    case="$clients ${load[$clients]}"
    for target in "${order[@]}"; do
      # shellcheck disable=SC2086 # the case and target are word lists on purpose
      run "$r" $target ${case%% *} ${case#* }
    done
  done
done

echo
echo "medians over $rounds rounds (tps, average latency ms, proxy CPU µs/tx):"
# The median of column $1 of $RESULTS_DIR/.col.
med() { cut -f"$1" "$RESULTS_DIR/.col" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
# How sure the median tps ratio (column 1 of stdin) is: the rounds hapool was ahead in, and a 95 % bootstrap
# interval of the median (2,000 resamples of the rounds with replacement; fixed seed, so a rerun on the same
# rows prints the same interval).
spread() {
  awk -F'\t' '{v[NR] = $1; if ($1 >= 1) ahead++}
    function median(a, n,   i, j, x) {
      for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    END {
      srand(1)
      for (b = 1; b <= 2000; b++) { for (i = 1; i <= NR; i++) s[i] = v[int(rand() * NR) + 1]; m[b] = median(s, NR) }
      median(m, 2000)
      printf "hapool ahead in %d of %d rounds; 95 %% interval of the median %.3f–%.3f", ahead, NR, m[50], m[1951]
    }'
}
for clients in $clients_list; do
  for name in hapool pgbouncer; do
    awk -F'\t' -v n="$name" -v c="$clients" 'NR > 1 && $2 == n && $3 == c {print $4 "\t" $5 "\t" $6}' "$raw" >"$RESULTS_DIR/.col"
    printf '%4d clients  %-10s tps %8s  latency %6s ms  cpu %5s µs/tx\n' "$clients" "$name" "$(med 1)" "$(med 2)" "$(med 3)"
  done
  # Per round: hapool's tps and CPU µs/tx divided by PgBouncer's; then the median of each ratio.
  awk -F'\t' -v c="$clients" 'NR > 1 && $3 == c {tps[$1, $2] = $4; cpu[$1, $2] = $6; r[$1] = 1}
    END {for (k in r) print tps[k, "hapool"] / tps[k, "pgbouncer"] "\t" cpu[k, "hapool"] / cpu[k, "pgbouncer"]}' \
    "$raw" >"$RESULTS_DIR/.col"
  printf '%4d clients  hapool ÷ PgBouncer per round, median: tps %.3f  cpu µs/tx %.3f\n' "$clients" "$(med 1)" "$(med 2)"
  printf '              tps ratio: %s\n' "$(spread <"$RESULTS_DIR/.col")"
  # With --restart: the same ratio in the rounds where hapool started last and where PgBouncer did.
  if $restart; then
    for last in hapool pgbouncer; do
      awk -F'\t' -v c="$clients" -v last="$last" 'NR > 1 && $3 == c {
          tps[$1, $2] = $4; r[$1] = 1 }
        END { for (k in r) if ((int((k - 1) / 2) % 2 == 1) == (last == "pgbouncer")) print tps[k, "hapool"] / tps[k, "pgbouncer"] }' \
        "$raw" >"$RESULTS_DIR/.col"
      printf '              tps ratio in the rounds %s started last: %.3f\n' "$last" "$(med 1)"
    done
  fi
done | tee "$RESULTS_DIR/summary.txt"
rm -f "$RESULTS_DIR/.col"
