# Shared by the bench scripts that compare hapool with PgBouncer on the peer-bench primary; sourced, not run.
# Needs $here (this folder), $repo and $peer (the shared peer-bench harness) set by the caller.

# Builds hapool, starts the harness's PostgreSQL cluster, PgBouncer in transaction mode and hapool with
# hapool-peer-bench.toml (log in /tmp/hapool-bench/$1), stops all three when the caller exits, and waits until
# hapool listens. Sets hapool_pid.
start_hapool_and_pgbouncer() {
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/hapool-target}
  (cd "$repo" && cargo build --release --locked -q)
  "$peer/setup.sh" >/dev/null
  "$peer/cluster-pg.sh" start >/dev/null
  "$peer/proxies-pg.sh" start pgbouncer-tx >/dev/null
  mkdir -p /tmp/hapool-bench
  "$CARGO_TARGET_DIR/release/hapool" run -c "$here/hapool-peer-bench.toml" >"/tmp/hapool-bench/$1" 2>&1 &
  hapool_pid=$!
  # shellcheck disable=SC2064 # the pid is meant to be expanded now
  trap "kill $hapool_pid 2>/dev/null || true; '$peer/proxies-pg.sh' stop >/dev/null 2>&1 || true; '$peer/cluster-pg.sh' stop >/dev/null 2>&1 || true" EXIT
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/16500) 2>/dev/null && break; sleep 0.1; done
}
