# Shared by the bench scripts; sourced, not run. Needs $here (this folder), $repo and $peer (the shared
# peer-bench harness) set by the caller.

# Builds hapool (release) and starts the harness's PostgreSQL cluster.
build_and_start_cluster() {
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/hapool-target}
  (cd "$repo" && cargo build --release --locked -q)
  "$peer/setup.sh" >/dev/null
  "$peer/cluster-pg.sh" start >/dev/null
  # The pgbench tables at scale 10, as the harness's run-pg.sh makes them, when a fresh cluster lacks them.
  local primary=(psql -X -h 127.0.0.1 -p 15432 -U bench -d bench -Atc) branches=0
  export PGPASSWORD=${PGPASSWORD:-bench}
  if [ "$("${primary[@]}" "SELECT to_regclass('pgbench_branches') IS NOT NULL")" = t ]; then
    branches=$("${primary[@]}" "SELECT count(*) FROM pgbench_branches")
  fi
  [ "$branches" = 10 ] || "$peer/pgbench.sh" --init --scale 10 >/dev/null
}

# Starts hapool (this tree's release build, or $HAPOOL_BINARY: say, scripts/build-pgo's) with $here/$1,
# logging to /tmp/hapool-bench/$3 (its pid in the same name with .pid, which peer-targets-pg.conf reads), waits
# until it listens on 127.0.0.1:$2, and stops it, the harness's proxies and its cluster when the caller exits.
# Sets hapool_pid.
start_hapool() {
  mkdir -p /tmp/hapool-bench
  # In a session of its own, as PgBouncer (-d) and pgpool-II run in the harness and as a service runs: with
  # the kernel's autogroup scheduling (sched_autogroup_enabled = 1 here) each session is one scheduling group,
  # and a proxy left in the caller's session would share one CPU share with pgbench, its load generator. That
  # cost hapool up to 17 % of its throughput and gave single queries 0.1–3 s stalls (bench/RESULTS.md, "Autogroup").
  # (setsid does not fork here: a background job of a script without job control is no group leader.)
  # Set but empty (a failed `$(scripts/build-pgo)`) is an error, not the tree's build measured in its place.
  local binary=${HAPOOL_BINARY-$CARGO_TARGET_DIR/release/hapool}
  [ -x "$binary" ] || { echo "no hapool binary at '$binary' (HAPOOL_BINARY)" >&2; exit 1; }
  echo "[$(date +%H:%M:%S)] hapool: $binary" >&2
  setsid "$binary" run -c "$here/$1" >"/tmp/hapool-bench/$3" 2>&1 &
  hapool_pid=$!
  echo "$hapool_pid" >"/tmp/hapool-bench/${3%.log}.pid"
  # shellcheck disable=SC2064 # the pid is meant to be expanded now
  trap "kill $hapool_pid 2>/dev/null || true; wait 2>/dev/null || true; '$peer/proxies-pg.sh' stop >/dev/null 2>&1 || true; '$peer/cluster-pg.sh' stop >/dev/null 2>&1 || true" EXIT
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/"$2") 2>/dev/null && break; sleep 0.1; done
}

# The cluster, PgBouncer in transaction mode, and hapool with hapool-peer-bench.toml (log /tmp/hapool-bench/$1).
start_hapool_and_pgbouncer() {
  build_and_start_cluster
  "$peer/proxies-pg.sh" start pgbouncer-tx >/dev/null
  start_hapool hapool-peer-bench.toml 16500 "$1"
}
