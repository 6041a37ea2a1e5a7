//! Idle clients park (their task ends; the listener's parking thread watches their sockets) and come back with
//! everything they had: prepared statements, session parameters, their place under the client limits. Idle
//! clients are closed after `client_idle_timeout` whether parked or not. Real PostgreSQL, tokio-postgres.

mod common;

use std::time::{Duration, Instant};

use common::eventually;
use common::proxy::{connect, first_value, TestProxy};
use hapool_sandbox::{PgCluster, PgClusterOptions};
use tokio_postgres::error::SqlState;

fn cluster() -> PgCluster {
    PgCluster::start(PgClusterOptions { replicas: 0, ..Default::default() }).expect("start PostgreSQL")
}

/// Waits (up to `within`) until `n` clients are parked.
async fn until_parked(proxy: &TestProxy, n: usize, within: Duration) {
    let parked = async {
        while proxy.listener.parked() != n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let waited = tokio::time::timeout(within, parked).await;
    assert!(waited.is_ok(), "{} clients parked, not {n}", proxy.listener.parked());
}

#[test]
fn idle_clients_park_and_come_back_with_their_statements_and_parameters() {
    let pg = cluster();
    let proxy = TestProxy::start(&pg, "pool_size = 2\nmax_client_connections = 40", "");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let clients: Vec<_> = rt.block_on(async {
        let mut clients = Vec::new();
        for i in 0..30 {
            let client = connect(&proxy.app()).await;
            let statement = client.prepare("SELECT $1::int * 10").await.unwrap();
            client.simple_query(&format!("SET application_name = 'client{i}'")).await.unwrap();
            clients.push((client, statement));
        }
        clients
    });
    // Idle: every one of them parks (a client back from a park parks again after its work, the others once the
    // clock has seen them idle across a tick).
    assert!(
        eventually(Duration::from_secs(10), || proxy.listener.parked() == 30),
        "parked: {}",
        proxy.listener.parked()
    );
    rt.block_on(async {
        for (i, (client, statement)) in clients.iter().enumerate() {
            let row = client.query_one(statement, &[&(i as i32)]).await.unwrap();
            assert_eq!(row.get::<_, i32>(0), i as i32 * 10);
            let name = first_value(client.simple_query("SHOW application_name").await.unwrap());
            assert_eq!(name, format!("client{i}"));
        }
    });
    assert!(eventually(Duration::from_secs(10), || proxy.listener.parked() == 30), "parked again");
    // Ten more fit under the limit; the forty-first is refused: parked clients hold their places.
    let more = rt.block_on(async {
        let mut more = Vec::new();
        for _ in 0..10 {
            more.push(connect(&proxy.app()).await);
        }
        let refused = tokio_postgres::connect(&proxy.app(), tokio_postgres::NoTls).await.err().expect("refused");
        assert_eq!(refused.code(), Some(&SqlState::TOO_MANY_CONNECTIONS), "{refused}");
        more
    });
    // Parked clients that hang up are gone, and their places free.
    drop(clients);
    drop(more);
    assert!(eventually(Duration::from_secs(10), || proxy.listener.parked() == 0), "hung-up clients left the parking");
    rt.block_on(async {
        let client = connect(&proxy.app()).await;
        assert_eq!(first_value(client.simple_query("SELECT 1").await.unwrap()), "1");
    });
    assert!(proxy.servers_opened() <= 2);
}

#[test]
fn a_parked_client_comes_back_for_a_query_that_can_be_cancelled() {
    let pg = cluster();
    let proxy = TestProxy::start(&pg, "pool_size = 2", "");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = connect(&proxy.app()).await;
        let token = client.cancel_token();
        // Freshly greeted clients park at once.
        until_parked(&proxy, 1, Duration::from_secs(10)).await;
        // (No cancel is sent while it is parked: tokio-postgres does not wait for a cancel to be handled, so a late
        // one would hit the query below, as it would with PostgreSQL itself.)
        let sleeping = tokio::spawn(async move { client.simple_query("SELECT pg_sleep(30)").await });
        let running = "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'";
        let started = async {
            while !pg.primary().psql(running).is_ok_and(|n| n == "1") {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), started).await.expect("the query reached the server");
        token.cancel_query(tokio_postgres::NoTls).await.unwrap();
        let result = tokio::time::timeout(Duration::from_secs(5), sleeping).await.expect("cancelled in time").unwrap();
        assert_eq!(result.unwrap_err().code(), Some(&SqlState::QUERY_CANCELED));
    });
}

#[test]
fn client_idle_timeout_ends_idle_clients_with_57p05_parked_or_not() {
    let pg = cluster();
    let transaction = TestProxy::start(&pg, "pool_size = 2\nclient_idle_timeout = \"2s\"", "");
    let session = TestProxy::start(&pg, "pool_mode = \"session\"\nclient_idle_timeout = \"2s\"", "");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut ends = Vec::new();
        for proxy in [&transaction, &session] {
            let connected = Instant::now();
            let (idle, conn) = tokio_postgres::connect(&proxy.app(), tokio_postgres::NoTls).await.unwrap();
            ends.push((connected, tokio::spawn(conn), idle, proxy));
        }
        // A client inside a transaction is not idle in this sense: it stays.
        let busy = connect(&transaction.app()).await;
        busy.batch_execute("BEGIN").await.unwrap();
        // Idle clients end within the timeout plus a tick, never before it.
        until_parked(&transaction, 1, Duration::from_secs(2)).await;
        for (connected, mut end, _client, proxy) in ends {
            let ended = loop {
                // Session pooling keeps its server connection: its idle client never parks.
                if proxy.addr == session.addr {
                    assert_eq!(session.listener.parked(), 0, "a session-pooling client parked");
                }
                match tokio::time::timeout(Duration::from_millis(100), &mut end).await {
                    Ok(ended) => break ended,
                    Err(_) => assert!(connected.elapsed() < Duration::from_secs(10), "the idle client was not closed"),
                }
            };
            let err = ended.unwrap().unwrap_err();
            assert_eq!(err.code(), Some(&SqlState::IDLE_SESSION_TIMEOUT), "{err}");
            assert!(connected.elapsed() >= Duration::from_secs(2), "closed early, after {:?}", connected.elapsed());
        }
        busy.batch_execute("SELECT 1; COMMIT").await.unwrap();
    });
}

#[test]
fn shutdown_gives_parked_clients_57p01() {
    let pg = cluster();
    let proxy = TestProxy::start(&pg, "pool_size = 2", "");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (_client, conn) = tokio_postgres::connect(&proxy.app(), tokio_postgres::NoTls).await.unwrap();
        let conn = tokio::spawn(conn);
        until_parked(&proxy, 1, Duration::from_secs(10)).await;
        proxy.begin_shutdown();
        let ended = tokio::time::timeout(Duration::from_secs(5), conn).await.expect("the parked client was told");
        let err = ended.unwrap().unwrap_err();
        assert_eq!(err.code(), Some(&SqlState::ADMIN_SHUTDOWN), "{err}");
    });
    assert_eq!(proxy.listener.parked(), 0);
}

/// A client that holds a transaction open and sends nothing is ended after `idle_transaction_timeout` with
/// 25P03 (PostgreSQL's idle-in-transaction code), its transaction rolled back and its server connection given to
/// the client waiting for it: one stalled client does not keep the pool's only connection. In both pool modes.
#[test]
fn idle_transaction_timeout_ends_a_stalled_transaction_and_frees_its_connection() {
    let pg = cluster();
    for mode in ["transaction", "session"] {
        let keys = format!("pool_mode = \"{mode}\"\npool_size = 1\nidle_transaction_timeout = \"2s\"");
        let proxy = TestProxy::start(&pg, &keys, "");
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let setup = connect(&proxy.app()).await;
            setup.batch_execute("CREATE TABLE IF NOT EXISTS stalled (id int)").await.unwrap();
            drop(setup);
            let began = Instant::now();
            let (stalled, conn) = tokio_postgres::connect(&proxy.app(), tokio_postgres::NoTls).await.unwrap();
            let mut end = tokio::spawn(conn);
            stalled.batch_execute("BEGIN; INSERT INTO stalled VALUES (1)").await.unwrap();
            let waiting = async {
                let next = connect(&proxy.app()).await;
                first_value(next.simple_query("SELECT count(*) FROM stalled").await.unwrap())
            };
            let count = tokio::time::timeout(Duration::from_secs(10), waiting).await.expect("the connection was freed");
            assert_eq!(count, "0", "{mode}: the stalled transaction was rolled back");
            let ended = tokio::time::timeout(Duration::from_secs(5), &mut end).await.expect("the client was told");
            let err = ended.unwrap().unwrap_err();
            assert_eq!(err.code(), Some(&SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT), "{mode}: {err}");
            assert!(began.elapsed() >= Duration::from_secs(2), "{mode}: ended early, after {:?}", began.elapsed());
        });
    }
}
