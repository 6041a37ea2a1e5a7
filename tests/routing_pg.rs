//! Read/write split against a real primary and two streaming replicas: where each statement ran is read from
//! the servers themselves (their statement logs, `inet_server_port()`, `pg_stat_database`), never from the
//! proxy's own idea of it.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::proxy::{connect, TestProxy};
use common::raw::{message, raw_login, read_to_nth, read_to_readies, read_to_ready};
use common::{eventually, psql};
use hapool_sandbox::{PgCluster, PgClusterOptions, PgNode};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/routing");

fn cluster() -> PgCluster {
    PgCluster::start(PgClusterOptions::default()).expect("start PostgreSQL sandbox")
}

/// Waits until every replica has replayed everything the primary has written so far.
fn replicas_caught_up(pg: &PgCluster) {
    let target = pg.primary().psql("SELECT pg_current_wal_lsn()").unwrap();
    for r in pg.replicas() {
        let sql = format!("SELECT pg_last_wal_replay_lsn() >= '{target}'");
        assert!(eventually(Duration::from_secs(20), || r.psql(&sql).unwrap() == "t"), "{} catches up", r.name());
    }
}

/// Tables and objects the routing cases refer to, created by the application user.
const SCHEMA: &str = "CREATE TABLE accounts (id int, v text); INSERT INTO accounts VALUES (1, 'a'); \
    CREATE TABLE a (id int, x int); CREATE TABLE b (id int, v int); CREATE TABLE t (id int, v int); \
    CREATE TABLE s (id int, v int); CREATE TABLE log (id int); CREATE TABLE newtable_base (id int); \
    CREATE SEQUENCE seq; CREATE MATERIALIZED VIEW mv AS SELECT 1 AS one; \
    CREATE PROCEDURE do_something() LANGUAGE sql AS $$ SELECT 1 $$";

/// A cluster with the routing schema, every statement of the application user logged by whichever server ran
/// it, and replicas caught up.
fn logged_cluster() -> PgCluster {
    let pg = cluster();
    pg.primary().psql("CREATE ROLE bob; ALTER ROLE app SET log_statement = 'all'").unwrap();
    psql(&pg, pg.primary(), SCHEMA).unwrap();
    replicas_caught_up(&pg);
    pg
}

/// The nodes whose statement log holds `tag` (in a statement, or in the STATEMENT line of an error).
fn ran_on<'a>(pg: &'a PgCluster, tag: &str) -> Vec<&'a PgNode> {
    pg.nodes().iter().filter(|n| std::fs::read_to_string(n.log_path()).unwrap_or_default().contains(tag)).collect()
}

/// Whether the nodes that ran a statement match the route wanted: `primary` alone, or one replica alone.
fn check_route(pg: &PgCluster, tag: &str, want: &str, what: &str) -> Result<(), String> {
    let nodes = ran_on(pg, tag);
    let names: Vec<&str> = nodes.iter().map(|n| n.name()).collect();
    let primary = pg.primary().name();
    let ok = match want {
        "primary" => names == [primary],
        "replica" => names.len() == 1 && names[0] != primary,
        other => return Err(format!("{what}: unknown route {other}")),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{what}: wanted {want}, ran on {names:?}"))
    }
}

/// Runs statements in one psql session (each `-c` is its own simple Query); errors are part of the cases.
fn psql_session(proxy: &TestProxy, statements: &[String]) {
    let mut cmd = Command::new("psql");
    cmd.args(["-X", "-A", "-t", "-q", "-d", &proxy.app()]).stdin(Stdio::null()).stdout(Stdio::null());
    cmd.stderr(Stdio::null());
    for s in statements {
        cmd.arg("-c").arg(s);
    }
    cmd.status().expect("run psql");
}

/// `(route, statement)` pairs of a fixture file, with their first column split off.
fn fixture(name: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (first, rest) = l.split_once('\t').unwrap_or_else(|| panic!("bad fixture line {l:?}"));
            (first.to_string(), rest.to_string())
        })
        .collect()
}

const ROUTING: &str = "[cluster.routing]\n";

#[test]
fn every_routing_case_runs_where_the_fixtures_say() {
    let pg = logged_cluster();
    let nodes: Vec<&PgNode> = pg.nodes().iter().collect();
    let off = TestProxy::managed(&pg, &nodes, ROUTING, "");
    let session = TestProxy::managed(&pg, &nodes, &format!("{ROUTING}read_your_writes = \"session\"\n"), "");
    let mut failures = Vec::new();

    for (i, (want, sql)) in fixture("postgres.tsv").iter().enumerate() {
        let tag = format!("/* case {i} */");
        psql_session(&off, &[format!("{sql} {tag}")]);
        failures.extend(check_route(&pg, &tag, want, sql).err());
    }

    let mut sessions: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for (id, rest) in fixture("postgres-sessions.tsv") {
        let (want, sql) = rest.split_once('\t').unwrap();
        match sessions.last_mut() {
            Some((last, steps)) if *last == id => steps.push((want.to_string(), sql.to_string())),
            _ => sessions.push((id, vec![(want.to_string(), sql.to_string())])),
        }
    }
    assert!(sessions.len() >= 6, "every session read");
    for (id, steps) in &sessions {
        // The shared cases' session 4 is defined with read_your_writes = "session".
        let proxy = if id == "4" { &session } else { &off };
        let tagged: Vec<String> =
            steps.iter().enumerate().map(|(j, (_, sql))| format!("{sql} /* s{id}.{j} */")).collect();
        psql_session(proxy, &tagged);
        for (j, (want, sql)) in steps.iter().enumerate() {
            failures.extend(check_route(&pg, &format!("/* s{id}.{j} */"), want, &format!("session {id}: {sql}")).err());
        }
    }
    assert!(failures.is_empty(), "{} misrouted:\n{}", failures.len(), failures.join("\n"));
}

/// Which server answered, by port, for `n` autocommit reads from one client.
fn read_ports(proxy: &TestProxy, n: usize) -> HashMap<u16, usize> {
    proxy.block_on(async {
        let client = connect(&proxy.app()).await;
        let mut ports = HashMap::new();
        for _ in 0..n {
            let row = client.query_one("SELECT inet_server_port()", &[]).await.unwrap();
            *ports.entry(row.get::<_, i32>(0) as u16).or_insert(0) += 1;
        }
        ports
    })
}

#[test]
fn weights_one_to_three_split_ten_thousand_reads_accordingly() {
    let pg = cluster();
    let (r1, r2) = (&pg.replicas()[0], &pg.replicas()[1]);
    let proxy = TestProxy::managed_nodes(&pg, &[(pg.primary(), ""), (r1, "weight = 1"), (r2, "weight = 3")], "", "");
    let ports = read_ports(&proxy, 10_000);
    let (on_r1, on_r2) = (ports.get(&r1.direct_port()).copied(), ports.get(&r2.direct_port()).copied());
    let (on_r1, on_r2) = (on_r1.unwrap_or(0), on_r2.unwrap_or(0));
    assert_eq!(on_r1 + on_r2, 10_000, "every read on a replica, none on the primary: {ports:?}");
    let share = on_r1 as f64 / 10_000.0;
    eprintln!("weights 1:3 → {on_r1} / {on_r2}");
    assert!((share - 0.25).abs() <= 0.05 * 0.25, "r1 got {share:.3} of the reads, wanted 0.25 ± 5%");

    // The client can ask where its last statement went.
    let report = proxy.block_on(async {
        let client = connect(&proxy.app()).await;
        client.simple_query("SELECT 1").await.unwrap();
        let rows = client.simple_query("SHOW hapool.route").await.unwrap();
        rows.into_iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some((r.get("role").unwrap().to_string(), r.get("reason").unwrap().to_string()))
                }
                _ => None,
            })
            .unwrap()
    });
    assert_eq!(report, ("replica".to_string(), "read".to_string()));
}

/// Whether the manager's live topology marks `node` lagging.
fn lagging(proxy: &TestProxy, node: &PgNode) -> bool {
    let topology = proxy.manager.as_ref().unwrap().topology.borrow().clone();
    topology.clusters[0].node(&hapool_topology::NodeId(node.name().to_string())).is_some_and(|n| n.lagging)
}

#[test]
fn a_replica_past_max_replica_lag_gets_no_reads_until_it_catches_up() {
    let pg = cluster();
    let (r1, r2) = (&pg.replicas()[0], &pg.replicas()[1]);
    let keys = format!("{ROUTING}max_replica_lag_bytes = \"1MB\"\n");
    let proxy = TestProxy::managed(&pg, &[pg.primary(), r1, r2], &keys, "");
    assert!(read_ports(&proxy, 20).contains_key(&r1.direct_port()), "r1 serves reads while current");

    r1.psql("SELECT pg_wal_replay_pause()").unwrap();
    psql(&pg, pg.primary(), "CREATE TABLE big AS SELECT g, repeat('x', 1000) AS pad FROM generate_series(1, 4000) g")
        .unwrap();
    assert!(eventually(Duration::from_secs(10), || lagging(&proxy, r1)), "the manager sees r1 lagging");
    std::thread::sleep(Duration::from_millis(200)); // the listener takes the new topology
    let ports = read_ports(&proxy, 200);
    assert!(!ports.contains_key(&r1.direct_port()), "no read on the lagging replica: {ports:?}");
    assert_eq!(ports.get(&r2.direct_port()), Some(&200), "the current replica takes them: {ports:?}");

    r1.psql("SELECT pg_wal_replay_resume()").unwrap();
    assert!(eventually(Duration::from_secs(10), || !lagging(&proxy, r1)), "r1 catches up");
    std::thread::sleep(Duration::from_millis(200));
    assert!(read_ports(&proxy, 20).contains_key(&r1.direct_port()), "r1 serves reads again");
}

/// Inserts `n` rows one by one through `proxy`, reading each back right after; returns how many were missing.
fn read_backs(proxy: &TestProxy, table: &str, n: i32) -> usize {
    proxy.block_on(async {
        let client = connect(&proxy.app()).await;
        let mut missed = 0;
        for i in 0..n {
            client.execute(&format!("INSERT INTO {table} VALUES ($1)"), &[&i]).await.unwrap();
            let row = client.query_one(&format!("SELECT count(*) FROM {table} WHERE id = $1"), &[&i]).await.unwrap();
            if row.get::<_, i64>(0) != 1 {
                missed += 1;
            }
        }
        missed
    })
}

#[test]
fn causal_reads_see_the_clients_own_writes_on_lagging_replicas() {
    let pg = cluster();
    let (r1, r2) = (&pg.replicas()[0], &pg.replicas()[1]);
    // r2 lags by design; r1 only as much as streaming does.
    r2.psql("ALTER SYSTEM SET recovery_min_apply_delay = '50ms'").unwrap();
    r2.psql("SELECT pg_reload_conf()").unwrap();
    psql(&pg, pg.primary(), "CREATE TABLE seen_causal (id int); CREATE TABLE seen_off (id int)").unwrap();
    let nodes = [pg.primary(), r1, r2];

    let off = TestProxy::managed(&pg, &nodes, ROUTING, "");
    let missed = read_backs(&off, "seen_off", 100);
    eprintln!("read_your_writes = off: {missed} of 100 read-backs missed the row");
    assert!(missed > 0, "the replicas must really lag for this test to mean anything");

    let keys = format!("{ROUTING}read_your_writes = \"causal\"\ncausal_wait = \"10ms\"\n");
    let causal = TestProxy::managed(&pg, &nodes, &keys, "");
    assert_eq!(read_backs(&causal, "seen_causal", 1000), 0, "with causal, every read-back sees its row");
    let stats: HashMap<&str, u64> = causal.listener.route_stats().into_iter().collect();
    eprintln!("causal routing: {stats:?}");
    assert!(stats["reader"] > 0, "reads that could wait for a replica went there");
    assert!(stats["causal"] > 0, "reads the lagging replica could not serve in time went to the primary");
    let opened: u64 = causal.listener.stats().iter().map(|(_, p)| p.servers_opened).sum();
    assert!(opened < 50, "server connections are reused across causal checks, not reopened: {opened} opened");
}

/// `xact_commit` of the application database on each node.
fn commits(pg: &PgCluster) -> Vec<i64> {
    pg.nodes()
        .iter()
        .map(|n| n.psql("SELECT xact_commit FROM pg_stat_database WHERE datname = 'app'").unwrap().parse().unwrap())
        .collect()
}

#[test]
fn pgbench_prepared_reads_spread_over_the_primary_and_the_replicas() {
    let pg = cluster();
    let c = pg.credentials();
    let init = Command::new("pgbench")
        .args(["-i", "-q", "-s", "1", "-h", "127.0.0.1", "-p", &pg.primary().port().to_string(), "-U", &c.app_user])
        .arg(&c.app_user)
        .env("PGPASSWORD", &c.app_password)
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    replicas_caught_up(&pg);
    let before = commits(&pg);
    {
        let nodes: Vec<&PgNode> = pg.nodes().iter().collect();
        let proxy = TestProxy::managed(&pg, &nodes, &format!("{ROUTING}primary_reads = true\n"), "");
        let out = Command::new("pgbench")
            .args(["-S", "-M", "prepared", "-c", "8", "-j", "2", "-t", "500", "-n"])
            .args(["-h", "127.0.0.1", "-p", &proxy.addr.port().to_string(), "-U", "app", "app"])
            .env("PGPASSWORD", "app")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && text.contains("number of failed transactions: 0"), "{text}");
    } // the proxy closes its server connections: their statistics are flushed
    let mut spread = Vec::new();
    let flushed = eventually(Duration::from_secs(10), || {
        spread = commits(&pg).iter().zip(&before).map(|(a, b)| a - b).collect();
        spread.iter().sum::<i64>() >= 4000
    });
    eprintln!("pgbench -S -M prepared, 4000 transactions: commits per node (primary first) {spread:?}");
    assert!(flushed, "the servers counted the transactions: {spread:?}");
    for (node, n) in pg.nodes().iter().zip(&spread) {
        assert!(*n >= 800, "{} ran {n} of 4000 reads: not spread", node.name());
    }
}

#[test]
fn without_fallback_a_read_with_no_replica_fails_alone_with_57p03() {
    let pg = PgCluster::start(PgClusterOptions { replicas: 0, ..Default::default() }).expect("start PostgreSQL");
    let proxy = TestProxy::start(&pg, &format!("{ROUTING}fallback_to_primary = false\n"), "");
    proxy.block_on(async {
        let client = connect(&proxy.app()).await;
        let code = |e: tokio_postgres::Error| e.as_db_error().map(|d| d.code().code().to_string());
        let simple = client.simple_query("SELECT 1").await.unwrap_err();
        assert_eq!(code(simple).as_deref(), Some("57P03"));
        let extended = client.query_one("SELECT $1::int", &[&1]).await.unwrap_err();
        assert_eq!(code(extended).as_deref(), Some("57P03"));
        // The session goes on: writes and hinted reads run on the primary.
        client.simple_query("CREATE TABLE still_here (id int)").await.unwrap();
        let row = client.query_one("/* hapool:primary */ SELECT count(*) FROM still_here", &[]).await.unwrap();
        assert_eq!(row.get::<_, i64>(0), 0);
    });
}

#[test]
fn pipelined_reads_and_writes_each_reach_their_node() {
    let pg = cluster();
    psql(&pg, pg.primary(), "CREATE TABLE piped (id int)").unwrap();
    let nodes: Vec<&PgNode> = pg.nodes().iter().collect();
    let proxy = TestProxy::managed(&pg, &nodes, "", "");
    let replica_ports: Vec<i32> = pg.replicas().iter().map(|r| i32::from(r.direct_port())).collect();
    proxy.block_on(async {
        let client = connect(&proxy.app()).await;
        let read = client.prepare("SELECT inet_server_port()").await.unwrap();
        let write = client.prepare("INSERT INTO piped VALUES ($1) RETURNING inet_server_port()").await.unwrap();
        for i in 0..200 {
            // tokio-postgres pipelines these: the write's messages arrive while the read's unit is on a replica.
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&i];
            let (r, w) = tokio::join!(client.query_one(&read, &[]), client.query_one(&write, &params));
            assert!(replica_ports.contains(&r.unwrap().get::<_, i32>(0)), "the read ran on a replica");
            assert_eq!(w.unwrap().get::<_, i32>(0), i32::from(pg.primary().direct_port()), "the write on the primary");
        }
    });
    assert_eq!(psql(&pg, pg.primary(), "SELECT count(*) FROM piped").unwrap(), "200");
}

/// A proxy in front of `pg` with the read/write split (`keys` added), which user `trusted` logs in to without a
/// password, with `table` (id int) created and granted to it and the replicas caught up; and the ports of the
/// primary and of the replicas, as `inet_server_port()` gives them.
fn trusted_split(pg: &PgCluster, keys: &str, table: &str) -> (TestProxy, i32, Vec<i32>) {
    pg.primary().psql("CREATE ROLE trusted LOGIN PASSWORD 'tpw'").unwrap();
    psql(pg, pg.primary(), &format!("CREATE TABLE {table} (id int); GRANT ALL ON {table} TO trusted")).unwrap();
    replicas_caught_up(pg);
    let nodes: Vec<&PgNode> = pg.nodes().iter().collect();
    let users = "\n  [[cluster.user]]\n  name = \"trusted\"\n  password = \"tpw\"\n  auth = \"trust\"\n";
    let proxy = TestProxy::managed(pg, &nodes, keys, users);
    let replicas = pg.replicas().iter().map(|r| i32::from(r.direct_port())).collect();
    (proxy, i32::from(pg.primary().direct_port()), replicas)
}

/// The port in the first DataRow of raw answers (`inet_server_port()`).
fn port_in(answers: &[(u8, Vec<u8>)]) -> i32 {
    let (_, row) = answers.iter().find(|(tag, _)| *tag == b'D').expect("a row");
    std::str::from_utf8(&row[6..]).unwrap().parse().unwrap()
}

/// The errors among raw answers, as text.
fn errors_in(answers: &[(u8, Vec<u8>)]) -> Vec<String> {
    answers.iter().filter(|(tag, _)| *tag == b'E').map(|(_, body)| String::from_utf8_lossy(body).into_owned()).collect()
}

/// An extended-protocol batch is one implicit transaction up to its Sync, so a batch that writes runs whole on
/// the primary, however its messages arrive:
/// - in parts: a read and a Flush, its rows read by the client, then a write and the Sync. When the read's part
///   is placed, the rest is not there to be seen: the batch goes to the primary;
/// - pipelined behind a batch still running on a replica: placed as a whole when its first message comes, not
///   message by message.
///
/// Before, both sent the write to the replica that ran the batch's read ("cannot execute INSERT in a read-only
/// transaction").
#[test]
fn a_batch_that_writes_runs_whole_on_the_primary_however_its_messages_arrive() {
    let pg = cluster();
    let (proxy, primary, replicas) = trusted_split(&pg, "", "parts");
    let parse = |sql: &str| message(b'P', format!("\0{sql}\0\0\0").as_bytes());
    let bind = message(b'B', &[0; 8]);
    let execute = message(b'E', b"\0\0\0\0\0");
    let (sync, flush) = (message(b'S', b""), message(b'H', b""));
    let read = || [parse("SELECT inet_server_port()"), bind.clone(), execute.clone()].concat();
    let write = || [parse("INSERT INTO parts VALUES (1) RETURNING inet_server_port()"), bind.clone(), execute.clone()];
    let mut s = raw_login(&proxy, Duration::from_secs(10));
    for round in 0..5 {
        s.write_all(&[read(), flush.clone()].concat()).unwrap();
        let first = read_to_nth(&mut s, b'C', 1);
        s.write_all(&[write().concat(), sync.clone()].concat()).unwrap();
        let second = read_to_ready(&mut s);
        assert_eq!(errors_in(&second), Vec::<String>::new(), "round {round}: a batch sent in parts");
        assert_eq!((port_in(&first), port_in(&second)), (primary, primary), "round {round}: in parts, on the primary");

        let (first, second) = ([read(), sync.clone()].concat(), [read(), write().concat(), sync.clone()].concat());
        s.write_all(&[first, second].concat()).unwrap();
        let answers = read_to_readies(&mut s, 2);
        assert_eq!(errors_in(&answers), Vec::<String>::new(), "round {round}: a batch behind a read");
        let ports: Vec<i32> = answers
            .iter()
            .filter(|(tag, _)| *tag == b'D')
            .map(|(tag, body)| port_in(&[(*tag, body.clone())]))
            .collect();
        assert_eq!(ports.len(), 3, "{answers:?}");
        assert!(replicas.contains(&ports[0]), "round {round}: the read alone on a replica: {ports:?}");
        assert_eq!(ports[1..], [primary, primary], "round {round}: the batch that writes, whole on the primary");

        // A simple query that ends a batch runs in its implicit transaction: judged with it.
        let query = message(b'Q', b"INSERT INTO parts VALUES (1) RETURNING inet_server_port()\0");
        s.write_all(&[read(), query].concat()).unwrap();
        let answers = read_to_ready(&mut s);
        assert_eq!(errors_in(&answers), Vec::<String>::new(), "round {round}: a batch ended by a simple query");
        assert_eq!(port_in(&answers), primary, "round {round}: a batch ended by a write, on the primary");

        // A batch of reads larger than the proxy's first read of it: placed whole, on a replica.
        let long = format!("SELECT inet_server_port() /* {} */", "x".repeat(64 << 10));
        s.write_all(&[parse(&long), bind.clone(), execute.clone(), sync.clone()].concat()).unwrap();
        let answers = read_to_ready(&mut s);
        assert!(replicas.contains(&port_in(&answers)), "round {round}: a long batch of reads, on a replica");

        // A batch of reads whose Sync comes later, without a Flush (the client waits for nothing yet): placed
        // when its end comes, on a replica.
        s.write_all(&read()).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        s.write_all(&sync).unwrap();
        let answers = read_to_ready(&mut s);
        assert!(replicas.contains(&port_in(&answers)), "round {round}: reads in pieces, on a replica: {answers:?}");
    }
    assert_eq!(psql(&pg, pg.primary(), "SELECT count(*) FROM parts").unwrap(), "15");

    // A batch of reads waiting for its Sync does not wait past a Terminate, nor past a message no client may
    // send (a length under 4): the session ends at once, as PostgreSQL's would.
    for (last, what) in [(message(b'X', b""), "a Terminate"), (b"S\0\0\0\x02".to_vec(), "a malformed message")] {
        let mut s = raw_login(&proxy, Duration::from_secs(5));
        s.write_all(&[read(), last].concat()).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap_or_else(|e| panic!("after {what}, closed rather than waited on: {e}"));
        assert!(what != "a malformed message" || got.windows(6).any(|w| w == b"C08P01"), "{what}: {got:?}");
    }
}

/// With read_your_writes = "session", a write in the part of a batch sent after a Flush counts: the batch went
/// to the primary before that part came, and the client's later reads stay there.
#[test]
fn a_write_late_in_a_batch_counts_for_read_your_writes() {
    let pg = cluster();
    let (proxy, primary, replicas) = trusted_split(&pg, &format!("{ROUTING}read_your_writes = \"session\"\n"), "late");
    let unnamed = |sql: &str| {
        let parse = message(b'P', format!("\0{sql}\0\0\0").as_bytes());
        [parse, message(b'B', &[0; 8]), message(b'E', b"\0\0\0\0\0")].concat()
    };
    let port_query = message(b'Q', b"SELECT inet_server_port()\0");
    let mut s = raw_login(&proxy, Duration::from_secs(10));
    s.write_all(&port_query).unwrap();
    assert!(replicas.contains(&port_in(&read_to_ready(&mut s))), "before any write, reads go to a replica");
    s.write_all(&[unnamed("SELECT 1"), message(b'H', b"")].concat()).unwrap();
    read_to_nth(&mut s, b'C', 1);
    s.write_all(&[unnamed("INSERT INTO late VALUES (1)"), message(b'S', b"")].concat()).unwrap();
    assert_eq!(errors_in(&read_to_ready(&mut s)), Vec::<String>::new());
    s.write_all(&port_query).unwrap();
    assert_eq!(port_in(&read_to_ready(&mut s)), primary, "after the write, reads stay on the primary");
}

#[test]
fn psycopg_prepared_statements_through_the_split_with_causal_reads() {
    let pg = cluster();
    let nodes: Vec<&PgNode> = pg.nodes().iter().collect();
    let keys = format!("pool_size = 3\n{ROUTING}read_your_writes = \"causal\"\n");
    let proxy = TestProxy::managed(&pg, &nodes, &keys, "");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/psycopg_prepared.py");
    let out = Command::new("python3").arg(&script).arg(proxy.app()).output().expect("run python3");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.trim() == "ok", "psycopg through the split failed:\n{text}");
    let stats: HashMap<&str, u64> = proxy.listener.route_stats().into_iter().collect();
    assert!(stats["reader"] > 0, "autocommit reads went to replicas: {stats:?}");
    assert!(stats["transaction"] > 0, "transactions stayed on the primary: {stats:?}");
}

#[test]
fn session_pooling_keeps_every_statement_on_the_primary() {
    let pg = cluster();
    let nodes: Vec<&PgNode> = pg.nodes().iter().collect();
    let proxy = TestProxy::managed(&pg, &nodes, "pool_mode = \"session\"", "");
    let primary = pg.primary().direct_port();
    assert_eq!(read_ports(&proxy, 20), HashMap::from([(primary, 20)]));
}

/// A client's plain SET of a parameter the server does not report goes with its reads to the replicas (the
/// proxy brings each server connection the client gets to its values), and no other client gets it.
#[test]
fn a_clients_own_settings_follow_its_reads_to_the_replicas() {
    let pg = cluster();
    let nodes: Vec<&PgNode> = pg.nodes().iter().collect();
    let proxy = TestProxy::managed(&pg, &nodes, ROUTING, "");
    proxy.block_on(async {
        let a = connect(&proxy.app()).await;
        let b = connect(&proxy.app()).await;
        a.simple_query("SET statement_timeout = '4321ms'").await.unwrap();
        let read = "SELECT current_setting('statement_timeout'), pg_is_in_recovery()::text";
        let mut on_replicas = 0;
        for _ in 0..10 {
            let row = a.query_one(read, &[]).await.unwrap();
            assert_eq!(row.get::<_, String>(0), "4321ms", "a's reads have its statement_timeout");
            on_replicas += usize::from(row.get::<_, String>(1) == "true");
            let row = b.query_one(read, &[]).await.unwrap();
            assert_eq!(row.get::<_, String>(0), "0", "b's reads do not");
        }
        assert!(on_replicas > 0, "the reads went to the replicas");
    });
}
