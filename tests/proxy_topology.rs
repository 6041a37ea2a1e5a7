//! The proxy follows the manager's live topology: it finds the primary wherever it is listed, stops using a
//! node that went Down, and waits for a primary rather than failing at once.

mod common;

use std::time::{Duration, Instant};

use common::proxy::{connect, TestProxy};
use common::psql_conninfo;
use hapool_sandbox::{PgCluster, PgClusterOptions};

const WAIT: Duration = Duration::from_secs(20);

fn cluster() -> PgCluster {
    PgCluster::start(PgClusterOptions::default()).expect("start PostgreSQL sandbox")
}

#[test]
fn clients_reach_the_real_primary_when_it_is_listed_second() {
    let pg = cluster();
    let (r1, r2) = (&pg.replicas()[0], &pg.replicas()[1]);
    let proxy = TestProxy::managed(&pg, &[r1, pg.primary(), r2], "", "");
    let answer =
        psql_conninfo(&proxy.app(), "/* hapool:primary */ SELECT pg_is_in_recovery(), inet_server_port()").unwrap();
    assert_eq!(answer, format!("f|{}", pg.primary().direct_port()));
    psql_conninfo(&proxy.app(), "CREATE TABLE written_through_the_proxy (id int)").unwrap();
}

#[test]
fn a_session_on_a_node_that_went_down_gets_an_error_instead_of_hanging() {
    let pg = cluster();
    let primary = pg.primary();
    let proxy = TestProxy::managed(&pg, &[primary, &pg.replicas()[0]], "pool_mode = \"session\"", "");
    let client = proxy.block_on(connect(&proxy.app()));
    proxy.block_on(client.simple_query("SELECT 1")).unwrap();
    assert!(proxy.listener.stats().iter().any(|(name, _)| name.ends_with(&format!("/{}", primary.name()))));

    primary.pause().unwrap();
    let started = Instant::now();
    let outcome = proxy.block_on(async { tokio::time::timeout(WAIT, client.simple_query("SELECT 1")).await });
    let waited = started.elapsed();
    primary.resume().unwrap();
    let error = outcome.expect("the query must not hang").expect_err("the node is gone");
    let db = error.as_db_error().unwrap_or_else(|| panic!("a server error, not {error}"));
    assert_eq!(db.code().code(), "08006", "{}", db.message());
    assert!(db.message().contains("no longer usable"), "{}", db.message());
    eprintln!("in-flight query failed after {waited:?}");
    assert!(
        !proxy.listener.stats().iter().any(|(name, _)| name.ends_with(&format!("/{}", primary.name()))),
        "the down node's pool is closed: {:?}",
        proxy.listener.stats()
    );

    // Back Up: new clients are served by it again.
    let back = common::eventually(WAIT, || psql_conninfo(&proxy.app(), "SELECT 1").as_deref() == Ok("1"));
    assert!(back, "served again after the primary came back");
}

#[test]
fn without_a_usable_primary_clients_wait_then_fail_clearly() {
    let pg = cluster();
    let primary = pg.primary();
    let proxy = TestProxy::managed(&pg, &[primary, &pg.replicas()[0]], "query_wait_timeout = \"2s\"", "");
    primary.kill();
    let manager = proxy.manager.as_ref().unwrap();
    let down = common::eventually(WAIT, || {
        let t = manager.topology.borrow().clone();
        t.clusters[0].primary_node().is_some_and(|p| !p.usable())
    });
    assert!(down, "the primary is Down in the topology");
    let error = psql_conninfo(&proxy.app(), "SELECT 1").unwrap_err();
    assert!(error.contains("no usable primary") && error.contains("is down"), "{error}");

    // A client that arrives while there is no primary is served once there is one again.
    let conninfo = proxy.app().replace("connect_timeout=5", "connect_timeout=30");
    let waiting = std::thread::spawn(move || psql_conninfo(&conninfo, "SELECT 1"));
    std::thread::sleep(Duration::from_millis(300));
    primary.start().unwrap();
    // Two good probes bring it back; the client waited up to query_wait_timeout (2 s) per attempt.
    let answer = waiting.join().unwrap();
    if answer.is_err() {
        // The restart took longer than the client's wait: the next client is served.
        assert!(common::eventually(WAIT, || psql_conninfo(&proxy.app(), "SELECT 1").as_deref() == Ok("1")));
    }
}
