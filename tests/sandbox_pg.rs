//! The PostgreSQL sandbox against real servers: replication, crashes, faults, TLS, synchronous standby.

mod common;

use std::time::{Duration, Instant};

use common::{eventually, psql, psql_conninfo};
use hapool_sandbox::{Fault, PgCluster, PgClusterOptions};

const WAIT: Duration = Duration::from_secs(20);

fn cluster(options: PgClusterOptions) -> PgCluster {
    let started = Instant::now();
    let cluster = PgCluster::start(options).expect("start PostgreSQL sandbox");
    eprintln!("PostgreSQL sandbox with {} nodes ready in {:?}", cluster.nodes().len(), started.elapsed());
    cluster
}

#[test]
fn rows_written_on_the_primary_reach_every_replica() {
    let c = cluster(PgClusterOptions::default());
    assert_eq!(c.replicas().len(), 2);
    assert!(!c.primary().is_in_recovery().unwrap());
    psql(&c, c.primary(), "CREATE TABLE t (id int primary key, v text); INSERT INTO t VALUES (1, 'one')").unwrap();
    for replica in c.replicas() {
        assert!(replica.is_in_recovery().unwrap(), "{} is a replica", replica.name());
        let seen = eventually(WAIT, || psql(&c, replica, "SELECT v FROM t WHERE id = 1").as_deref() == Ok("one"));
        assert!(seen, "row did not reach {}", replica.name());
        let err = psql(&c, replica, "INSERT INTO t VALUES (2, 'two')").unwrap_err();
        assert!(err.contains("read-only transaction"), "{err}");
    }
}

#[test]
fn a_killed_replica_restarts_and_catches_up() {
    let c = cluster(PgClusterOptions { replicas: 1, ..Default::default() });
    let replica = &c.replicas()[0];
    psql(&c, c.primary(), "CREATE TABLE t (id int)").unwrap();
    let pid = replica.pid().unwrap();
    replica.kill();
    assert!(!replica.is_running());
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    psql(&c, c.primary(), "INSERT INTO t SELECT generate_series(1, 1000)").unwrap();
    replica.start().unwrap();
    let caught_up = eventually(WAIT, || psql(&c, replica, "SELECT count(*) FROM t").as_deref() == Ok("1000"));
    assert!(caught_up, "replica did not catch up after restart");
    c.wait_streaming(WAIT).unwrap();
}

#[test]
fn stop_start_pause_resume_and_promote() {
    let c = cluster(PgClusterOptions { replicas: 1, ..Default::default() });
    let primary = c.primary();
    let replica = &c.replicas()[0];

    primary.stop();
    assert!(psql(&c, primary, "SELECT 1").is_err());
    primary.start().unwrap();
    assert_eq!(psql(&c, primary, "SELECT 1").unwrap(), "1");

    replica.pause().unwrap();
    let err = psql(&c, replica, "SELECT 1").unwrap_err();
    assert!(err.contains("timeout") || err.contains("timed out"), "paused server must hang: {err}");
    replica.resume().unwrap();
    assert_eq!(psql(&c, replica, "SELECT 1").unwrap(), "1");

    replica.promote().unwrap();
    assert!(!replica.is_in_recovery().unwrap());
    psql(&c, replica, "CREATE TABLE after_promotion (id int)").unwrap();
}

#[test]
fn the_relay_cuts_and_restores_a_node_network() {
    let c = cluster(PgClusterOptions { replicas: 1, ..Default::default() });
    let primary = c.primary();
    let replica = &c.replicas()[0];
    psql(&c, primary, "CREATE TABLE t (id int)").unwrap();

    primary.relay().set_fault(Fault::Refuse);
    assert!(psql(&c, primary, "SELECT 1").is_err(), "clients are cut off");
    // Replication goes through the relay too: the replica's receiver loses the primary.
    let lost = eventually(WAIT, || replica.psql("SELECT count(*) FROM pg_stat_wal_receiver").is_ok_and(|n| n == "0"));
    assert!(lost, "the replica should lose its WAL receiver");
    primary.psql_db("app", "INSERT INTO t VALUES (1)").unwrap();

    primary.relay().set_fault(Fault::Hang);
    let err = psql(&c, primary, "SELECT 1").unwrap_err();
    assert!(err.contains("timeout") || err.contains("timed out"), "a partition hangs: {err}");

    primary.relay().set_fault(Fault::None);
    assert_eq!(psql(&c, primary, "SELECT 1").unwrap(), "1");
    let healed =
        eventually(Duration::from_secs(30), || psql(&c, replica, "SELECT count(*) FROM t").as_deref() == Ok("1"));
    assert!(healed, "replication resumes after the network heals");
}

#[test]
fn tls_with_verify_full_and_a_synchronous_standby() {
    let c = cluster(PgClusterOptions { replicas: 1, tls: true, synchronous: true, ..Default::default() });
    let ca = c.tls_ca().unwrap();
    let conninfo =
        format!("{} sslmode=verify-full sslrootcert={} connect_timeout=3", c.app_conninfo(c.primary()), ca.display());
    let ssl = psql_conninfo(&conninfo, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").unwrap();
    assert_eq!(ssl, "t");
    let sync = c.primary().psql("SELECT application_name || ':' || sync_state FROM pg_stat_replication").unwrap();
    assert_eq!(sync, "pg1:sync");
}
