#!/usr/bin/env bash
# User-space instructions per transaction, counted by valgrind (callgrind), of hapool builds and of PgBouncer
# 1.18 (transaction mode, 20 server connections, the peer-bench primary), under pgbench -S -M simple at 32
# clients. Unlike time on this shared 2-core box (±10 % from one run to the next), a count moves by about
# ±3 % (the batching of wake-ups varies with timing), so a change of a few percent in the proxy's own work
# shows in a few runs. It counts work, not cache misses or syscall time: read it next to bench/ab.sh.
#
#   bench/instructions.sh [--repeat 3] [--tpcb] [--keep DIR] [HAPOOL_BINARY ...]   (default: this tree's release build)
#
# --keep DIR keeps each run's callgrind dumps in DIR/RUN-LABEL/ (read them with callgrind_annotate --inclusive=yes).
# --tpcb counts pgbench's default TPC-B script instead (seven statements per transaction; -t 50 and -t 200).
#
# Each run starts the proxy under callgrind with instrumentation off, warms it up (pgbench -t 200: every server
# connection opened; PgBouncer opens its pool lazily, each login a SCRAM key derivation), then counts
# two loads, -t 200 and -t 800 per client, and reports (count of the second − count of the first) ÷ (32 × 600):
# the logins and whatever else does not scale with transactions cancel out. PgBouncer runs as a private copy of
# the harness's pgbouncer-tx (port 16440) with auth_type = trust: PgBouncer computes the SCRAM salted password
# at every login, which no difference would cancel exactly (hapool keeps a verifier, and its logins cancel).
# Needs valgrind.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
peer=${PEER_BENCH:-$repo/../shared/peer-bench}
[ -x "$peer/cluster-pg.sh" ] || { echo "peer-bench harness not found at $peer (set PEER_BENCH)" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
repeat=3 select=-S first=200 second=800 keep=
binaries=()
while [ $# -gt 0 ]; do
  case $1 in
    --repeat) repeat=$2; shift 2 ;;
    --tpcb) select='' first=50 second=200; shift ;;
    --keep) keep=$2; shift 2 ;;
    *) binaries+=("$1"); shift ;;
  esac
done
# shellcheck source=lib.sh
. "$here/lib.sh"
build_and_start_cluster
[ ${#binaries[@]} -gt 0 ] || binaries=("$CARGO_TARGET_DIR/release/hapool")
work=$(mktemp -d /tmp/hapool-instructions.XXXXXX)
chown postgres:postgres "$work"
trap "'$peer/cluster-pg.sh' stop >/dev/null 2>&1 || true" EXIT

# PgBouncer's configuration: the harness's pgbouncer-tx on another port, trust auth, files in $work.
"$peer/proxies-pg.sh" start pgbouncer-tx >/dev/null
original=/tmp/bench-pg/pgbouncer-tx
sed -e 's/^listen_port = .*/listen_port = 16440/' -e 's/^auth_type = .*/auth_type = trust/' \
  -e "s#$original#$work#g" "$original/pgbouncer.ini" >"$work/pgbouncer.ini"
cp "$original/userlist.txt" "$work/"
chown postgres:postgres "$work"/*
"$peer/proxies-pg.sh" stop >/dev/null

export PGPASSWORD=bench
clients=32

# Runs one proxy under callgrind: $1 label, $2 port, $3 user to run it as, the rest its command.
count() {
  local label=$1 port=$2 user=$3 vg pid
  shift 3
  rm -f "$work"/cg.*
  local valgrind=(valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/cg.%p")
  local control=(runuser -u "$user" -- callgrind_control)
  if [ "$user" = root ]; then
    "${valgrind[@]}" "$@" >"$work/$(basename "$label").log" 2>&1 &
    vg=$! pid=$!
  else
    runuser -u "$user" -- "${valgrind[@]}" "$@" >"$work/$label.log" 2>&1 &
    vg=$!
  fi
  for _ in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.2; done
  # As another user valgrind runs under runuser: its own pid is the one callgrind_control needs.
  [ "$user" = root ] || pid=$(pgrep -u "$user" -f "callgrind.*--callgrind-out-file=$work" | head -1)
  # $select unquoted on purpose: empty for TPC-B.
  pgbench -h 127.0.0.1 -p "$port" -U bench -n $select -c $clients -j 2 -t $first bench >/dev/null
  "${control[@]}" -i on "$pid" >/dev/null
  for t in $first $second; do
    pgbench -h 127.0.0.1 -p "$port" -U bench -n $select -c $clients -j 2 -t $t bench >/dev/null
    "${control[@]}" -d "$pid" >/dev/null
  done
  kill -INT "$pid" 2>/dev/null || true
  wait "$vg" 2>/dev/null || true
  sleep 1
  if [ -n "$keep" ]; then
    local kept=$keep/$r-$(basename "$label")
    mkdir -p "$kept" && cp "$work"/cg.* "$kept"/
  fi
  python3 - "$work" "$label" $((clients * (second - first))) <<'PY'
import glob, sys
work, label, tx = sys.argv[1], sys.argv[2], int(sys.argv[3])
def total(path):
    for line in open(path):
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
dumps = sorted(glob.glob(f"{work}/cg.*.[0-9]*"), key=lambda p: int(p.rsplit(".", 1)[1]))
a, b = total(dumps[-2]), total(dumps[-1])
print(f"{label}\t{(b - a) / tx:.0f}")
PY
}

printf 'proxy\tinstructions_per_tx\n' >"$work/instructions.tsv"
for ((r = 1; r <= repeat; r++)); do
  for bin in "${binaries[@]}"; do
    count "$bin" 16500 root "$bin" run -c "$here/hapool-peer-bench.toml" | tee -a "$work/instructions.tsv"
  done
  count PgBouncer 16440 postgres /usr/sbin/pgbouncer -q "$work/pgbouncer.ini" | tee -a "$work/instructions.tsv"
done
echo "raw: $work/instructions.tsv"
