//! The manager against a real MariaDB cluster (GTID replication): roles, GTID and seconds lag, health.

mod common;

use std::time::Duration;

use common::manager::TestManager;
use hapool_sandbox::{MyCluster, MyClusterOptions};
use hapool_topology::{Health, Role};

const WAIT: Duration = Duration::from_secs(20);
const DOWN_WITHIN: Duration = Duration::from_millis(3 * 700 + 3000);

fn cluster() -> MyCluster {
    MyCluster::start(MyClusterOptions { replicas: 1, ..Default::default() }).expect("start MariaDB sandbox")
}

#[test]
fn stopped_sql_thread_shows_gtid_and_seconds_lag_and_it_recovers() {
    let my = cluster();
    my.wait_replicated(WAIT).unwrap();
    let m = TestManager::mariadb(&my, "");
    let status = m.status();
    let c = &status.clusters[0];
    assert_eq!(c.primary.as_ref().unwrap().0, my.primary().name(), "{}", m.line());
    let replica = &my.replicas()[0];
    assert_eq!(m.node(replica.name()).role, Role::Replica);
    assert!(c.nodes.iter().all(|n| n.health.health == Health::Up), "{}", m.line());
    assert!(m.wait_node(replica.name(), WAIT, |n| n.lag.transactions == Some(0)).is_some(), "{}", m.line());

    replica.sql("STOP SLAVE SQL_THREAD").unwrap();
    my.primary().sql("CREATE TABLE app.t (id INT PRIMARY KEY)").unwrap();
    for i in 0..5 {
        my.primary().sql(&format!("INSERT INTO app.t VALUES ({i})")).unwrap();
    }
    let lagging = m.wait_node(replica.name(), WAIT, |n| {
        n.lag.transactions.is_some_and(|t| t >= 6) && n.lag.seconds.is_some_and(|s| s >= 1.0)
    });
    assert!(lagging.is_some(), "{}", m.line());
    assert_eq!(m.node(replica.name()).health.health, Health::Up, "stopped on purpose is lag, not a failure");

    replica.sql("START SLAVE SQL_THREAD").unwrap();
    let caught_up =
        m.wait_node(replica.name(), WAIT, |n| n.lag.transactions == Some(0) && n.lag.seconds.is_some_and(|s| s < 1.0));
    assert!(caught_up.is_some(), "{}", m.line());
}

#[test]
fn a_killed_replica_goes_down_and_comes_back() {
    let my = cluster();
    let m = TestManager::mariadb(&my, "");
    let replica = &my.replicas()[0];
    replica.kill();
    let took = m.wait_node(replica.name(), DOWN_WITHIN, |n| n.health.health == Health::Down);
    assert!(took.is_some(), "{}", m.line());
    eprintln!("killed replica Down after {took:?}");
    replica.start().unwrap();
    assert!(m.wait_node(replica.name(), WAIT, |n| n.health.health == Health::Up).is_some(), "{}", m.line());
    assert_eq!(m.node(my.primary().name()).health.health, Health::Up);
}

#[test]
fn a_replica_whose_sql_thread_failed_is_down_though_it_answers() {
    let my = cluster();
    my.wait_replicated(WAIT).unwrap();
    let m = TestManager::mariadb(&my, "");
    let replica = &my.replicas()[0];
    // A row only the replica has, then the same key from the primary: a duplicate-key error stops replication.
    my.primary().sql("CREATE TABLE app.d (id INT PRIMARY KEY)").unwrap();
    my.wait_replicated(WAIT).unwrap();
    replica.sql("SET SESSION sql_log_bin = 0; INSERT INTO app.d VALUES (1)").unwrap();
    my.primary().sql("INSERT INTO app.d VALUES (1)").unwrap();
    let down = m.wait_node(replica.name(), WAIT, |n| n.health.health == Health::Down);
    assert!(down.is_some(), "{}", m.line());
    let problem = m.node(replica.name()).problem.unwrap_or_default();
    assert!(problem.contains("replication error"), "{problem}");
}
