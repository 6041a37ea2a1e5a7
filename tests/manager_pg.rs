//! The manager against real PostgreSQL clusters: roles, lag, health with hysteresis, topology publishing.

mod common;

use std::time::Duration;

use common::manager::TestManager;
use hapool_manager::events::Change;
use hapool_sandbox::{Fault, PgCluster, PgClusterOptions};
use hapool_topology::{Health, Role};

const WAIT: Duration = Duration::from_secs(20);

/// With probes every 200 ms, a 500 ms timeout and Down after 3 misses, a dead node is Down after at most
/// 3 × (200 ms + 500 ms); the bound allows for a loaded CI machine.
const DOWN_WITHIN: Duration = Duration::from_millis(3 * 700 + 3000);

fn cluster() -> PgCluster {
    PgCluster::start(PgClusterOptions::default()).expect("start PostgreSQL sandbox")
}

#[test]
fn roles_and_positions_are_seen() {
    let pg = cluster();
    let m = TestManager::postgres(&pg, "");
    let status = m.status();
    let c = &status.clusters[0];
    assert_eq!(c.primary.as_ref().unwrap().0, pg.primary().name(), "{}", m.line());
    for n in &c.nodes {
        assert_eq!(n.health.health, Health::Up, "{}", m.line());
        let want = if n.id.0 == pg.primary().name() { Role::Primary } else { Role::Replica };
        assert_eq!(n.role, want);
        assert!(n.observation.as_ref().unwrap().position.is_some());
        assert_eq!(n.observation.as_ref().unwrap().timeline, Some(1));
    }
    let primary = c.nodes.iter().find(|n| n.role == Role::Primary).unwrap();
    let downstream = &primary.observation.as_ref().unwrap().downstream;
    assert_eq!(downstream.len(), 2, "pg_stat_replication seen by the monitor role: {downstream:?}");
}

#[test]
fn paused_replay_shows_lag_on_that_replica_only_and_it_recovers() {
    let pg = cluster();
    pg.wait_streaming(WAIT).unwrap();
    let m = TestManager::postgres(&pg, "");
    let (paused, other) = (&pg.replicas()[0], &pg.replicas()[1]);
    paused.psql("SELECT pg_wal_replay_pause()").unwrap();
    // About 10 MB of WAL.
    pg.primary()
        .psql_db("app", "CREATE TABLE big AS SELECT g, repeat('x', 1000) AS pad FROM generate_series(1, 10000) g")
        .unwrap();
    let lagging = m.wait_node(paused.name(), WAIT, |n| {
        n.lag.bytes.is_some_and(|b| b > 10_000_000) && n.lag.seconds.is_some_and(|s| s >= 1.0)
    });
    assert!(lagging.is_some(), "paused replica lag: {}", m.line());
    let other_state = m.node(other.name());
    assert!(other_state.lag.bytes.is_some_and(|b| b < 1_000_000), "the other replica keeps up: {}", m.line());
    assert!(other_state.lag.seconds.is_some_and(|s| s < 1.0), "{}", m.line());

    paused.psql("SELECT pg_wal_replay_resume()").unwrap();
    let caught_up = m.wait_node(paused.name(), WAIT, |n| {
        n.lag.bytes.is_some_and(|b| b < 64 * 1024) && n.lag.seconds.is_some_and(|s| s < 1.0)
    });
    assert!(caught_up.is_some(), "after resume: {}", m.line());
}

#[test]
fn lag_over_the_limit_is_published_and_clears() {
    let pg = cluster();
    pg.wait_streaming(WAIT).unwrap();
    let m = TestManager::postgres(&pg, "[cluster.routing]\nmax_replica_lag_bytes = \"1MB\"\n");
    let replica = &pg.replicas()[0];
    let generation = m.topology().generation;
    replica.psql("SELECT pg_wal_replay_pause()").unwrap();
    pg.primary()
        .psql_db("app", "CREATE TABLE big AS SELECT g, repeat('x', 1000) AS pad FROM generate_series(1, 3000) g")
        .unwrap();
    let lagging = m.wait(WAIT, |s| {
        s.clusters[0].nodes.iter().any(|n| n.id.0 == replica.name() && n.lagging) && s.generation > generation
    });
    assert!(lagging.is_some(), "{}", m.line());
    let published = m.topology();
    let node = published.clusters[0].nodes.iter().find(|n| n.id.0 == replica.name()).unwrap();
    assert!(node.lagging, "the published topology says so");
    replica.psql("SELECT pg_wal_replay_resume()").unwrap();
    assert!(m.wait_node(replica.name(), WAIT, |n| !n.lagging).is_some(), "{}", m.line());
}

#[test]
fn killed_paused_and_cut_off_replicas_go_down_and_come_back() {
    let pg = cluster();
    let m = TestManager::postgres(&pg, "");
    let (a, b) = (&pg.replicas()[0], &pg.replicas()[1]);

    a.kill();
    let took = m.wait_node(a.name(), DOWN_WITHIN, |n| n.health.health == Health::Down);
    assert!(took.is_some(), "killed: {}", m.line());
    eprintln!("killed replica Down after {took:?}");
    a.start().unwrap();
    assert!(m.wait_node(a.name(), WAIT, |n| n.health.health == Health::Up).is_some(), "restarted: {}", m.line());

    b.pause().unwrap();
    let took = m.wait_node(b.name(), DOWN_WITHIN, |n| n.health.health == Health::Down);
    b.resume().unwrap();
    assert!(took.is_some(), "SIGSTOPped: {}", m.line());
    eprintln!("stopped replica Down after {took:?}");
    assert!(m.wait_node(b.name(), WAIT, |n| n.health.health == Health::Up).is_some(), "resumed: {}", m.line());

    a.relay().set_fault(Fault::Hang);
    let took = m.wait_node(a.name(), DOWN_WITHIN, |n| n.health.health == Health::Down);
    a.relay().set_fault(Fault::None);
    assert!(took.is_some(), "cut off: {}", m.line());
    eprintln!("cut-off replica Down after {took:?}");
    assert!(m.wait_node(a.name(), WAIT, |n| n.health.health == Health::Up).is_some(), "reconnected: {}", m.line());

    // Every transition was logged once, in order, through Suspect. A probe slower than the timeout under the
    // suite's load makes a node Suspect and then Up again: such a blip is not one of the transitions caused here.
    let mut a_changes: Vec<String> = m
        .manager
        .events
        .recent()
        .iter()
        .filter(|e| matches!(&e.change, Change::Health { node, .. } if node.0 == a.name()))
        .map(|e| e.change.to_string())
        .collect();
    let all = a_changes.clone();
    let mut i = 0;
    while i + 1 < a_changes.len() {
        if a_changes[i].contains(" up → suspect") && a_changes[i + 1].contains(" suspect → up") {
            a_changes.drain(i..i + 2);
        } else {
            i += 1;
        }
    }
    let a_name = a.name();
    assert!(a_changes[1].starts_with(&format!("node {a_name} up → suspect")), "{a_changes:?}");
    assert!(a_changes[2].starts_with(&format!("node {a_name} suspect → down")), "{a_changes:?}");
    assert_eq!(a_changes[3], format!("node {a_name} down → up"), "{a_changes:?}");
    assert_eq!(a_changes.len(), 7, "{all:?}");
    // The primary and the other replica were never touched by a's troubles.
    assert_eq!(m.node(pg.primary().name()).health.health, Health::Up);
}

#[test]
fn a_generation_per_routing_change_and_none_while_idle() {
    let pg = cluster();
    // A probe slower than 500 ms under the suite's load would make a node Suspect in the idle window (a real
    // routing change): the idle check is about lag figures not publishing, so probes get 2 s here.
    let monitor = common::manager::MONITOR.replace("probe_timeout = \"500ms\"", "probe_timeout = \"2s\"");
    let m = TestManager::postgres_monitored(&pg, "", &monitor);
    // Every snapshot published from now on, in order.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut rx = m.manager.topology.clone();
    rx.borrow_and_update();
    let sink = seen.clone();
    let collect = async move {
        while rx.changed().await.is_ok() {
            let snapshot = rx.borrow_and_update().clone();
            sink.lock().unwrap().push(snapshot);
        }
    };
    m.spawn(collect);
    let start = m.status();
    std::thread::sleep(Duration::from_secs(10));
    let idle = m.status();
    assert!(idle.rounds[0] >= start.rounds[0] + 20, "probing went on: {} → {} rounds", start.rounds[0], idle.rounds[0]);
    let events: Vec<String> = m.manager.events.recent().iter().map(|e| e.change.to_string()).collect();
    assert_eq!(idle.generation, start.generation, "an idle healthy cluster publishes nothing; events: {events:?}");

    let replica = &pg.replicas()[0];
    replica.kill();
    assert!(m.wait_node(replica.name(), DOWN_WITHIN, |n| n.health.health == Health::Down).is_some());
    replica.start().unwrap();
    assert!(m.wait_node(replica.name(), WAIT, |n| n.health.health == Health::Up).is_some());
    std::thread::sleep(Duration::from_millis(500));
    let end = m.status().generation;
    // Up → Suspect → Down → Up: three routing changes, three generations, three snapshots.
    assert_eq!(end.0, start.generation.0 + 3, "{}", m.line());
    let seen = seen.lock().unwrap();
    let generations: Vec<u64> = seen.iter().map(|t| t.generation.0).collect();
    assert_eq!(generations, [1, 2, 3].map(|i| start.generation.0 + i));
    let healths: Vec<Health> =
        seen.iter().map(|t| t.clusters[0].nodes.iter().find(|n| n.id.0 == replica.name()).unwrap().health).collect();
    assert_eq!(healths, [Health::Suspect, Health::Down, Health::Up]);
}

#[test]
fn probes_reach_the_servers_over_tls_as_server_mode_says() {
    let pg = PgCluster::start(PgClusterOptions { replicas: 0, tls: true, ..Default::default() }).unwrap();
    let ca = pg.tls_ca().unwrap();
    let monitor_ssl = "SELECT coalesce(bool_and(s.ssl), false) FROM pg_stat_activity a \
                       JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = 'hapool-monitor'";
    let verified = format!("[cluster.tls]\nserver_mode = \"verify-full\"\nserver_ca = \"{}\"\n", ca.display());
    let m = TestManager::postgres(&pg, &verified);
    assert_eq!(m.node(pg.primary().name()).health.health, Health::Up, "{}", m.line());
    assert_eq!(pg.primary().psql(monitor_ssl).unwrap(), "t", "the monitor's connection is encrypted");
    drop(m);

    let m = TestManager::postgres(&pg, "[cluster.tls]\nserver_mode = \"disable\"\n");
    assert_eq!(m.node(pg.primary().name()).health.health, Health::Up, "{}", m.line());
    assert_eq!(pg.primary().psql(monitor_ssl).unwrap(), "f", "server_mode = disable probes in plain text");
    drop(m);

    // A CA that did not sign the server's certificate: the node cannot be verified, so it is not up.
    let dir = tempfile::tempdir().unwrap();
    let other = common::unrelated_ca(dir.path());
    let wrong = format!("[cluster.tls]\nserver_mode = \"verify-ca\"\nserver_ca = \"{}\"\n", other.display());
    let m = TestManager::postgres_as_is(&pg, &wrong);
    let node = m.node(pg.primary().name());
    assert_ne!(node.health.health, Health::Up, "{}", m.line());

    // A reload with the CA that signed it (as after a rotation): the probes' next connection is verified.
    m.reload_postgres_tls(&pg, &verified);
    let up = m.wait_node(pg.primary().name(), WAIT, |n| n.health.health == Health::Up);
    assert!(up.is_some(), "Up once the reloaded CA verifies the server: {}", m.line());
    assert_eq!(pg.primary().psql(monitor_ssl).unwrap(), "t");
}
