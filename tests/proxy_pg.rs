//! The PostgreSQL proxy against real servers and real clients: psql, pgbench, tokio-postgres.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::proxy::{connect, first_value, TestProxy};
use common::raw::{message, raw_login, read_to_nth, read_to_readies, read_to_ready, startup};
use common::{eventually, psql_conninfo};
use hapool_sandbox::{PgCluster, PgClusterOptions};

fn cluster() -> PgCluster {
    PgCluster::start(PgClusterOptions { replicas: 0, ..Default::default() }).expect("start PostgreSQL")
}

/// Runs pgbench through `conninfo` with `args`; returns its output, failing the test on errors.
fn pgbench(proxy: &TestProxy, args: &[&str]) -> String {
    let out = Command::new("pgbench")
        .args(args)
        .args(["-h", "127.0.0.1", "-p", &proxy.addr.port().to_string(), "-U", "app", "app"])
        .env("PGPASSWORD", "app")
        .output()
        .expect("run pgbench");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "pgbench {args:?} failed:\n{text}");
    if !args.contains(&"-i") {
        assert!(!text.contains("actually processed: 0\n"), "pgbench {args:?} completed no transaction:\n{text}");
        assert!(text.contains("number of failed transactions: 0 (0.000%)"), "pgbench {args:?}:\n{text}");
    }
    text
}

#[test]
fn psql_reads_and_writes_through_the_proxy() {
    let pg = cluster();
    let proxy = TestProxy::start(&pg, "", "");
    let app = proxy.app();
    psql_conninfo(&app, "CREATE TABLE t (id int primary key, v text)").unwrap();
    psql_conninfo(&app, "INSERT INTO t VALUES (1, 'one'), (2, 'two')").unwrap();
    assert_eq!(psql_conninfo(&app, "SELECT string_agg(v, ',' ORDER BY id) FROM t").unwrap(), "one,two");
    let err = psql_conninfo(&app, "SELECT * FROM missing").unwrap_err();
    assert!(err.contains("relation \"missing\" does not exist"), "{err}");
    assert_eq!(psql_conninfo(&app, "SELECT count(*) FROM t").unwrap(), "2", "the session survives an error");
    assert_eq!(psql_conninfo(&app, "SELECT current_setting('application_name')").unwrap(), "psql");
}

#[test]
fn pgbench_in_every_protocol_mode_in_transaction_pooling() {
    let pg = cluster();
    let proxy = TestProxy::start(&pg, "pool_size = 4", "");
    pgbench(&proxy, &["-i", "-s", "1", "-q"]);
    for mode in ["simple", "extended", "prepared"] {
        pgbench(&proxy, &["-M", mode, "-c", "8", "-j", "8", "-t", "50"]);
        // Fewer threads than clients: pgbench prepares with a blocking call, which stalls the thread's other
        // clients; this works only because a Parse of a known statement is answered without a server.
        pgbench(&proxy, &["-M", mode, "-c", "8", "-j", "2", "-t", "50"]);
        pgbench(&proxy, &["-M", mode, "-S", "-c", "8", "-j", "2", "-t", "200"]);
    }
    assert!(proxy.servers_opened() <= 4, "at most pool_size server connections: {}", proxy.servers_opened());
}

#[test]
fn pgbench_in_every_protocol_mode_in_session_pooling() {
    let pg = cluster();
    let proxy = TestProxy::start(&pg, "pool_mode = \"session\"\npool_size = 8", "");
    pgbench(&proxy, &["-i", "-s", "1", "-q"]);
    for mode in ["simple", "extended", "prepared"] {
        pgbench(&proxy, &["-M", mode, "-c", "4", "-j", "2", "-t", "50"]);
        pgbench(&proxy, &["-M", mode, "-S", "-c", "4", "-j", "2", "-t", "200"]);
    }
}

#[test]
fn a_thousand_clients_share_ten_server_connections() {
    let pg = cluster();
    let proxy = TestProxy::start(&pg, "pool_size = 10\nmax_client_connections = 2000", "");
    pgbench(&proxy, &["-i", "-s", "1", "-q"]);
    // -T counts the 1,000 logins too: with every test of this file running at once on two cores, 5 s once
    // passed with no transaction done. 12 s leaves room for the logins.
    pgbench(&proxy, &["-M", "prepared", "-S", "-c", "1000", "-j", "2", "-T", "12"]);
    assert!(proxy.servers_opened() <= 10, "opened {} server connections", proxy.servers_opened());
    let app_backends = pg.primary().psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'").unwrap();
    assert!(app_backends.parse::<u32>().unwrap() <= 10, "{app_backends} server connections");
}

#[test]
fn authentication_scram_md5_trust_and_failures() {
    let pg = cluster();
    pg.primary().psql("CREATE ROLE md5user LOGIN PASSWORD 'md5pw'; CREATE ROLE trusted LOGIN PASSWORD 'tpw'").unwrap();
    pg.primary().psql_db("app", "GRANT ALL ON SCHEMA public TO md5user, trusted").unwrap();
    let users = "\n  [[cluster.user]]\n  name = \"md5user\"\n  password = \"md5pw\"\n  auth = \"md5\"\n\n  [[cluster.user]]\n  name = \"trusted\"\n  password = \"tpw\"\n  auth = \"trust\"\n";
    let proxy = TestProxy::start(&pg, "", users);
    assert_eq!(psql_conninfo(&proxy.app(), "SELECT current_user").unwrap(), "app");
    assert_eq!(psql_conninfo(&proxy.conninfo("md5user", "md5pw"), "SELECT current_user").unwrap(), "md5user");
    assert_eq!(psql_conninfo(&proxy.conninfo("trusted", "ignored"), "SELECT current_user").unwrap(), "trusted");
    for (user, password) in [("app", "wrong"), ("md5user", "wrong"), ("nobody", "app")] {
        let started = Instant::now();
        let err = psql_conninfo(&proxy.conninfo(user, password), "SELECT 1").unwrap_err();
        assert!(err.contains(&format!("password authentication failed for user \"{user}\"")), "{err}");
        assert!(started.elapsed() >= Duration::from_millis(200), "failures are slowed down");
    }
}

/// A password configured as what the server keeps instead of it (`pg_authid.rolpassword`, as PgBouncer's
/// userlist holds it): with a SCRAM secret hapool checks clients and logs in to the server with the key a
/// client's login proved; with an MD5 hash it checks MD5 clients and answers the server's MD5 challenge. The
/// password itself is never in the configuration.
#[test]
fn passwords_configured_as_the_servers_secrets() {
    let pg = cluster();
    let p = pg.primary();
    p.psql("CREATE ROLE hashed LOGIN PASSWORD 'hpw'; SET password_encryption = 'md5'; CREATE ROLE oldhash LOGIN PASSWORD 'opw'")
        .unwrap();
    p.psql_db("app", "GRANT ALL ON SCHEMA public TO hashed, oldhash").unwrap();
    // The server answers an MD5-stored password with MD5 only where its pg_hba.conf says md5.
    let hba = p.data_dir().join("pg_hba.conf");
    let rules = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(&hba, format!("host all oldhash 127.0.0.1/32 md5\n{rules}")).unwrap();
    p.psql("SELECT pg_reload_conf()").unwrap();
    let secret = |role: &str| p.psql(&format!("SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'")).unwrap();
    let (scram, md5) = (secret("hashed"), secret("oldhash"));
    assert!(scram.starts_with("SCRAM-SHA-256$") && md5.starts_with("md5"), "{scram} {md5}");
    let users = format!(
        "\n  [[cluster.user]]\n  name = \"hashed\"\n  password = \"{scram}\"\n\n  [[cluster.user]]\n  \
         name = \"oldhash\"\n  password = \"{md5}\"\n  auth = \"md5\"\n"
    );
    let proxy = TestProxy::start(&pg, "pool_size = 2", &users);
    assert_eq!(psql_conninfo(&proxy.conninfo("hashed", "hpw"), "SELECT current_user").unwrap(), "hashed");
    assert_eq!(psql_conninfo(&proxy.conninfo("oldhash", "opw"), "SELECT current_user").unwrap(), "oldhash");
    for (user, wrong) in [("hashed", "opw"), ("oldhash", "hpw")] {
        let err = psql_conninfo(&proxy.conninfo(user, wrong), "SELECT 1").unwrap_err();
        assert!(err.contains(&format!("password authentication failed for user \"{user}\"")), "{err}");
    }
    // Transaction pooling: more clients than server connections; each connection opened with the key.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut clients = Vec::new();
        for _ in 0..4 {
            clients.push(connect(&proxy.conninfo("hashed", "hpw")).await);
        }
        for (i, c) in clients.iter().enumerate() {
            let row = c.query_one("SELECT $1::int + 1", &[&(i as i32)]).await.unwrap();
            assert_eq!(row.get::<_, i32>(0), i as i32 + 1);
        }
    });
    let opened: u32 = p
        .psql("SELECT count(*) FROM pg_stat_activity WHERE usename IN ('hashed', 'oldhash') AND backend_type = 'client backend'")
        .unwrap()
        .parse()
        .unwrap();
    assert!((2..=3).contains(&opened), "{opened} server connections: the pools of both users opened theirs");
}

/// PgBouncer's auth_query: a user the configuration does not name is looked up in the server at each login, as
/// the cluster's auth_user, here through a SECURITY DEFINER function (auth_user need not be a superuser). Its
/// SCRAM secret or MD5 hash checks the client and logs hapool in as that user; a password changed in the server
/// applies at the next login; a user the server does not have, or has no password for, fails like a wrong
/// password.
#[test]
fn users_looked_up_in_the_server_with_auth_query() {
    let pg = cluster();
    let p = pg.primary();
    p.psql(
        "CREATE ROLE dyn LOGIN PASSWORD 'dpw'; CREATE ROLE nopw LOGIN; \
         SET password_encryption = 'md5'; CREATE ROLE dynmd5 LOGIN PASSWORD 'mpw'",
    )
    .unwrap();
    p.psql_db(
        "app",
        "GRANT ALL ON SCHEMA public TO dyn, dynmd5; \
         CREATE FUNCTION public.lookup(u text, OUT usename text, OUT passwd text) RETURNS record \
         LANGUAGE sql SECURITY DEFINER AS $$ SELECT usename::text, passwd::text FROM pg_shadow WHERE usename = u $$; \
         REVOKE ALL ON FUNCTION public.lookup(text) FROM PUBLIC; GRANT EXECUTE ON FUNCTION public.lookup(text) TO app",
    )
    .unwrap();
    let hba = p.data_dir().join("pg_hba.conf");
    let rules = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(&hba, format!("host all dynmd5 127.0.0.1/32 md5\n{rules}")).unwrap();
    p.psql("SELECT pg_reload_conf()").unwrap();
    let keys = "pool_size = 2\nauth_user = \"app\"\nauth_dbname = \"app\"\n\
                auth_query = \"SELECT usename, passwd FROM public.lookup($1)\"";
    let proxy = TestProxy::start(&pg, keys, "");
    let who = |user: &str, password: &str| psql_conninfo(&proxy.conninfo(user, password), "SELECT current_user");
    assert_eq!(who("dyn", "dpw").unwrap(), "dyn");
    assert_eq!(who("dynmd5", "mpw").unwrap(), "dynmd5");
    // A name that would break out of a quoted literal is a parameter, not part of the query's text.
    for (user, password) in [("dyn", "mpw"), ("dynmd5", "dpw"), ("ghost", "x"), ("nopw", "x"), ("o'brien--", "x")] {
        let err = who(user, password).unwrap_err();
        assert!(err.contains(&format!("password authentication failed for user \"{user}\"")), "{user}: {err}");
    }
    // More clients than server connections: each server connection opened with the key a login proved.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut clients = Vec::new();
        for _ in 0..4 {
            clients.push(connect(&proxy.conninfo("dyn", "dpw")).await);
        }
        for c in &clients {
            assert_eq!(first_value(c.simple_query("SELECT current_user").await.unwrap()), "dyn");
        }
    });
    // A new password in the server: the next login uses it, and the pool logs in with the new key.
    p.psql("ALTER ROLE dyn PASSWORD 'dpw2'").unwrap();
    assert!(who("dyn", "dpw").is_err(), "the old password no longer logs in");
    assert_eq!(who("dyn", "dpw2").unwrap(), "dyn");

    // Unknown users naming any database they like: the lookups share one small pool; no pool per name.
    for i in 0..8 {
        let conninfo = format!("host=127.0.0.1 port={} user=ghost password=x dbname=db{i}", proxy.addr.port());
        assert!(psql_conninfo(&conninfo, "SELECT 1").is_err());
    }
    let lookups = p.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'").unwrap();
    assert!(lookups.parse::<u32>().unwrap() <= 2, "{lookups} connections of auth_user");

    // An hba trust rule lets configured users in without a password, not users looked up in the server.
    let hba = "\n  [[cluster.hba]]\n  users = [\"all\"]\n  address = \"127.0.0.1/32\"\n  method = \"trust\"\n";
    let trusting = TestProxy::start(&pg, &format!("{keys}{hba}"), "");
    assert_eq!(psql_conninfo(&trusting.conninfo("app", "wrong"), "SELECT current_user").unwrap(), "app");
    let err = psql_conninfo(&trusting.conninfo("dynmd5", "wrong"), "SELECT 1").unwrap_err();
    assert!(err.contains("password authentication failed"), "{err}");
    assert_eq!(psql_conninfo(&trusting.conninfo("dyn", "dpw2"), "SELECT current_user").unwrap(), "dyn");
}

#[test]
fn client_limits_refuse_with_53300() {
    let pg = cluster();
    let proxy = TestProxy::start(&pg, "max_client_connections = 2", "");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_a, _b) = rt.block_on(async {
        let a = tokio_postgres::connect(&proxy.app(), tokio_postgres::NoTls).await.unwrap();
        let b = tokio_postgres::connect(&proxy.app(), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(a.1);
        tokio::spawn(b.1);
        (a.0, b.0)
    });
    let err = psql_conninfo(&proxy.app(), "SELECT 1").unwrap_err();
    assert!(err.contains("too many client connections (2 allowed)"), "{err}");

    // A client that leaves frees its place; one that fails to log in holds none afterwards.
    drop(_a);
    let freed = || psql_conninfo(&proxy.app(), "SELECT 1").is_ok_and(|v| v == "1");
    assert!(eventually(Duration::from_secs(5), freed), "the place of a client that left is free again");
    for _ in 0..3 {
        let err = psql_conninfo(&proxy.conninfo("app", "wrong"), "SELECT 1").unwrap_err();
        assert!(err.contains("password authentication failed"), "{err}");
    }
    assert!(freed(), "failed logins hold no place");
}

#[test]
fn cancel_reaches_the_right_server_within_a_second() {
    let pg = cluster();
    let proxy = TestProxy::start(&pg, "pool_size = 2", "");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = connect(&proxy.app()).await;
        let other = connect(&proxy.app()).await;
        let token = client.cancel_token();
        let sleeping = tokio::spawn(async move { client.simple_query("SELECT pg_sleep(30)").await });
        let busy = tokio::spawn(async move { other.simple_query("SELECT pg_sleep(1.5)").await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        token.cancel_query(tokio_postgres::NoTls).await.unwrap();
        let err = sleeping.await.unwrap().unwrap_err();
        assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::QUERY_CANCELED), "{err}");
        assert!(started.elapsed() < Duration::from_secs(1), "cancel took {:?}", started.elapsed());
        assert!(busy.await.unwrap().is_ok(), "the other client's query was not cancelled");
    });
}

#[test]
fn prepared_statements_are_shared_across_clients_and_survive_pooling() {
    let pg = cluster();
    let proxy = TestProxy::start(&pg, "pool_size = 2\nmax_prepared_statements = 3", "");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..20i32 {
            let conninfo = proxy.app();
            tasks.push(tokio::spawn(async move {
                let client = connect(&conninfo).await;
                // Five statements over a server limit of three: evictions and re-preparation on the way.
                let statements = [
                    client.prepare("SELECT $1::int + 1").await.unwrap(),
                    client.prepare("SELECT $1::int * 2").await.unwrap(),
                    client.prepare("SELECT $1::text || 'x'").await.unwrap(),
                    client.prepare("SELECT $1::int - 1").await.unwrap(),
                    client.prepare("SELECT $1::int / 1").await.unwrap(),
                ];
                for round in 0..30 {
                    let n = i * 100 + round;
                    let s = &statements[(round as usize) % 5];
                    match (round as usize) % 5 {
                        2 => {
                            let row = client.query_one(s, &[&n.to_string()]).await.unwrap();
                            assert_eq!(row.get::<_, String>(0), format!("{n}x"));
                        }
                        k => {
                            let row = client.query_one(s, &[&n]).await.unwrap();
                            let expected = [n + 1, n * 2, 0, n - 1, n][k];
                            assert_eq!(row.get::<_, i32>(0), expected);
                        }
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    assert!(proxy.servers_opened() <= 2);
}

#[test]
fn session_parameters_follow_each_client() {
    let pg = cluster();
    let proxy = TestProxy::start(&pg, "pool_size = 1", "");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let a = connect(&proxy.app()).await;
        let b = connect(&proxy.app()).await;
        let default = first_value(b.simple_query("SHOW TimeZone").await.unwrap());
        a.simple_query("SET TimeZone = 'Asia/Tokyo'").await.unwrap();
        assert_eq!(first_value(b.simple_query("SHOW TimeZone").await.unwrap()), default, "b keeps its time zone");
        assert_eq!(first_value(a.simple_query("SHOW TimeZone").await.unwrap()), "Asia/Tokyo", "a keeps its own");
    });
    assert_eq!(proxy.servers_opened(), 1, "both clients used the same server connection");
}

#[test]
fn a_client_vanishing_mid_transaction_leaves_no_dirty_connection() {
    let pg = cluster();
    for mode in ["transaction", "session"] {
        vanish_mid_transaction(&pg, &format!("pool_size = 1\npool_mode = \"{mode}\""));
    }
}

fn vanish_mid_transaction(pg: &PgCluster, keys: &str) {
    let proxy = TestProxy::start(pg, keys, "");
    psql_conninfo(&proxy.app(), "CREATE TABLE IF NOT EXISTS t (id int)").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&proxy.app(), tokio_postgres::NoTls).await.unwrap();
        let driver = tokio::spawn(conn);
        client.batch_execute("BEGIN; INSERT INTO t VALUES (1)").await.unwrap();
        drop(client);
        driver.abort();
    });
    // The only server connection was rolled back and reused: the next client sees no row and no transaction.
    let clean = eventually(Duration::from_secs(10), || {
        psql_conninfo(&proxy.app(), "SELECT count(*) FROM t").as_deref() == Ok("0")
    });
    assert!(clean, "{keys}: the abandoned transaction was rolled back");
    let in_tx =
        pg.primary().psql("SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'").unwrap();
    assert_eq!(in_tx, "0", "{keys}");
    assert_eq!(proxy.servers_opened(), 1, "{keys}: the server connection was reused, not leaked");
}

fn read_all(stream: &mut TcpStream) -> Vec<u8> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    out
}

#[test]
fn malformed_input_gets_a_clean_error_and_harms_no_one_else() {
    let pg = cluster();
    let users = "\n  [[cluster.user]]\n  name = \"postgres\"\n  auth = \"trust\"\n  password = \"postgres\"\n";
    let proxy = TestProxy::start(&pg, "max_message_size = \"1MB\"", users);

    // Garbage instead of a startup packet.
    let mut s = TcpStream::connect(proxy.addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let reply = read_all(&mut s);
    assert!(reply.is_empty() || reply[0] == b'E', "{reply:?}");

    // A 2 GB length prefix after login.
    let mut s = TcpStream::connect(proxy.addr).unwrap();
    s.write_all(&startup("postgres")).unwrap();
    let mut greeting = [0u8; 1];
    s.read_exact(&mut greeting).unwrap();
    assert_eq!(greeting[0], b'R');
    s.write_all(&[b'Q', 0x7f, 0xff, 0xff, 0xff]).unwrap();
    let reply = String::from_utf8_lossy(&read_all(&mut s)).into_owned();
    assert!(reply.contains("08P01") && reply.contains("exceeds the limit"), "{reply}");

    // A negative length, and a truncated frame followed by a hang-up.
    for bytes in [&[b'Q', 0xff, 0xff, 0xff, 0xf0][..], &[b'Q', 0, 0, 0, 100, b'S']] {
        let mut s = TcpStream::connect(proxy.addr).unwrap();
        s.write_all(&startup("postgres")).unwrap();
        s.read_exact(&mut greeting).unwrap();
        s.write_all(bytes).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let _ = read_all(&mut s);
    }

    // An unsupported protocol version.
    let mut s = TcpStream::connect(proxy.addr).unwrap();
    s.write_all(&[0, 0, 0, 8, 0, 2, 0, 0]).unwrap();
    let reply = String::from_utf8_lossy(&read_all(&mut s)).into_owned();
    assert!(reply.contains("unsupported frontend protocol 2.0"), "{reply}");

    // Everyone else is still served.
    assert_eq!(psql_conninfo(&proxy.app(), "SELECT 42").unwrap(), "42");
}

#[test]
fn copy_in_and_out_and_an_aborted_copy() {
    let pg = cluster();
    let proxy = TestProxy::start(&pg, "pool_size = 1", "");
    let app = proxy.app();
    psql_conninfo(&app, "CREATE TABLE t (id int, v text)").unwrap();

    // psql: COPY FROM STDIN over the simple protocol.
    let mut child = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &app, "-c", "COPY t FROM STDIN"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let rows: String = (1..=1000).map(|i| format!("{i}\trow {i}\n")).collect();
    child.stdin.take().unwrap().write_all(rows.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(psql_conninfo(&app, "SELECT count(*) FROM t").unwrap(), "1000");
    let out = psql_conninfo(&app, "COPY (SELECT id FROM t WHERE id <= 3 ORDER BY id) TO STDOUT").unwrap();
    assert_eq!(out, "1\n2\n3");

    // tokio-postgres: COPY over the extended protocol, one finished and one abandoned midway.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use bytes::Bytes;
        use futures_util::SinkExt;
        let client = connect(&proxy.app()).await;
        let sink = client.copy_in("COPY t FROM STDIN").await.unwrap();
        futures_util::pin_mut!(sink);
        sink.send(Bytes::from_static(b"2001\tx\n2002\ty\n")).await.unwrap();
        assert_eq!(sink.finish().await.unwrap(), 2);
        {
            let abandoned = client.copy_in::<_, Bytes>("COPY t FROM STDIN").await.unwrap();
            futures_util::pin_mut!(abandoned);
            abandoned.send(Bytes::from_static(b"3001\tz\n")).await.unwrap();
            // dropped without finish: the driver sends CopyFail
        }
        let n: i64 = client.query_one("SELECT count(*) FROM t", &[]).await.unwrap().get(0);
        assert_eq!(n, 1002, "the aborted COPY added nothing");
    });
    assert_eq!(psql_conninfo(&app, "SELECT count(*) FROM t").unwrap(), "1002");
    assert_eq!(proxy.servers_opened(), 1, "the one server connection survived every COPY");
}

#[test]
fn psycopg_server_side_prepared_statements_in_transaction_pooling() {
    let pg = cluster();
    let proxy = TestProxy::start(&pg, "pool_size = 3", "");
    run_psycopg_script(&proxy, "psycopg_prepared.py");
    assert!(proxy.servers_opened() <= 3);
}

/// Runs `tests/py/<script>` with the proxy's application conninfo; it must print `ok`.
fn run_psycopg_script(proxy: &TestProxy, script: &str) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py").join(script);
    let out = Command::new("python3").arg(&script).arg(proxy.app()).output().expect("run python3");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() && text.trim() == "ok",
        "{} through hapool failed (scripts/install-deps installs psycopg):\n{text}",
        script.display()
    );
}

#[test]
fn psycopg_settings_stay_with_the_client_that_made_them() {
    let pg = cluster();
    let proxy = TestProxy::start(&pg, "pool_size = 1", "");
    run_psycopg_script(&proxy, "psycopg_settings.py");
    assert_eq!(proxy.servers_opened(), 1);
    let session = TestProxy::start(&pg, "pool_mode = \"session\"\npool_size = 2", "");
    run_psycopg_script(&session, "psycopg_settings.py");
}

#[test]
fn tls_between_clients_and_the_proxy() {
    let pg = PgCluster::start(PgClusterOptions { replicas: 0, tls: true, ..Default::default() }).unwrap();
    let (cert, key) = pg.tls_cert_and_key().unwrap();
    let ca = pg.tls_ca().unwrap();
    let tls = |mode: &str| {
        format!(
            "\n  [cluster.tls]\n  client_mode = \"{mode}\"\n  cert = \"{}\"\n  key = \"{}\"\n",
            cert.display(),
            key.display()
        )
    };
    let conninfo = |proxy: &TestProxy, ssl: &str| format!("{} {ssl}", proxy.app());

    let required = TestProxy::start(&pg, &tls("require"), "");
    let verified = format!("sslmode=verify-full sslrootcert={}", ca.display());
    let info = psql_conninfo(&conninfo(&required, &verified), "\\conninfo").unwrap();
    assert!(info.contains("SSL connection (protocol: TLSv1.3"), "{info}");
    assert_eq!(psql_conninfo(&conninfo(&required, "sslmode=require"), "SELECT 1").unwrap(), "1");
    let err = psql_conninfo(&conninfo(&required, "sslmode=disable"), "SELECT 1").unwrap_err();
    assert!(err.contains("this listener requires TLS"), "{err}");
    // SCRAM bound to the TLS connection (SCRAM-SHA-256-PLUS, tls-server-end-point): libpq checks that the
    // proxy, not something in between, holds the certificate the session ended at.
    let bound = format!("{verified} channel_binding=require");
    assert_eq!(psql_conninfo(&conninfo(&required, &bound), "SELECT 1").unwrap(), "1");
    let unbound = "sslmode=require channel_binding=disable";
    assert_eq!(psql_conninfo(&conninfo(&required, unbound), "SELECT 1").unwrap(), "1");

    let allowed = TestProxy::start(&pg, &tls("allow"), "");
    assert_eq!(psql_conninfo(&conninfo(&allowed, "sslmode=disable"), "SELECT 1").unwrap(), "1");
    // Without TLS there is nothing to bind to: libpq refuses to go on when it was told to require binding.
    let err = psql_conninfo(&conninfo(&allowed, "sslmode=disable channel_binding=require"), "SELECT 1").unwrap_err();
    assert!(err.contains("channel binding"), "{err}");
    let info = psql_conninfo(&conninfo(&allowed, "sslmode=require"), "\\conninfo").unwrap();
    assert!(info.contains("SSL connection"), "{info}");
    // Idle across more than two ticks of the parking clock: the plain client parks, the TLS one keeps its task
    // (its TLS state is not handed over).
    let idle = |ssl: &str| {
        let info = conninfo(&allowed, ssl);
        let mut psql = Command::new("psql");
        psql.args([info.as_str(), "-c", "SELECT 1", "-c", "\\! sleep 5"]).stdout(std::process::Stdio::null());
        psql.spawn().unwrap()
    };
    let (mut tls_client, mut plain_client) = (idle("sslmode=require"), idle("sslmode=disable"));
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_millis(4000) {
        assert!(allowed.listener.parked() <= 1, "the TLS client parked");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(allowed.listener.parked(), 1, "the plain client parked");
    assert!(tls_client.wait().unwrap().success() && plain_client.wait().unwrap().success());
    // pgbench over TLS through the pool.
    let over_tls = conninfo(&allowed, "sslmode=require");
    for args in [&["-i", "-q", "-s", "1"][..], &["-n", "-S", "-c", "4", "-j", "2", "-t", "50"]] {
        let out = Command::new("pgbench").args(args).arg(&over_tls).output().unwrap();
        assert!(out.status.success(), "pgbench {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// Certificates rotated the usual way: the files are replaced in place, then hapool reloads (SIGHUP) with a
/// configuration that did not change. New clients get the new certificate; a reload whose files are broken is
/// refused and the certificate before it stays.
#[test]
fn a_reload_reads_rotated_certificate_files_for_new_clients() {
    let pg = PgCluster::start(PgClusterOptions { replicas: 0, tls: true, ..Default::default() }).unwrap();
    let (cert, key) = pg.tls_cert_and_key().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (live_cert, live_key) = (dir.path().join("live.crt"), dir.path().join("live.key"));
    std::fs::copy(&cert, &live_cert).unwrap();
    std::fs::copy(&key, &live_key).unwrap();
    let keys = format!(
        "\n  [cluster.tls]\n  client_mode = \"require\"\n  cert = \"{}\"\n  key = \"{}\"\n",
        live_cert.display(),
        live_key.display()
    );
    let proxy = TestProxy::start(&pg, &keys, "");
    let verified_by = |root: &std::path::Path| {
        let conninfo = format!("{} sslmode=verify-full sslrootcert={}", proxy.app(), root.display());
        psql_conninfo(&conninfo, "SELECT 1")
    };
    let sandbox_ca = pg.tls_ca().unwrap();
    assert_eq!(verified_by(&sandbox_ca).unwrap(), "1");

    // The new certificate: self-signed, for 127.0.0.1.
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=rotated", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&live_key)
        .arg("-out")
        .arg(&live_cert)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    proxy.reload(&pg, &keys, "").unwrap();
    let err = verified_by(&sandbox_ca).unwrap_err();
    assert!(err.contains("certificate verify failed"), "{err}");
    assert_eq!(verified_by(&live_cert).unwrap(), "1", "new clients get the rotated certificate");

    std::fs::write(&live_key, "not a key").unwrap();
    let err = proxy.reload(&pg, &keys, "").unwrap_err();
    assert!(err.contains("TLS"), "{err}");
    assert_eq!(verified_by(&live_cert).unwrap(), "1", "a refused reload keeps the certificate before it");
}

#[test]
fn tls_from_the_proxy_to_the_server_with_verification() {
    let pg = PgCluster::start(PgClusterOptions { replicas: 0, tls: true, ..Default::default() }).unwrap();
    let ca = pg.tls_ca().unwrap();
    let server_tls = |mode: &str, ca: &std::path::Path| {
        format!("\n  [cluster.tls]\n  server_mode = \"{mode}\"\n  server_ca = \"{}\"\n", ca.display())
    };
    let ssl_used = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

    let verified = TestProxy::start(&pg, &server_tls("verify-full", &ca), "");
    assert_eq!(psql_conninfo(&verified.app(), ssl_used).unwrap(), "t");
    let plain = TestProxy::start(&pg, "\n  [cluster.tls]\n  server_mode = \"disable\"\n", "");
    assert_eq!(psql_conninfo(&plain.app(), ssl_used).unwrap(), "f");
    let preferred = TestProxy::start(&pg, "", "");
    assert_eq!(psql_conninfo(&preferred.app(), ssl_used).unwrap(), "t", "the default, prefer, encrypts when it can");

    // A CA that did not sign the server's certificate.
    let dir = tempfile::tempdir().unwrap();
    let other = common::unrelated_ca(dir.path());
    let wrong = TestProxy::start(&pg, &server_tls("verify-ca", &other), "");
    let err = psql_conninfo(&wrong.app(), "SELECT 1").unwrap_err();
    assert!(err.contains("TLS handshake failed"), "{err}");
}

/// A server CA rotated the usual way (its file replaced in place, then a reload of an unchanged configuration)
/// reaches the pools that already exist: the server connections they open after the reload are verified
/// against the new CA.
#[test]
fn a_reload_gives_existing_pools_the_rotated_server_ca() {
    let pg = PgCluster::start(PgClusterOptions { replicas: 0, tls: true, ..Default::default() }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let live_ca = dir.path().join("live-ca.crt");
    std::fs::copy(common::unrelated_ca(dir.path()), &live_ca).unwrap();
    let tls = format!("\n  [cluster.tls]\n  server_mode = \"verify-ca\"\n  server_ca = \"{}\"\n", live_ca.display());
    let proxy = TestProxy::start(&pg, &tls, "");
    let err = psql_conninfo(&proxy.app(), "SELECT 1").unwrap_err();
    assert!(err.contains("TLS handshake failed"), "{err}");
    assert_eq!(proxy.listener.stats().len(), 1, "the failed client made the pool");

    std::fs::copy(pg.tls_ca().unwrap(), &live_ca).unwrap();
    proxy.reload(&pg, &tls, "").unwrap();
    assert_eq!(proxy.listener.stats().len(), 1, "an unchanged configuration keeps the pool");
    let ssl_used = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    assert_eq!(psql_conninfo(&proxy.app(), ssl_used).unwrap(), "t", "verified against the rotated CA");
}

#[test]
fn shutdown_lets_open_transactions_finish_then_ends_sessions_with_57p01() {
    let pg = cluster();
    let proxy = TestProxy::start(&pg, "pool_size = 2", "");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (busy, conn) = tokio_postgres::connect(&proxy.app(), tokio_postgres::NoTls).await.unwrap();
        let busy_conn = tokio::spawn(conn);
        let (idle, conn) = tokio_postgres::connect(&proxy.app(), tokio_postgres::NoTls).await.unwrap();
        let idle_conn = tokio::spawn(conn);
        busy.batch_execute("CREATE TABLE t (id int); BEGIN; INSERT INTO t VALUES (1)").await.unwrap();

        proxy.begin_shutdown();
        // The idle session is told at once; its connection task ends with the server's error.
        let idle_end = tokio::time::timeout(Duration::from_secs(5), idle_conn).await.expect("idle session ended");
        let err = idle_end.unwrap().unwrap_err();
        assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::ADMIN_SHUTDOWN), "{err}");
        assert!(idle.simple_query("SELECT 1").await.is_err());

        // The open transaction may finish; then that session ends too.
        busy.batch_execute("INSERT INTO t VALUES (2); COMMIT").await.unwrap();
        let busy_end = tokio::time::timeout(Duration::from_secs(5), busy_conn).await.expect("busy session ended");
        assert!(busy_end.unwrap().is_err());
        assert!(tokio_postgres::connect(&proxy.app(), tokio_postgres::NoTls).await.is_err(), "no new clients");
    });
    assert_eq!(pg.primary().psql_db("app", "SELECT count(*) FROM t").unwrap(), "2", "the transaction committed");
}

#[test]
fn hba_rules_choose_the_method_by_client_address() {
    let pg = cluster();
    let rules = "\n  [[cluster.user]]\n  name = \"other\"\n  password = \"pw\"\n\
                 \n  [[cluster.hba]]\n  users = [\"app\"]\n  address = \"127.0.0.0/8\"\n  method = \"trust\"\n\
                 \n  [[cluster.hba]]\n  users = [\"all\"]\n  address = \"10.0.0.0/8\"\n  method = \"password\"\n";
    let proxy = TestProxy::start(&pg, "", rules);
    assert_eq!(psql_conninfo(&proxy.conninfo("app", "not-the-password"), "SELECT current_user").unwrap(), "app");
    let err = psql_conninfo(&proxy.conninfo("other", "pw"), "SELECT 1").unwrap_err();
    assert!(err.contains("no hba rule allows user \"other\" from 127.0.0.1"), "{err}");
}

#[test]
fn reload_adds_users_for_new_clients_and_refuses_what_cannot_change_live() {
    let pg = cluster();
    pg.primary().psql("CREATE ROLE late LOGIN PASSWORD 'latepw'").unwrap();
    let proxy = TestProxy::start(&pg, "pool_size = 2", "");
    let late = proxy.conninfo("late", "latepw");
    assert!(psql_conninfo(&late, "SELECT 1").unwrap_err().contains("password authentication failed"));

    let rt = tokio::runtime::Runtime::new().unwrap();
    let (before, conn) = rt.block_on(tokio_postgres::connect(&proxy.app(), tokio_postgres::NoTls)).unwrap();
    rt.spawn(conn);

    let users = "\n  [[cluster.user]]\n  name = \"late\"\n  password = \"latepw\"\n";
    proxy.reload(&pg, "pool_size = 3", users).unwrap();
    assert_eq!(psql_conninfo(&late, "SELECT current_user").unwrap(), "late", "new clients see the new user");
    let row = rt.block_on(before.query_one("SELECT 7", &[])).unwrap();
    assert_eq!(row.get::<_, i32>(0), 7, "a session from before the reload keeps working");

    let err = proxy.reload(&pg, "pool_mode = \"session\"", users).unwrap_err();
    assert!(err.contains("pool_mode cannot change while running"), "{err}");
    assert_eq!(psql_conninfo(&late, "SELECT 1").unwrap(), "1", "a refused reload changes nothing");
}

/// A proxy with user `trusted` (trust auth; the role exists on the server) besides app.
/// What a startup packet asks for is done or refused, never dropped in silence. A reported parameter is
/// followed, from `options` (libpq's PGOPTIONS) too. In transaction pooling so is a setting such as search_path
/// (JDBC's currentSchema, asyncpg's server_settings), on every server connection the client gets, and with
/// PostgreSQL's meaning: RESET, RESET ALL and DISCARD ALL return to it. One the server refuses refuses the login;
/// a role is refused at login (08P01), unless the cluster lists the name in ignore_startup_parameters (JDBC's
/// extra_float_digits is by default). Session pooling: `session_pooling_keeps_startup_settings_as_the_defaults`.
#[test]
fn startup_parameters_are_followed_or_refused_never_dropped() {
    let pg = cluster();
    pg.primary().psql("CREATE SCHEMA s1; CREATE SCHEMA s2").unwrap();
    let proxy = TestProxy::start(&pg, "pool_size = 1", "");
    let app = proxy.app();
    let with = |options: &str| format!("{app} options='{options}'");
    let both = "SELECT current_setting('DateStyle') || ' | ' || current_setting('search_path')";
    let options = "-c DateStyle=SQL,\\\\ DMY -c extra_float_digits=3 -c search_path=s1,\\\\ public";
    assert_eq!(psql_conninfo(&with(options), both).unwrap(), "SQL, DMY | s1, public", "a list stays a list");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // Two clients, one server connection: each gets its own settings on it.
        let a = connect(&with("-c search_path=s1 -c statement_timeout=1234")).await;
        let b = connect(&app).await;
        async fn shown(c: &tokio_postgres::Client) -> String {
            let show = "SELECT current_setting('search_path') || ' | ' || current_setting('statement_timeout')";
            first_value(c.simple_query(show).await.unwrap())
        }
        assert_eq!(shown(&a).await, "s1 | 1234ms");
        assert_eq!(shown(&b).await, "\"$user\", public | 0", "b keeps the server's defaults");
        assert_eq!(shown(&a).await, "s1 | 1234ms", "a's settings on the connection again");
        a.simple_query("SET search_path = s2").await.unwrap();
        assert_eq!(shown(&a).await, "s2 | 1234ms");
        a.simple_query("RESET search_path").await.unwrap();
        assert_eq!(shown(&a).await, "s1 | 1234ms", "RESET returns to the startup value");
        a.simple_query("SET search_path = s2").await.unwrap();
        a.simple_query("DISCARD ALL").await.unwrap();
        assert_eq!(shown(&a).await, "s1 | 1234ms", "so does DISCARD ALL");
        a.simple_query("SET statement_timeout = 99").await.unwrap();
        a.simple_query("RESET ALL").await.unwrap();
        assert_eq!(shown(&a).await, "s1 | 1234ms", "and RESET ALL");
        assert_eq!(shown(&b).await, "\"$user\", public | 0");
    });
    assert_eq!(proxy.servers_opened(), 1, "both clients used the same server connection");

    // A value the server refuses refuses the login, with the server's error.
    let refused = psql_conninfo(&with("-c statement_timeout=soon"), "SELECT 1").unwrap_err();
    assert!(refused.contains("invalid value for parameter \"statement_timeout\""), "{refused}");
    let refused = psql_conninfo(&with("-c role=postgres"), "SELECT 1").unwrap_err();
    assert!(refused.contains("unsupported startup parameter: role"), "{refused}");
    let refused = psql_conninfo(&with("-d 5"), "SELECT 1").unwrap_err();
    assert!(refused.contains("unsupported switch"), "{refused}");

    // A role sent directly is refused before the password.
    let mut s = TcpStream::connect(proxy.addr).unwrap();
    let mut body = 196_608i32.to_be_bytes().to_vec();
    body.extend_from_slice(b"user\0app\0database\0app\0role\0postgres\0\0");
    s.write_all(&[((body.len() + 4) as i32).to_be_bytes().to_vec(), body].concat()).unwrap();
    let reply = read_all(&mut s);
    assert_eq!(reply.first(), Some(&b'E'), "refused before authentication: {reply:?}");
    let text = String::from_utf8_lossy(&reply);
    assert!(text.contains("08P01") && text.contains("unsupported startup parameter: role"), "{text}");
}

/// Transaction pooling: SETs and RESETs among other statements of one query stay with the client that sent
/// them, on the next server connection it gets, when the query succeeded; a query that failed changed nothing
/// (it is one transaction). Before, they applied to the connection they ran on only, and a RESET left the
/// proxy's record of that connection stale.
#[test]
fn settings_among_other_statements_of_a_query_stay_with_the_client() {
    let pg = cluster();
    pg.primary().psql("CREATE SCHEMA s1; CREATE SCHEMA s2").unwrap();
    let proxy = TestProxy::start(&pg, "pool_size = 1", "");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let a = connect(&format!("{} options='-c search_path=s1'", proxy.app())).await;
        let b = connect(&proxy.app()).await;
        async fn shown(c: &tokio_postgres::Client) -> String {
            let show = "SELECT current_setting('search_path') || ' | ' || current_setting('work_mem')";
            first_value(c.simple_query(show).await.unwrap())
        }
        let defaults = "\"$user\", public | 4MB";
        a.simple_query("SET search_path = s2; SELECT 1; SET work_mem = '8MB'").await.unwrap();
        assert_eq!(shown(&b).await, defaults, "the other client gets the connection cleared");
        assert_eq!(shown(&a).await, "s2 | 8MB", "both SETs came along");
        a.simple_query("SELECT 1; RESET search_path").await.unwrap();
        assert_eq!(shown(&b).await, defaults);
        assert_eq!(shown(&a).await, "s1 | 8MB", "RESET returns to the startup value");
        assert!(a.simple_query("SET search_path = s2; SELECT 1/0").await.is_err());
        assert_eq!(shown(&a).await, "s1 | 8MB", "a failed query rolled its SET back");
        assert_eq!(shown(&b).await, defaults);
        a.simple_query("SET work_mem = '16MB'; RESET ALL").await.unwrap();
        assert_eq!(shown(&b).await, defaults);
        assert_eq!(shown(&a).await, "s1 | 4MB", "RESET ALL after the SET, in order");
    });
    assert_eq!(proxy.servers_opened(), 1, "both clients used the same server connection");
}

/// Transaction pooling: a followed SET that fails leaves what the connection has unknown to the proxy. The next
/// client of that connection must not inherit the settings the failing client made before (they are cleared,
/// not left in place because the proxy no longer knew them).
#[test]
fn a_failed_set_does_not_hand_the_clients_earlier_settings_to_the_next() {
    let pg = cluster();
    pg.primary().psql("CREATE SCHEMA s1; GRANT USAGE ON SCHEMA s1 TO PUBLIC").unwrap();
    let proxy = TestProxy::start(&pg, "pool_size = 1", "");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let a = connect(&proxy.app()).await;
        let b = connect(&proxy.app()).await;
        a.simple_query("SET search_path = s1").await.unwrap();
        assert!(a.simple_query("SET work_mem = 'lots'").await.is_err(), "an invalid value");
        let show = "SELECT current_setting('search_path')";
        assert_eq!(first_value(b.simple_query(show).await.unwrap()), "\"$user\", public", "b got a's search_path");
        assert_eq!(first_value(a.simple_query(show).await.unwrap()), "s1", "a keeps its own");
    });
}

/// Transaction pooling, one server connection, client A then client B: state A leaves through the less common
/// doors never reaches B. SQL EXECUTE of a statement whose effects the proxy did not read, a fast-path function
/// call, a Bind of a statement the proxy prepared for another client (its name read from pg_prepared_statements),
/// and a clearing of A's role that the failure of B's own setting would have rolled back, had both gone in one
/// query.
#[test]
fn state_left_through_side_doors_never_reaches_another_client() {
    let pg = cluster();
    pg.primary().psql("CREATE SCHEMA s1; GRANT USAGE ON SCHEMA s1 TO PUBLIC; CREATE ROLE reporting").unwrap();
    let proxy = trusted_proxy(&pg, "pool_size = 1");
    pg.primary().psql("GRANT reporting TO trusted").unwrap();
    let timeout = Duration::from_secs(10);
    let query = |s: &mut TcpStream, sql: &str| {
        s.write_all(&message(b'Q', format!("{sql}\0").as_bytes())).unwrap();
        read_to_ready(s)
    };
    let value = |answer: &[(u8, Vec<u8>)]| {
        let row = answer.iter().find(|(tag, _)| *tag == b'D').map(|(_, row)| row.clone()).unwrap_or_default();
        String::from_utf8_lossy(row.get(6..).unwrap_or_default()).into_owned()
    };
    let defaults = "\"$user\", public";
    let show = "SELECT current_setting('search_path')";
    let mut a = raw_login(&proxy, timeout);
    let mut b = raw_login(&proxy, timeout);
    let mut leaks = Vec::new();

    // B prepares a statement through the protocol (the proxy names it hapool_…); A finds its name.
    let text = "SELECT set_config('search_path', 's1', false)";
    let batch = [
        message(b'P', format!("b1\0{text}\0\0\0").as_bytes()),
        message(b'B', b"\0b1\0\0\0\0\0\0\0"),
        message(b'E', b"\0\0\0\0\0"),
        message(b'S', b""),
    ];
    b.write_all(&batch.concat()).unwrap();
    read_to_ready(&mut b);
    query(&mut b, "RESET search_path");
    let name = value(&query(&mut a, "SELECT name FROM pg_prepared_statements WHERE statement LIKE '%search%'"));
    assert!(name.starts_with("hapool_"), "{name}");

    // SQL EXECUTE of it.
    query(&mut a, &format!("EXECUTE {name}"));
    if value(&query(&mut b, show)) != defaults {
        leaks.push("SQL EXECUTE of a statement the proxy prepared");
    }
    // A Bind of it under its proxy-wide name: refused as unknown, as it would be without the proxy.
    let bind =
        [message(b'B', format!("\0{name}\0\0\0\0\0\0\0").as_bytes()), message(b'E', b"\0\0\0\0\0"), message(b'S', b"")];
    a.write_all(&bind.concat()).unwrap();
    let answer = read_to_ready(&mut a);
    let error = answer.iter().find(|(tag, _)| *tag == b'E').map(|(_, body)| String::from_utf8_lossy(body).into_owned());
    if !error.as_deref().is_some_and(|e| e.contains("does not exist")) || value(&query(&mut b, show)) != defaults {
        leaks.push("a Bind of another client's statement by its proxy-wide name");
    }
    // A fast-path call of set_config (oid 2078): three text arguments, a text result. A built-in function
    // makes no prepared statement: the connection is cleared of what it may leave, but keeps the statement
    // the proxy shares (B's, prepared there again first).
    b.write_all(&batch.concat()).unwrap();
    read_to_ready(&mut b);
    query(&mut b, "RESET search_path");
    let mut call = 2078i32.to_be_bytes().to_vec();
    call.extend_from_slice(&1i16.to_be_bytes());
    call.extend_from_slice(&0i16.to_be_bytes());
    call.extend_from_slice(&3i16.to_be_bytes());
    for arg in [&b"search_path"[..], b"s1", b"false"] {
        call.extend_from_slice(&(arg.len() as i32).to_be_bytes());
        call.extend_from_slice(arg);
    }
    call.extend_from_slice(&0i16.to_be_bytes());
    a.write_all(&message(b'F', &call)).unwrap();
    let answer = read_to_ready(&mut a);
    assert!(answer.iter().any(|(tag, _)| *tag == b'V'), "{answer:?}");
    if value(&query(&mut b, show)) != defaults {
        leaks.push("a fast-path function call");
    }
    let shared = "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'hapool%'";
    assert_eq!(value(&query(&mut b, shared)), "1", "a built-in's fast-path call leaves the shared statement");
    // A's role, and then B's own setting failing at its checkout: the role is cleared all the same.
    query(&mut a, "SET ROLE reporting");
    drop(b);
    let (mut b, login) = login_with_options(&proxy, "-c TimeZone=Nowhere/Bogus");
    assert!(login.iter().all(|(tag, _)| *tag != b'E'), "{login:?}");
    if value(&query(&mut b, "SELECT current_user")) != "trusted" {
        leaks.push("a role, when the next client's own setting failed");
    }
    assert!(leaks.is_empty(), "reached the next client: {leaks:?}");
}

/// Session pooling: a client's startup settings are set on the server connection it holds and stay its session
/// defaults, as on PostgreSQL: RESET, RESET ALL, SET … TO DEFAULT and DISCARD ALL return to them, through the
/// simple and the extended protocol; a RESET rolled back with its transaction leaves the value before it. The
/// next client of that connection gets the server's defaults, and a value the server refuses refuses the login.
#[test]
fn session_pooling_keeps_startup_settings_as_the_defaults() {
    let pg = cluster();
    pg.primary().psql("CREATE SCHEMA s1; CREATE SCHEMA s2").unwrap();
    let proxy = TestProxy::start(&pg, "pool_mode = \"session\"\npool_size = 1", "");
    let with = |options: &str| format!("{} options='{options}'", proxy.app());
    let psql = psql_conninfo(&with("-c search_path=s2"), "SELECT current_setting('search_path')").unwrap();
    assert_eq!(psql, "s2", "psql's PGOPTIONS");
    let startup = "s1 | t1 | 1234ms";
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let a = connect(&with("-c search_path=s1 -c app.tenant=t1 -c statement_timeout=1234")).await;
        async fn shown(c: &tokio_postgres::Client) -> String {
            let show = "SELECT current_setting('search_path') || ' | ' || coalesce(current_setting('app.tenant', \
                        true), '') || ' | ' || current_setting('statement_timeout')";
            first_value(c.simple_query(show).await.unwrap())
        }
        async fn run(c: &tokio_postgres::Client, sql: &str) {
            c.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        assert_eq!(shown(&a).await, startup);
        run(&a, "SET search_path = s2").await;
        assert_eq!(shown(&a).await, "s2 | t1 | 1234ms");
        run(&a, "RESET search_path").await;
        assert_eq!(shown(&a).await, startup, "RESET returns to the startup value");
        run(&a, "SET app.tenant = 't2'; SET statement_timeout = 99").await;
        assert_eq!(shown(&a).await, "s1 | t2 | 99ms");
        run(&a, "RESET ALL").await;
        assert_eq!(shown(&a).await, startup, "so does RESET ALL");
        run(&a, "SET search_path = s2").await;
        run(&a, "SELECT 1; RESET search_path").await;
        assert_eq!(shown(&a).await, startup, "also among other statements");
        run(&a, "SET search_path = s2").await;
        run(&a, "SET search_path TO DEFAULT").await;
        assert_eq!(shown(&a).await, startup, "and SET … TO DEFAULT");
        run(&a, "SET statement_timeout = 99").await;
        run(&a, "DISCARD ALL").await;
        assert_eq!(shown(&a).await, startup, "and DISCARD ALL");
        run(&a, "SET search_path = s2").await;
        for sql in ["BEGIN", "RESET search_path", "ROLLBACK"] {
            run(&a, sql).await;
        }
        assert_eq!(shown(&a).await, "s2 | t1 | 1234ms", "a RESET rolled back changes nothing");
        for sql in ["BEGIN", "RESET search_path", "COMMIT"] {
            run(&a, sql).await;
        }
        assert_eq!(shown(&a).await, startup, "a RESET committed in a transaction block returns to the startup value");
        run(&a, "SET search_path = s2").await;
        // The extended protocol: tokio-postgres prepares a named statement for each.
        a.execute("RESET search_path", &[]).await.unwrap();
        assert_eq!(shown(&a).await, startup, "a RESET through the extended protocol");
        a.execute("SET statement_timeout = 99", &[]).await.unwrap();
        a.execute("RESET ALL", &[]).await.unwrap();
        assert_eq!(shown(&a).await, startup);
    });
    let next = psql_conninfo(
        &proxy.app(),
        "SELECT current_setting('search_path') || ' | ' || current_setting('statement_timeout')",
    );
    assert_eq!(next.unwrap(), "\"$user\", public | 0", "the next client gets the server's defaults");
    assert_eq!(proxy.servers_opened(), 1, "every client used the one server connection");
    let refused = psql_conninfo(&with("-c statement_timeout=soon"), "SELECT 1").unwrap_err();
    assert!(refused.contains("invalid value for parameter \"statement_timeout\""), "{refused}");
}

/// Session pooling, a client that pipelines behind a RESET of a startup setting: the proxy puts the startup value
/// back only once nothing of the client's is in flight, so it never runs inside the client's transaction (where
/// a ROLLBACK would undo it) nor answers with an error of its own after the client's last ReadyForQuery.
#[test]
fn session_pooling_restores_a_startup_setting_outside_the_clients_pipeline() {
    let pg = cluster();
    pg.primary().psql("CREATE SCHEMA s1; GRANT USAGE ON SCHEMA s1 TO PUBLIC").unwrap();
    let proxy = trusted_proxy(&pg, "pool_mode = \"session\"\npool_size = 1");
    let (mut s, _) = login_with_options(&proxy, "-c search_path=s1");
    let query = |sql: &str| message(b'Q', format!("{sql}\0").as_bytes());
    let shown = |s: &mut TcpStream| {
        s.write_all(&query("SELECT current_setting('search_path')")).unwrap();
        let answer = read_to_ready(s);
        let row = answer.iter().find(|(tag, _)| *tag == b'D').expect("a row").1.clone();
        String::from_utf8_lossy(&row[6..]).into_owned()
    };
    assert_eq!(shown(&mut s), "s1");
    for last in ["SELECT 1", "SELECT 1/0"] {
        let pipelined = [query("RESET search_path"), query("BEGIN"), query(last)].concat();
        s.write_all(&pipelined).unwrap();
        let answers = read_to_readies(&mut s, 3);
        let errors = answers.iter().filter(|(tag, _)| *tag == b'E').count();
        assert_eq!(errors, usize::from(last.ends_with("/0")), "{last}: only the client's own error");
        s.write_all(&query("ROLLBACK")).unwrap();
        let answer = read_to_ready(&mut s);
        assert!(answer.iter().all(|(tag, _)| *tag != b'E'), "{last}: {answer:?}");
        assert_eq!(shown(&mut s), "s1", "{last}: the RESET committed before BEGIN; its startup value came back");
    }
}

/// A setting sent as a startup parameter of its own, as JDBC sends `currentSchema` and asyncpg its
/// `server_settings` (psql and libpq can only send `options`).
#[test]
fn a_setting_sent_as_its_own_startup_parameter_is_followed() {
    let pg = cluster();
    pg.primary().psql("CREATE SCHEMA tenant1").unwrap();
    let proxy = trusted_proxy(&pg, "pool_size = 1");
    let mut s = TcpStream::connect(proxy.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut body = 196_608i32.to_be_bytes().to_vec();
    body.extend_from_slice(b"user\0trusted\0database\0app\0search_path\0tenant1, public\0\0");
    s.write_all(&[((body.len() + 4) as i32).to_be_bytes().to_vec(), body].concat()).unwrap();
    let login = read_to_ready(&mut s);
    assert!(login.iter().all(|(tag, _)| *tag != b'E'), "{login:?}");
    let other = psql_conninfo(&proxy.app(), "SELECT current_setting('search_path')").unwrap();
    assert_eq!(other, "\"$user\", public", "another client keeps the server's default");
    s.write_all(&message(b'Q', b"SELECT current_setting('search_path')\0")).unwrap();
    let answer = read_to_ready(&mut s);
    let row = answer.iter().find(|(tag, _)| *tag == b'D').expect("a row");
    assert!(row.1.ends_with(b"tenant1, public"), "{:?}", String::from_utf8_lossy(&row.1));
}

/// In transaction pooling a LISTEN stays on the server connection it ran on, which goes back to the pool. A
/// notification that reaches it there is the listener's, not the next client's: the connection is cleared
/// (UNLISTEN *) before another client gets it, and what came before that clearing ended is not passed on.
#[test]
fn a_notification_for_a_previous_client_does_not_reach_the_next() {
    let pg = cluster();
    let proxy = trusted_proxy(&pg, "pool_size = 1");
    let rt = tokio::runtime::Runtime::new().unwrap();
    // From another pool (another user), so on another server connection while the listener's sits idle.
    let notifier = rt.block_on(connect(&proxy.app()));
    let mut listener = raw_login(&proxy, Duration::from_secs(10));
    let mut next = raw_login(&proxy, Duration::from_secs(10));
    for round in 0..20 {
        listener.write_all(&message(b'Q', b"LISTEN ch\0")).unwrap();
        read_to_ready(&mut listener);
        rt.block_on(notifier.batch_execute("NOTIFY ch, 'secret'")).unwrap();
        // Within the 100 ms after which the pool checks an idle connection before reuse: handed out as it is.
        next.write_all(&message(b'Q', b"SELECT 1\0")).unwrap();
        let answer = read_to_ready(&mut next);
        let tags: Vec<char> = answer.iter().map(|(tag, _)| *tag as char).collect();
        assert!(!tags.contains(&'A'), "round {round}: another client's notification reached this one: {tags:?}");
        assert_eq!(tags, ['T', 'D', 'C', 'Z'], "round {round}");
    }
}

/// A SET through the extended protocol (as JDBC and psycopg send every statement) is followed like a simple
/// query's: its value reaches every server connection the client gets, once the batch it ran in has committed.
/// One whose batch failed later on, rolled back, is not.
#[test]
fn a_set_through_the_extended_protocol_is_followed_once_its_batch_commits() {
    let pg = cluster();
    pg.primary().psql("CREATE SCHEMA s1; CREATE SCHEMA s2; GRANT USAGE ON SCHEMA s1, s2 TO PUBLIC").unwrap();
    let proxy = trusted_proxy(&pg, "pool_size = 1");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let other = rt.block_on(connect(&proxy.conninfo("trusted", "tpw")));
    let shown = |c: &tokio_postgres::Client| {
        let row = rt.block_on(c.query_one("SELECT current_setting('search_path')", &[])).unwrap();
        row.get::<_, String>(0)
    };
    // A named statement (tokio-postgres prepares one for each query).
    let a = rt.block_on(connect(&proxy.conninfo("trusted", "tpw")));
    rt.block_on(a.execute("SET search_path = s1", &[])).unwrap();
    assert_eq!(shown(&other), "\"$user\", public", "the other client does not get it");
    assert_eq!(shown(&a), "s1", "back on the connection the other client had cleared");

    // The unnamed statement, and a batch that fails after its SET ran.
    let mut b = raw_login(&proxy, Duration::from_secs(10));
    let set = |sql: &str| {
        let parse = message(b'P', format!("\0{sql}\0\0\0").as_bytes());
        [parse, message(b'B', b"\0\0\0\0\0\0\0\0"), message(b'E', b"\0\0\0\0\0")].concat()
    };
    let sync = message(b'S', b"");
    b.write_all(&[set("SET search_path = s2"), sync.clone()].concat()).unwrap();
    assert!(read_to_ready(&mut b).iter().all(|(tag, _)| *tag != b'E'));
    let failing = [set("SET search_path = s1"), message(b'P', b"\0SELEC 1\0\0\0"), sync.clone()].concat();
    b.write_all(&failing).unwrap();
    assert!(read_to_ready(&mut b).iter().any(|(tag, _)| *tag == b'E'), "the batch failed");
    assert_eq!(shown(&other), "\"$user\", public");
    b.write_all(&message(b'Q', b"SELECT current_setting('search_path')\0")).unwrap();
    let answer = read_to_ready(&mut b);
    let row = answer.iter().find(|(tag, _)| *tag == b'D').expect("a row");
    assert!(
        row.1.ends_with(b"s2"),
        "the committed SET holds, the rolled back one not: {:?}",
        String::from_utf8_lossy(&row.1)
    );
}

/// SETs inside transaction blocks and extended-protocol batches hold exactly when PostgreSQL keeps them: each
/// sequence runs on a fresh client of a transaction-pooled proxy (one server connection, handed to another client
/// before the last query) and of a session-pooled one, which passes everything through as a direct connection
/// would. The client sees through both what it set; the other client never sees it. Where a SAVEPOINT came after
/// a SET, what holds is not read: the connection is cleared, and only the second part is checked.
#[test]
fn sets_in_transactions_hold_as_their_transactions_end() {
    let pg = cluster();
    pg.primary().psql("CREATE SCHEMA s1; CREATE SCHEMA s2; GRANT USAGE ON SCHEMA s1, s2 TO PUBLIC").unwrap();
    let pooled = trusted_proxy(&pg, "pool_size = 1");
    let users = "\n  [[cluster.user]]\n  name = \"trusted\"\n  password = \"tpw\"\n  auth = \"trust\"\n";
    let direct = TestProxy::start(&pg, "pool_mode = \"session\"", users);
    let simple = |sql: &str| message(b'Q', format!("{sql}\0").as_bytes());
    let batch = |sqls: &[&str]| {
        let mut out = Vec::new();
        for sql in sqls {
            out.extend(message(b'P', format!("\0{sql}\0\0\0").as_bytes()));
            out.extend(message(b'B', b"\0\0\0\0\0\0\0\0"));
            out.extend(message(b'E', b"\0\0\0\0\0"));
        }
        out.extend(message(b'S', b""));
        out
    };
    let shown = |s: &mut TcpStream| {
        s.write_all(&message(b'Q', b"SELECT current_setting('search_path')\0")).unwrap();
        let answer = read_to_ready(s);
        let row = answer.iter().find(|(tag, _)| *tag == b'D').expect("a row").1.clone();
        String::from_utf8_lossy(&row[6..]).into_owned()
    };
    let default = "\"$user\", public";
    // Each step ends with one ReadyForQuery.
    let cases: Vec<(&str, Vec<Vec<u8>>, bool)> = vec![
        ("committed", vec![simple("BEGIN"), simple("SET search_path = s1"), simple("COMMIT")], true),
        ("rolled back", vec![simple("BEGIN"), simple("SET search_path = s1"), simple("ROLLBACK")], true),
        ("END", vec![simple("BEGIN"), simple("SET search_path = s1"), simple("END")], true),
        (
            "failed, then COMMIT",
            vec![simple("BEGIN"), simple("SET search_path = s1"), simple("SELECT 1/0"), simple("COMMIT")],
            true,
        ),
        (
            "undone to a savepoint made before it",
            vec![
                simple("BEGIN"),
                simple("SAVEPOINT a"),
                simple("SET search_path = s1"),
                simple("ROLLBACK TO a"),
                simple("SET search_path = s2"),
                simple("COMMIT"),
            ],
            true,
        ),
        (
            "a savepoint released",
            vec![
                simple("BEGIN"),
                simple("SAVEPOINT a"),
                simple("SET search_path = s2"),
                simple("RELEASE a"),
                simple("COMMIT"),
            ],
            true,
        ),
        (
            "among other statements",
            vec![simple("BEGIN"), simple("SET search_path = s1; SELECT 1"), simple("COMMIT")],
            true,
        ),
        (
            "a RESET rolled back",
            vec![simple("SET search_path = s2"), simple("BEGIN"), simple("RESET search_path"), simple("ROLLBACK")],
            true,
        ),
        ("a batch's ROLLBACK", vec![batch(&["SET search_path = s1", "ROLLBACK"])], true),
        ("a batch's COMMIT", vec![batch(&["BEGIN", "SET search_path = s1", "COMMIT"])], true),
        ("a batch's block rolled back", vec![batch(&["BEGIN", "SET search_path = s1", "ROLLBACK"])], true),
        (
            "committed in a batch that opens another block",
            vec![
                batch(&["BEGIN", "SET search_path = s1", "COMMIT", "BEGIN", "SET search_path = s2"]),
                simple("ROLLBACK"),
            ],
            true,
        ),
        (
            "a savepoint after it",
            vec![
                simple("BEGIN"),
                simple("SET search_path = s1"),
                simple("SAVEPOINT a"),
                simple("SET search_path = s2"),
                simple("ROLLBACK TO a"),
                simple("COMMIT"),
            ],
            false,
        ),
    ];
    let mut wrong = Vec::new();
    for (name, steps, exact) in cases {
        let run = |proxy: &TestProxy| {
            let mut s = raw_login(proxy, Duration::from_secs(10));
            for bytes in &steps {
                s.write_all(bytes).unwrap();
                read_to_ready(&mut s);
            }
            s
        };
        let want = shown(&mut run(&direct));
        let mut client = run(&pooled);
        let mut other = raw_login(&pooled, Duration::from_secs(10));
        if shown(&mut other) != default {
            wrong.push(format!("{name}: reached the other client"));
        }
        let got = shown(&mut client);
        if exact && got != want {
            wrong.push(format!("{name}: {got} through transaction pooling, {want} on the server"));
        }
    }
    // A client that logged in with a search_path: its RESET returns to that value, also when another change
    // commits with it (the connection is left at the server's default, and the other change must not hide that).
    for proxy in [&pooled, &direct] {
        let (mut s, _) = login_with_options(proxy, "-c search_path=s1");
        for sql in ["SET search_path = s2", "BEGIN", "RESET search_path", "SET work_mem = '8MB'", "COMMIT"] {
            s.write_all(&simple(sql)).unwrap();
            read_to_ready(&mut s);
        }
        let mut other = raw_login(proxy, Duration::from_secs(10));
        if shown(&mut other) != default {
            wrong.push(format!("a committed RESET and SET ({}): reached the other client", proxy.addr));
        }
        let got = shown(&mut s);
        if got != "s1" {
            wrong.push(format!("a committed RESET and SET ({}): {got}, not the startup value", proxy.addr));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// Errors in the extended protocol, answered as PostgreSQL answers them: each sequence runs through a
/// transaction-pooled proxy (one server connection) and a session-pooled one, which passes everything through,
/// and the tags of the answers must be the same.
/// - An error that comes back before the client's Sync (after a Flush): PostgreSQL ignores everything up to the
///   Sync, so nothing of it is answered (the proxy used to answer the Close itself, queue the rest, and fall out
///   of step), and the statement parsed there does not exist afterwards.
/// - A Parse in a failed transaction of a statement the server already has: refused at the Parse, also behind
///   a Close of its name and in a batch pipelined behind the one that fails; one of ROLLBACK is not.
/// - A Parse of a name in use: refused with 42P05, and the name keeps its statement.
/// - A simple query sent behind a failing Execute before the Sync: ignored until the Sync, and the connection
///   is not given to another client before it.
/// - The unnamed statement another client made on the connection is not this client's to bind.
#[test]
fn extended_protocol_errors_are_answered_as_postgresql_answers_them() {
    let pg = cluster();
    let pooled = trusted_proxy(&pg, "pool_size = 1");
    let users = "\n  [[cluster.user]]\n  name = \"trusted\"\n  password = \"tpw\"\n  auth = \"trust\"\n";
    let direct = TestProxy::start(&pg, "pool_mode = \"session\"", users);
    let parse = |name: &str, sql: &str| message(b'P', format!("{name}\0{sql}\0\0\0").as_bytes());
    let bind = |statement: &str| message(b'B', format!("\0{statement}\0\0\0\0\0\0\0").as_bytes());
    let execute = || message(b'E', b"\0\0\0\0\0");
    let (sync, flush) = (message(b'S', b""), message(b'H', b""));
    let tags = |answers: Vec<(u8, Vec<u8>)>| answers.iter().map(|(tag, _)| *tag as char).collect::<String>();
    let mut seen = Vec::new();
    for proxy in [&direct, &pooled] {
        let mut answers = Vec::new();
        let mut s = raw_login(proxy, Duration::from_secs(10));
        // Prepared once, so that the transaction-pooled proxy knows the server has it.
        s.write_all(&[parse("known", "SELECT 1"), sync.clone()].concat()).unwrap();
        answers.push(tags(read_to_ready(&mut s)));
        s.write_all(&[parse("", "SELECT 1/0"), bind(""), execute(), flush.clone()].concat()).unwrap();
        answers.push(tags(read_to_nth(&mut s, b'E', 1)));
        let rest = [message(b'C', b"Sknown\0"), parse("s", "SELECT 2"), bind("s"), execute(), sync.clone()];
        s.write_all(&rest.concat()).unwrap();
        answers.push(tags(read_to_ready(&mut s)));
        s.write_all(&[bind("s"), execute(), sync.clone(), bind("known"), execute(), sync.clone()].concat()).unwrap();
        answers.push(tags(read_to_readies(&mut s, 2)));
        // A Parse in a failed transaction.
        s.write_all(&message(b'Q', b"BEGIN; SELECT 1/0\0")).unwrap();
        answers.push(tags(read_to_ready(&mut s)));
        s.write_all(&[parse("known", "SELECT 1"), bind("known"), execute(), sync.clone()].concat()).unwrap();
        answers.push(tags(read_to_ready(&mut s)));
        // A ROLLBACK is parsed in a failed transaction, and ends it.
        s.write_all(&[parse("rb", "ROLLBACK"), bind("rb"), execute(), sync.clone()].concat()).unwrap();
        answers.push(tags(read_to_ready(&mut s)));
        // A simple query behind a failing Execute, before any Sync: ignored as well; the Sync ends it all. The
        // connection waits for that Sync before another client may have it.
        s.write_all(&[parse("", "SELECT 1/0"), bind(""), execute(), message(b'Q', b"SELECT 2\0")].concat()).unwrap();
        answers.push(tags(read_to_nth(&mut s, b'E', 1)));
        let mut other = raw_login(proxy, Duration::from_secs(10));
        other.write_all(&message(b'Q', b"SELECT 3\0")).unwrap();
        s.write_all(&sync).unwrap();
        answers.push(tags(read_to_ready(&mut s)));
        answers.push(tags(read_to_ready(&mut other)));
        seen.push(answers);
    }
    assert_eq!(seen[1], seen[0], "through transaction pooling, and as PostgreSQL answered");

    // Two batches sent at once, the first failing before the Parse of a statement the proxy makes there for the
    // client (it had been evicted, max_prepared_statements = 1): the second batch, which took it for made,
    // still finds it.
    let evicting = TestProxy::start(&pg, "pool_size = 1\nmax_prepared_statements = 1", users);
    let mut seen = Vec::new();
    for proxy in [&direct, &evicting] {
        let mut s = raw_login(proxy, Duration::from_secs(10));
        s.write_all(&[parse("s", "SELECT 1"), parse("t", "SELECT 2"), sync.clone()].concat()).unwrap();
        let mut answers = vec![tags(read_to_ready(&mut s))];
        let first = [parse("", "SELECT 1/0"), bind(""), execute(), bind("s"), execute(), sync.clone()];
        let second = [bind("s"), execute(), sync.clone()];
        s.write_all(&[first.concat(), second.concat()].concat()).unwrap();
        answers.push(tags(read_to_readies(&mut s, 2)));
        s.write_all(&[bind("t"), execute(), bind("s"), execute(), sync.clone()].concat()).unwrap();
        answers.push(tags(read_to_ready(&mut s)));
        seen.push(answers);
    }
    assert_eq!(seen[1], seen[0], "pipelined batches after an error, as PostgreSQL answered them");

    // A Close and a Parse sent behind a failing Execute, before its error came back, are skipped by the server:
    // the closed name still names its statement, the parsed one names none. Nor does a Parse that fails make
    // a name. (Errors are compared by SQLSTATE: a Bind of an unknown name gets 26000.)
    let codes = |answers: Vec<(u8, Vec<u8>)>| {
        let code = |body: &[u8]| {
            body.split(|b| *b == 0)
                .find_map(|f| f.strip_prefix(b"C"))
                .map(String::from_utf8_lossy)
                .unwrap_or_default()
                .into_owned()
        };
        let code_of = |(tag, body): &(u8, Vec<u8>)| match tag {
            b'E' => format!("E{} ", code(body)),
            // One column: its value.
            b'D' => format!("D({})", String::from_utf8_lossy(body.get(6..).unwrap_or_default())),
            _ => (*tag as char).to_string(),
        };
        answers.iter().map(code_of).collect::<String>()
    };
    let mut seen = Vec::new();
    for proxy in [&direct, &pooled] {
        let mut s = raw_login(proxy, Duration::from_secs(10));
        s.write_all(&[parse("kept", "SELECT 1"), parse("bad", "SELEC"), sync.clone()].concat()).unwrap();
        let mut answers = vec![codes(read_to_ready(&mut s))];
        let close = message(b'C', b"Skept\0");
        let batch = [parse("", "SELECT 1/0"), bind(""), execute(), close, parse("skipped", "SELECT 2"), sync.clone()];
        s.write_all(&batch.concat()).unwrap();
        answers.push(codes(read_to_ready(&mut s)));
        for name in ["kept", "skipped", "bad"] {
            s.write_all(&[bind(name), execute(), sync.clone()].concat()).unwrap();
            answers.push(format!("{name}: {}", codes(read_to_ready(&mut s))));
        }
        seen.push(answers);
    }
    assert_eq!(seen[1], seen[0], "statement names after skipped and failed messages, as PostgreSQL keeps them");

    // The same across batches sent at once: a later batch's change of the same name, and a drop of every
    // statement that ran before the change skipped.
    let failing = || [parse("", "SELECT 1/0"), bind(""), execute()].concat();
    let mut seen = Vec::new();
    for proxy in [&direct, &pooled] {
        let mut s = raw_login(proxy, Duration::from_secs(10));
        s.write_all(&[parse("a", "SELECT 1"), parse("d", "SELECT 1"), sync.clone()].concat()).unwrap();
        let mut answers = vec![codes(read_to_ready(&mut s))];
        let batches = [
            // A Close and then a Parse of `a`, both skipped: `a` is the first statement still.
            [failing(), message(b'C', b"Sa\0"), sync.clone(), failing(), parse("a", "SELECT 2"), sync.clone()].concat(),
            // A skipped Parse of `b`, then a Close and a Parse of it that run: `b` is made.
            [
                failing(),
                parse("b", "SELECT 1"),
                sync.clone(),
                message(b'C', b"Sb\0"),
                parse("b", "SELECT 1"),
                sync.clone(),
            ]
            .concat(),
            // A failed Parse of `c`, then a skipped Close of it: no `c`.
            [parse("c", "SELEC"), sync.clone(), failing(), message(b'C', b"Sc\0"), sync.clone()].concat(),
            // A drop of every statement, then a skipped Close of `d`: no `d`.
            [
                message(b'Q', b"SELECT 1\0"),
                message(b'Q', b"DEALLOCATE ALL\0"),
                failing(),
                message(b'C', b"Sd\0"),
                sync.clone(),
            ]
            .concat(),
        ];
        for (batch, (name, readies)) in batches.iter().zip([("a", 2), ("b", 2), ("c", 2), ("d", 3)]) {
            s.write_all(batch).unwrap();
            answers.push(codes(read_to_readies(&mut s, readies)));
            s.write_all(&[bind(name), execute(), sync.clone()].concat()).unwrap();
            answers.push(format!("{name}: {}", codes(read_to_ready(&mut s))));
        }
        seen.push(answers);
    }
    assert_eq!(seen[1], seen[0], "statement names after pipelined batches, as PostgreSQL keeps them");

    // A Bind or Describe pipelined behind a failing batch that changes the name it uses: it uses what the name
    // stands for on PostgreSQL, where the change was skipped.
    let mut seen = Vec::new();
    for proxy in [&direct, &pooled] {
        let mut s = raw_login(proxy, Duration::from_secs(10));
        s.write_all(&[parse("e", "SELECT 1"), parse("f", "SELECT 1"), sync.clone()].concat()).unwrap();
        let mut answers = vec![codes(read_to_ready(&mut s))];
        let (close_e, close_f, describe_e) = (message(b'C', b"Se\0"), message(b'C', b"Sf\0"), message(b'D', b"Se\0"));
        let pipelines = [
            [failing(), close_e, parse("e", "SELECT 2"), sync.clone(), describe_e, bind("e"), execute(), sync.clone()],
            [
                failing(),
                parse("g", "SELECT 3"),
                sync.clone(),
                bind("g"),
                execute(),
                sync.clone(),
                flush.clone(),
                flush.clone(),
            ],
            [failing(), close_f, sync.clone(), bind("f"), execute(), sync.clone(), flush.clone(), flush.clone()],
        ];
        for pipeline in pipelines {
            s.write_all(&pipeline.concat()).unwrap();
            answers.push(codes(read_to_readies(&mut s, 2)));
        }
        seen.push(answers);
    }
    assert_eq!(seen[1], seen[0], "names bound behind a failing batch, as PostgreSQL binds them");

    // The same with a large message between the two batches, written to the server while the earlier batch's
    // answers may come in (`flush` reads them then, and the session resumes a held message after it). Not a
    // reproduction of that hang: the proxy streams a large message, so here the Bind arrives after the answers.
    let large = "x".repeat(8 << 20);
    let mut with_param = b"\0\0\0\0\0\x01".to_vec();
    with_param.extend_from_slice(&(large.len() as i32).to_be_bytes());
    with_param.extend_from_slice(large.as_bytes());
    with_param.extend_from_slice(b"\0\0");
    let mut seen = Vec::new();
    for proxy in [&direct, &pooled] {
        let mut s = raw_login(proxy, Duration::from_secs(20));
        // The earlier batch sleeps, so that its answers come while the large message is being written.
        let sleep = [parse("", "SELECT pg_sleep(0.5)"), bind(""), execute()].concat();
        let earlier = [sleep, parse("h", "SELECT 'h'"), sync.clone()].concat();
        let later = [parse("", "SELECT length($1::text)"), message(b'B', &with_param), execute(), bind("h"), execute()];
        s.write_all(&[earlier, later.concat(), sync.clone()].concat()).unwrap();
        seen.push(codes(read_to_readies(&mut s, 2)));
    }
    assert_eq!(seen[1], seen[0], "a Bind held behind a large message, as PostgreSQL answers it");

    // A Parse in a failed transaction block of a statement the server has already (the proxy could answer it
    // itself): behind a Close of its name in the same batch, as JDBC sends them, and in a batch pipelined behind
    // the one that fails the transaction. PostgreSQL refuses it (25P02), and the name is not made.
    let mut seen = Vec::new();
    // A batch in a failed transaction, then a ROLLBACK and a Bind of `name`: the answers to each.
    let in_failed_transaction = |s: &mut TcpStream, batch: &[Vec<u8>], name: &str| {
        s.write_all(&message(b'Q', b"BEGIN; SELECT 1/0\0")).unwrap();
        let failed = codes(read_to_ready(s));
        s.write_all(&batch.concat()).unwrap();
        let answered = codes(read_to_ready(s));
        s.write_all(&[message(b'Q', b"ROLLBACK\0"), bind(name), execute(), sync.clone()].concat()).unwrap();
        [failed, answered, format!("{name}: {}", codes(read_to_readies(s, 2)))]
    };
    for proxy in [&direct, &pooled] {
        let mut s = raw_login(proxy, Duration::from_secs(10));
        s.write_all(&[parse("j", "SELECT 1"), parse("j0", "SELECT 1"), sync.clone()].concat()).unwrap();
        let mut answers = vec![codes(read_to_ready(&mut s))];
        let closed = [message(b'C', b"Sj\0"), parse("j", "SELECT 1"), bind("j"), execute(), sync.clone()];
        answers.extend(in_failed_transaction(&mut s, &closed, "j"));
        s.write_all(&message(b'Q', b"BEGIN\0")).unwrap();
        answers.push(codes(read_to_ready(&mut s)));
        let later = [parse("k", "SELECT 1"), bind("k"), execute(), sync.clone()].concat();
        s.write_all(&[failing(), sync.clone(), later].concat()).unwrap();
        answers.push(codes(read_to_readies(&mut s, 2)));
        s.write_all(&[message(b'Q', b"ROLLBACK\0"), bind("k"), execute(), sync.clone()].concat()).unwrap();
        answers.push(format!("k: {}", codes(read_to_readies(&mut s, 2))));
        // An empty statement, which PostgreSQL parses there, and COMMIT PREPARED, which it does not.
        let empty = [parse("e0", "-- nothing"), parse("cp", "COMMIT PREPARED 'x'"), sync.clone()];
        answers.extend(in_failed_transaction(&mut s, &empty, "e0"));
        // Behind a Close of a portal, which PostgreSQL runs in a failed transaction.
        let portal_closed = [message(b'C', b"Pnone\0"), parse("l", "SELECT 1"), bind("l"), execute(), sync.clone()];
        answers.extend(in_failed_transaction(&mut s, &portal_closed, "l"));
        // Behind a batch in flight, in a batch that fails before it (outside a transaction block): skipped.
        let opened = proxy.servers_opened();
        let later = [failing(), parse("m", "SELECT 1"), bind("m"), execute(), sync.clone()].concat();
        s.write_all(&[parse("", "SELECT 1"), bind(""), execute(), sync.clone(), later].concat()).unwrap();
        answers.push(codes(read_to_readies(&mut s, 2)));
        s.write_all(&[bind("m"), execute(), sync.clone(), bind("j0"), execute(), sync.clone()].concat()).unwrap();
        answers.push(format!("m: {}", codes(read_to_readies(&mut s, 2))));
        assert_eq!(proxy.servers_opened(), opened, "the connection was kept");
        // The client's own statement under the name the proxy checks with does not get in the way.
        s.write_all(&message(b'Q', b"PREPARE hapool_check AS SELECT 1\0")).unwrap();
        answers.push(codes(read_to_ready(&mut s)));
        let later = [parse("n", "SELECT 1"), bind("n"), execute(), sync.clone()].concat();
        s.write_all(&[parse("", "SELECT 1"), bind(""), execute(), sync.clone(), later].concat()).unwrap();
        answers.push(codes(read_to_readies(&mut s, 2)));
        seen.push(answers);
    }
    assert_eq!(seen[1], seen[0], "a Parse in a failed transaction, as PostgreSQL refuses it");

    // A Parse of a name the client has already: refused (42P05, naming the client's statement), the name keeps
    // its statement, and the refusal fails the transaction it comes in; behind a Close of the name skipped in an
    // earlier batch still in flight, too.
    let mut seen = Vec::new();
    for proxy in [&direct, &pooled] {
        let mut s = raw_login(proxy, Duration::from_secs(10));
        s.write_all(&[parse("dup", "SELECT 1"), sync.clone()].concat()).unwrap();
        let mut answers = vec![codes(read_to_ready(&mut s))];
        s.write_all(&[parse("dup", "SELECT 2"), bind("dup"), execute(), sync.clone()].concat()).unwrap();
        let refused = read_to_ready(&mut s);
        let text = refused.iter().find(|(tag, _)| *tag == b'E').map(|(_, body)| String::from_utf8_lossy(body));
        assert!(text.is_some_and(|t| t.contains("prepared statement \"dup\" already exists")), "{refused:?}");
        answers.push(codes(refused));
        s.write_all(&[bind("dup"), execute(), sync.clone()].concat()).unwrap();
        answers.push(codes(read_to_ready(&mut s)));
        s.write_all(&message(b'Q', b"BEGIN\0")).unwrap();
        answers.push(codes(read_to_ready(&mut s)));
        s.write_all(&[parse("dup", "SELECT 2"), sync.clone(), message(b'Q', b"ROLLBACK\0")].concat()).unwrap();
        answers.push(codes(read_to_readies(&mut s, 2)));
        let skipped_close = [failing(), message(b'C', b"Sdup\0"), sync.clone()].concat();
        let again = [parse("dup", "SELECT 3"), bind("dup"), execute(), sync.clone()].concat();
        s.write_all(&[skipped_close, again].concat()).unwrap();
        answers.push(codes(read_to_readies(&mut s, 2)));
        s.write_all(&[bind("dup"), execute(), sync.clone()].concat()).unwrap();
        answers.push(codes(read_to_ready(&mut s)));
        // A text some server has accepted already (the proxy could answer it without a server).
        s.write_all(&[parse("dup", "SELECT 1"), sync.clone()].concat()).unwrap();
        answers.push(codes(read_to_ready(&mut s)));
        // In a failed transaction, a text PostgreSQL parses there: still a name in use.
        s.write_all(&message(b'Q', b"BEGIN; SELECT 1/0\0")).unwrap();
        answers.push(codes(read_to_ready(&mut s)));
        s.write_all(&[parse("dup", "ROLLBACK"), sync.clone(), message(b'Q', b"ROLLBACK\0")].concat()).unwrap();
        answers.push(codes(read_to_readies(&mut s, 2)));
        // Behind a drop of every statement the proxy cannot see coming (not a query's first statement): the
        // name is free on PostgreSQL.
        let unforeseen = [message(b'Q', b"SELECT 1; DEALLOCATE ALL\0"), message(b'Q', b"SELECT 2\0")].concat();
        let again = [parse("dup", "SELECT 4"), bind("dup"), execute(), sync.clone()].concat();
        s.write_all(&[unforeseen, again].concat()).unwrap();
        answers.push(codes(read_to_readies(&mut s, 3)));
        // An SQL DEALLOCATE of the name frees it (first a drop the proxy follows, then the name again); pipelined
        // behind a batch in flight; in a failed transaction it is refused; of a name the client lacks, 26000.
        let fresh = [message(b'Q', b"DEALLOCATE ALL\0"), parse("dup", "SELECT 6"), sync.clone()].concat();
        s.write_all(&fresh).unwrap();
        answers.push(codes(read_to_readies(&mut s, 2)));
        s.write_all(&[message(b'Q', b"DEALLOCATE dup\0"), parse("dup", "SELECT 5"), sync.clone()].concat()).unwrap();
        answers.push(codes(read_to_readies(&mut s, 2)));
        let behind =
            [parse("", "SELECT 1"), bind(""), execute(), sync.clone(), message(b'Q', b"deallocate \"dup\";\0")];
        s.write_all(&[behind.concat(), parse("dup", "SELECT 7"), bind("dup"), execute(), sync.clone()].concat())
            .unwrap();
        answers.push(codes(read_to_readies(&mut s, 3)));
        s.write_all(&message(b'Q', b"BEGIN; SELECT 1/0\0")).unwrap();
        answers.push(codes(read_to_ready(&mut s)));
        s.write_all(&[message(b'Q', b"DEALLOCATE PREPARE dup\0"), message(b'Q', b"ROLLBACK\0")].concat()).unwrap();
        answers.push(codes(read_to_readies(&mut s, 2)));
        s.write_all(&[bind("dup"), execute(), sync.clone(), message(b'Q', b"DEALLOCATE nosuch\0")].concat()).unwrap();
        answers.push(codes(read_to_readies(&mut s, 2)));
        // One sent inside a batch not yet synced is not held (the server answers nothing until it comes): it is
        // answered. (Through transaction pooling it goes to the server, which fails it: not compared.)
        let open = [parse("", "SELECT 1"), bind(""), execute(), message(b'Q', b"DEALLOCATE dup\0")].concat();
        s.write_all(&open).unwrap();
        read_to_ready(&mut s);
        seen.push(answers);
    }
    assert_eq!(seen[1], seen[0], "a Parse of a name in use, as PostgreSQL refuses it");

    // Client A's unnamed statement, then client B's Bind of the unnamed statement on that connection.
    let mut a = raw_login(&pooled, Duration::from_secs(10));
    a.write_all(&[parse("", "SELECT 'made by a'"), bind(""), execute(), sync.clone()].concat()).unwrap();
    assert!(read_to_ready(&mut a).iter().any(|(tag, _)| *tag == b'D'));
    let mut b = raw_login(&pooled, Duration::from_secs(10));
    b.write_all(&[bind(""), execute(), sync.clone()].concat()).unwrap();
    let answer = read_to_ready(&mut b);
    assert_eq!(tags(answer.clone()), "EZ", "not A's statement: {answer:?}");
    a.write_all(&[bind(""), execute(), sync].concat()).unwrap();
    assert_eq!(tags(read_to_ready(&mut a)), "2DCZ", "A's own, while no one else made one since");
}

/// A client that stops reading a large result holds its server connection only until `[cluster.tcp]
/// user_timeout`: the kernel then gives up on the writes it cannot deliver, the session ends, and the next
/// client gets the pool's one connection (without the setting it would wait until query_wait_timeout). Keepalive
/// is on, by default, on the sockets to clients and to the server.
#[test]
fn a_client_that_stops_reading_is_cut_at_the_tcp_user_timeout() {
    let pg = cluster();
    let keys = "pool_size = 1\nquery_wait_timeout = \"60s\"\n[cluster.tcp]\nuser_timeout = \"2s\"";
    let proxy = trusted_proxy(&pg, keys);
    let mut stalled = raw_login(&proxy, Duration::from_secs(10));
    // About 1 GB of rows, never read.
    stalled.write_all(&message(b'Q', b"SELECT repeat('x', 100000) FROM generate_series(1, 10000)\0")).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let mut next = raw_login(&proxy, Duration::from_secs(90));
    next.write_all(&message(b'Q', b"SELECT 1\0")).unwrap();
    let answer = read_to_ready(&mut next);
    let tags: String = answer.iter().map(|(tag, _)| *tag as char).collect();
    assert_eq!(tags, "TDCZ", "the next client is served: {answer:?}");
    eprintln!("the next client was served {:?} after the stalled one began", started.elapsed());

    // Keepalive: the kernel's keepalive timer runs on the proxy's idle sockets (ss shows it as the socket's
    // timer), to clients and to the server.
    let sockets = |filter: &str| {
        let out = Command::new("ss").args(["-tnpoH", "state", "established", filter]).output().unwrap();
        let ours = format!("pid={},", std::process::id());
        let lines: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect();
        lines.into_iter().filter(|l| l.contains(&ours)).collect::<Vec<_>>()
    };
    // (A socket with data just sent shows its retransmission timer until the peer's ACK is in: looked at again.)
    let mut seen = Vec::new();
    let keepalive = eventually(Duration::from_secs(5), || {
        seen = [format!("sport = :{}", proxy.addr.port()), format!("dport = :{}", pg.primary().port())]
            .iter()
            .map(|filter| sockets(filter))
            .collect();
        seen.iter().all(|lines| !lines.is_empty() && lines.iter().all(|l| l.contains("timer:(keepalive")))
    });
    assert!(keepalive, "keepalive on every socket to the client and to the server: {seen:#?}");
}

fn trusted_proxy(pg: &PgCluster, cluster_keys: &str) -> TestProxy {
    pg.primary().psql("CREATE ROLE trusted LOGIN PASSWORD 'tpw'").unwrap();
    let users = "\n  [[cluster.user]]\n  name = \"trusted\"\n  password = \"tpw\"\n  auth = \"trust\"\n";
    TestProxy::start(pg, cluster_keys, users)
}

/// A raw connection logged in as `trusted` with `options` in its startup packet, and the messages of its login
/// up to its first ReadyForQuery (10 s read timeout).
fn login_with_options(proxy: &TestProxy, options: &str) -> (TcpStream, Vec<(u8, Vec<u8>)>) {
    let mut s = TcpStream::connect(proxy.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut body = 196_608i32.to_be_bytes().to_vec();
    body.extend_from_slice(format!("user\0trusted\0database\0app\0options\0{options}\0\0").as_bytes());
    s.write_all(&[((body.len() + 4) as i32).to_be_bytes().to_vec(), body].concat()).unwrap();
    let login = read_to_ready(&mut s);
    (s, login)
}

/// Writes raw protocol messages after a trust login and returns what came back until `until` (a tag) or 5 s.
fn raw_exchange(proxy: &TestProxy, messages: &[u8], until: u8) -> Vec<u8> {
    let mut s = raw_login(proxy, Duration::from_secs(5));
    let mut buf = [0u8; 4096];
    s.write_all(messages).unwrap();
    let mut reply = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !reply.contains(&until) && Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
        }
    }
    reply
}

#[test]
fn a_parse_answered_by_the_proxy_reaches_a_client_that_only_flushes() {
    let pg = cluster();
    let proxy = trusted_proxy(&pg, "pool_size = 1");
    let parse = message(b'P', b"s1\0SELECT 1\0\0\0");
    // First client: Parse + Sync creates the statement on the only server connection.
    let first = raw_exchange(&proxy, &[parse.clone(), message(b'S', b"")].concat(), b'Z');
    assert_eq!(first.first(), Some(&b'1'), "ParseComplete: {first:?}");
    // Second client, same statement, Parse + Flush and no Sync: the proxy answers, the server owes nothing.
    let second = raw_exchange(&proxy, &[parse, message(b'H', b"")].concat(), b'1');
    assert_eq!(second, vec![b'1', 0, 0, 0, 4], "ParseComplete without a Sync");
}

#[test]
fn a_client_waiting_too_long_for_a_server_gets_53300() {
    let pg = cluster();
    let proxy = TestProxy::start(&pg, "pool_size = 1\nquery_wait_timeout = \"1s\"", "");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let holder = connect(&proxy.app()).await;
        holder.batch_execute("BEGIN").await.unwrap();
        let waiter = connect(&proxy.app()).await;
        let started = Instant::now();
        let err = waiter.simple_query("SELECT 1").await.unwrap_err();
        let db = err.as_db_error().expect("a server-style error");
        assert_eq!(db.code(), &tokio_postgres::error::SqlState::TOO_MANY_CONNECTIONS);
        assert!(db.message().contains("waiting for a server connection in pool app@app"), "{db}");
        assert!(started.elapsed() < Duration::from_secs(5));
        holder.batch_execute("COMMIT").await.unwrap();
    });
}

#[test]
fn clients_waiting_for_the_one_connection_are_served_in_turn_with_their_own_parameters() {
    let pg = cluster();
    let proxy = TestProxy::start(&pg, "pool_size = 1\nquery_wait_timeout = \"30s\"", "");
    let stat = |f: fn(&hapool_proxy::stats::PoolSnapshot) -> u64| -> u64 {
        proxy.listener.stats().iter().map(|(_, s)| f(s)).sum()
    };
    let waiting = |n: u64| eventually(Duration::from_secs(10), || stat(|s| s.clients_waiting) == n);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let holder = connect(&proxy.app()).await;
        holder.batch_execute("BEGIN").await.unwrap();
        let pid = holder.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get::<_, i32>(0);
        // In line for the one connection: a client with the holder's parameters, one with an application_name
        // of its own (set on the connection before its query), and one using the extended protocol.
        let same = connect(&proxy.app()).await;
        let first = tokio::spawn(async move { first_value(same.simple_query("SELECT 40 + 2").await.unwrap()) });
        assert!(waiting(1), "the first client waits");
        let other = connect(&format!("{} application_name=other", proxy.app())).await;
        let second =
            tokio::spawn(async move { first_value(other.simple_query("SHOW application_name").await.unwrap()) });
        assert!(waiting(2), "the second client waits");
        let again = connect(&proxy.app()).await;
        let third = tokio::spawn(async move {
            let row = again.query_one("SELECT pg_backend_pid()", &[]).await.unwrap();
            row.get::<_, i32>(0)
        });
        assert!(waiting(3), "the third client waits");
        holder.batch_execute("COMMIT").await.unwrap();
        assert_eq!(first.await.unwrap(), "42", "the first waiting client's query ran");
        assert_eq!(second.await.unwrap(), "other", "the second client got its own parameters");
        assert_eq!(third.await.unwrap(), pid, "one server connection served everyone in turn");
    });
    assert_eq!(stat(|s| s.clients_waiting), 0);
    assert_eq!(stat(|s| s.servers_opened), 1, "no connection was closed and reopened");
}

#[test]
fn min_idle_connections_are_opened_ahead_of_demand() {
    let pg = cluster();
    let proxy = TestProxy::start(&pg, "pool_size = 4\nmin_idle = 3", "");
    assert_eq!(psql_conninfo(&proxy.app(), "SELECT 1").unwrap(), "1", "the first client creates the pool");
    // Three idle ones, or four when the first client's connection was busy while the pool looked: min_idle
    // counts idle connections, not all of them.
    let idle = || proxy.listener.stats().iter().map(|(_, s)| s.servers_idle).sum::<u64>();
    let servers = || -> u64 {
        let n = pg.primary().psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'").unwrap();
        n.parse().unwrap()
    };
    let warm = eventually(Duration::from_secs(10), || idle() >= 3 && idle() == servers());
    assert!(warm, "three idle server connections wait for clients ({} idle of {})", idle(), servers());
    assert!(servers() <= 4, "{} server connections", servers());
}

/// Idle server connections close once idle for `idle_timeout`, also those no checkout reaches (checkouts take
/// the most recently used); and `min_idle` never takes a pool past `pool_size`, however many are checked out.
#[test]
fn idle_connections_close_after_idle_timeout_and_min_idle_stays_within_the_pool() {
    let pg = cluster();
    let servers = || -> u64 {
        let n = pg.primary().psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'").unwrap();
        n.parse().unwrap()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Three clients in transactions at once open three connections; once they commit, all three are idle.
    let hold = |proxy: &TestProxy, n: usize| {
        rt.block_on(async {
            let mut clients = Vec::new();
            for _ in 0..n {
                let c = connect(&proxy.app()).await;
                c.simple_query("BEGIN; SELECT 1").await.unwrap();
                clients.push(c);
            }
            clients
        })
    };
    let proxy = TestProxy::start(&pg, "pool_size = 4\nidle_timeout = \"1s\"", "");
    let clients = hold(&proxy, 3);
    assert_eq!(servers(), 3);
    rt.block_on(async {
        for c in &clients {
            c.simple_query("COMMIT").await.unwrap();
        }
    });
    assert!(eventually(Duration::from_secs(10), || servers() == 0), "{} still open", servers());
    drop((clients, proxy));

    let proxy = TestProxy::start(&pg, "pool_size = 4\nmin_idle = 3", "");
    let clients = hold(&proxy, 3);
    let mut most = 0;
    for _ in 0..15 {
        most = most.max(servers());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(most, 4, "three checked out and one idle, within pool_size");
    drop(clients);
}

#[test]
fn search_path_follows_the_client_that_set_it() {
    let pg = cluster();
    let proxy = TestProxy::start(&pg, "pool_size = 1", "");
    psql_conninfo(&proxy.app(), "CREATE SCHEMA s1; CREATE TABLE s1.t (x int); INSERT INTO s1.t VALUES (42)").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let a = connect(&proxy.app()).await;
        let b = connect(&proxy.app()).await;
        a.simple_query("SET search_path = s1, public").await.unwrap();
        let x: i32 = a.query_one("SELECT x FROM t", &[]).await.unwrap().get(0);
        assert_eq!(x, 42, "a finds s1.t unqualified");
        let path: String = b.query_one("SHOW search_path", &[]).await.unwrap().get(0);
        assert_eq!(path, "\"$user\", public", "b, on the same server connection, has the default");
        let x: i32 = a.query_one("SELECT x FROM t", &[]).await.unwrap().get(0);
        assert_eq!(x, 42, "a keeps its search_path after b used the connection");
        assert!(a.simple_query("SET search_path = no such syntax").await.is_err());
        let path: String = a.query_one("SHOW search_path", &[]).await.unwrap().get(0);
        assert_eq!(path, "s1, public", "a failed SET changes nothing");
        a.simple_query("RESET search_path").await.unwrap();
        let _ = b.query_one("SELECT 1", &[]).await.unwrap();
        let path: String = a.query_one("SHOW search_path", &[]).await.unwrap().get(0);
        assert_eq!(path, "\"$user\", public", "a's RESET holds on its next connection too");
        // A DISCARD ALL through the extended protocol (a driver's pool reset) resets the server's settings
        // behind the proxy's back: b, which set the same search_path, must not be handed the connection as if
        // it still had it.
        b.simple_query("SET search_path = s1, public").await.unwrap();
        a.simple_query("SET search_path = s1, public").await.unwrap();
        a.execute("DISCARD ALL", &[]).await.unwrap();
        let path: String = b.query_one("SHOW search_path", &[]).await.unwrap().get(0);
        assert_eq!(path, "s1, public", "b keeps the search_path it set");
    });
    assert_eq!(proxy.servers_opened(), 1);
}

/// Plain SETs a client pipelines (tokio-postgres sends requests made at once without waiting) are each followed
/// when their own answer comes: none is lost, and one that fails changes nothing.
#[test]
fn pipelined_sets_are_each_followed() {
    let pg = cluster();
    let proxy = TestProxy::start(&pg, "pool_size = 1", "");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let a = connect(&proxy.app()).await;
        let b = connect(&proxy.app()).await;
        let (first, bad, second, select) = tokio::join!(
            a.batch_execute("SET work_mem = '7MB'"),
            a.batch_execute("SET statement_timeout = 'not a duration'"),
            a.batch_execute("SET search_path = s7, public"),
            a.batch_execute("SELECT 1"),
        );
        assert!(first.is_ok() && bad.is_err() && second.is_ok() && select.is_ok());
        // b, on the same (only) server connection, has the defaults; a has what it set on its next turn.
        b.batch_execute("SET work_mem = '1MB'").await.unwrap();
        let show = |name: &'static str| {
            let a = &a;
            async move { a.query_one(&format!("SHOW {name}"), &[]).await.unwrap().get::<_, String>(0) }
        };
        assert_eq!(show("work_mem").await, "7MB");
        assert_eq!(show("search_path").await, "s7, public");
        assert_eq!(show("statement_timeout").await, "0");

        // A DISCARD ALL through the extended protocol with a SET pipelined behind it: the settings made before
        // it are gone, the one made after it holds.
        let discard = a.prepare("DISCARD ALL").await.unwrap();
        let (discarded, after) = tokio::join!(a.execute(&discard, &[]), a.batch_execute("SET work_mem = '5MB'"));
        assert!(discarded.is_ok() && after.is_ok());
        b.batch_execute("SET work_mem = '1MB'").await.unwrap();
        assert_eq!(show("search_path").await, "\"$user\", public");
        assert_eq!(show("work_mem").await, "5MB");
    });
    assert_eq!(proxy.servers_opened(), 1);
}

/// A library loaded into a server process (`LOAD`) cannot be unloaded: the connection is replaced once its
/// client is done with it, so that no other client runs with it (auto_explain would log their plans).
#[test]
fn a_loaded_library_never_reaches_another_client() {
    let pg = cluster();
    pg.primary().psql("ALTER ROLE app SUPERUSER").unwrap();
    let loaded = "SELECT count(*)::text FROM pg_settings WHERE name LIKE 'auto_explain.%'";
    // Session pooling: the connection goes to the next client once the first leaves.
    let session = TestProxy::start(&pg, "pool_size = 1\npool_mode = \"session\"", "");
    for load in ["LOAD 'auto_explain'", "SELECT 1; LOAD 'auto_explain'"] {
        let first = psql_conninfo(&session.app(), &format!("{load}; {loaded}")).unwrap();
        assert_ne!(first, "0", "{load}: loaded for the client that ran it");
        assert_eq!(
            psql_conninfo(&session.app(), loaded).unwrap(),
            "0",
            "{load}: the next client's connection is fresh"
        );
    }
    let proxy = TestProxy::start(&pg, "pool_size = 1", "");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let a = connect(&proxy.app()).await;
        let b = connect(&proxy.app()).await;
        for load in ["LOAD 'auto_explain'", "/* c */ load 'auto_explain'"] {
            // Inside a transaction, to look at it on the same connection (the next one would not have it).
            a.batch_execute("BEGIN").await.unwrap();
            a.batch_execute(load).await.unwrap();
            let a_sees: String = a.query_one(loaded, &[]).await.unwrap().get(0);
            assert_ne!(a_sees, "0", "{load}: loaded where a ran it");
            a.batch_execute("COMMIT").await.unwrap();
            let b_sees: String = b.query_one(loaded, &[]).await.unwrap().get(0);
            assert_eq!(b_sees, "0", "{load}: b is on a fresh server connection");
        }
    });
    assert_eq!(proxy.servers_opened(), 3, "each connection that loaded it was replaced");
}

/// Session state the proxy does not follow (a SET of a parameter the server does not report, a role, LISTEN, a
/// temporary table, an SQL PREPARE, a cursor WITH HOLD) stays with the client that made it: the connection is
/// cleared before another client gets it, whether the statement came as a simple query, in a multi-statement
/// query or through the extended protocol, and the next client keeps its own parameters.
#[test]
fn session_state_the_proxy_does_not_follow_never_reaches_another_client() {
    let pg = cluster();
    pg.primary().psql("CREATE ROLE reporting; GRANT reporting TO app").unwrap();
    let proxy = TestProxy::start(&pg, "pool_size = 1", "");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let a = connect(&proxy.app()).await;
        let b = connect(&format!("{} application_name=bee", proxy.app())).await;
        a.simple_query("SET statement_timeout = '1234ms'").await.unwrap();
        a.simple_query("SELECT 1; SET work_mem = '7MB'").await.unwrap();
        a.execute("SET ROLE reporting", &[]).await.unwrap(); // unnamed Parse, Bind, Execute
        let named = a.prepare("SET maintenance_work_mem = '99MB'").await.unwrap();
        a.execute(&named, &[]).await.unwrap(); // Bind of a named statement
        a.batch_execute("LISTEN jobs; CREATE TEMP TABLE tt (x int); PREPARE q AS SELECT 1").await.unwrap();
        a.batch_execute("BEGIN; DECLARE c CURSOR WITH HOLD FOR SELECT 1; COMMIT").await.unwrap();
        let state = "SELECT concat_ws(' ', current_setting('statement_timeout'), current_setting('work_mem'), \
                     current_setting('maintenance_work_mem'), current_user, current_setting('application_name'), \
                     (SELECT count(*) FROM pg_listening_channels()), \
                     (SELECT count(*) > 0 FROM pg_class WHERE relname = 'tt' AND relnamespace = pg_my_temp_schema()), \
                     (SELECT count(*) FROM pg_prepared_statements WHERE from_sql), \
                     (SELECT count(*) FROM pg_cursors WHERE is_holdable))";
        let a_sees: String = a.query_one(state, &[]).await.unwrap().get(0);
        assert_eq!(a_sees, "1234ms 7MB 99MB reporting hapool 1 t 1 1", "a has all of it on its connection");
        let b_sees: String = b.query_one(state, &[]).await.unwrap().get(0);
        assert_eq!(b_sees, "0 4MB 64MB app bee 0 f 0 0", "b, on the same connection, has none of it, and its own name");
        // A plain autocommit SET is followed, as a simple query, among other statements or through the extended
        // protocol: it comes back with a on its next connection; a role does not.
        let a_sees: String = a.query_one(state, &[]).await.unwrap().get(0);
        assert_eq!(a_sees, "1234ms 7MB 99MB app hapool 0 f 0 0", "a keeps its plain SETs");
        // And a gets nothing of b's.
        b.simple_query("SET lock_timeout = '3s'").await.unwrap();
        let a_sees: String = a.query_one("SELECT current_setting('lock_timeout')", &[]).await.unwrap().get(0);
        assert_eq!(a_sees, "0", "a does not get b's lock_timeout");
        let b_sees: String = b.query_one("SELECT current_setting('lock_timeout')", &[]).await.unwrap().get(0);
        assert_eq!(b_sees, "3s", "b keeps its own");
    });
    assert_eq!(proxy.servers_opened(), 1, "one server connection, reset rather than replaced");
}

/// Each form alone (the test above sends them together, where one reset clears them all): what client a leaves
/// on the pool's one server connection is there for a, and gone for b, the next client on that connection.
/// Temporary tables named tt of the session: a probe that does not itself name the temporary schema (a query
/// that does marks its connection for a reset too).
const TEMP_TT: &str =
    "(SELECT count(*) FROM pg_class WHERE relname = 'tt' AND relnamespace = pg_my_temp_schema())::text";

#[test]
fn each_form_of_unfollowed_session_state_is_cleared_for_the_next_client() {
    let pg = cluster();
    pg.primary().psql("CREATE ROLE reporting; GRANT reporting TO app").unwrap();
    let proxy = TestProxy::start(&pg, "pool_size = 1", "");
    // (what a sends, through the extended protocol or not; what shows it; what b, on a clean connection, sees)
    let cases = [
        ("SELECT 1; SET work_mem = '7MB'", false, "current_setting('work_mem')", "4MB"),
        ("BEGIN; SET work_mem = '7MB'; COMMIT", false, "current_setting('work_mem')", "4MB"),
        ("SET work_mem = '7MB'", true, "current_setting('work_mem')", "4MB"),
        ("/* a comment first */ SET join_collapse_limit = 3", false, "current_setting('join_collapse_limit')", "8"),
        ("-- a; comment\nSET join_collapse_limit = 3", false, "current_setting('join_collapse_limit')", "8"),
        ("SET/**/join_collapse_limit = 3", false, "current_setting('join_collapse_limit')", "8"),
        ("CREATE /* t */ TEMP TABLE tt (x int)", false, TEMP_TT, "0"),
        ("SET ROLE reporting", true, "current_user", "app"),
        ("SELECT set_config('app.tenant', '42', false)", false, "current_setting('app.tenant', true)", ""),
        ("SELECT set_config('app.tenant', '42', false)", true, "current_setting('app.tenant', true)", ""),
        ("LISTEN jobs", false, "(SELECT count(*) FROM pg_listening_channels())::text", "0"),
        ("CREATE TEMP TABLE tt (x int)", false, TEMP_TT, "0"),
        ("SELECT 1 AS x INTO TEMP tt", false, TEMP_TT, "0"),
        ("CREATE TABLE pg_temp.tt (x int)", false, TEMP_TT, "0"),
        ("DO $$ BEGIN CREATE TEMP TABLE tt (x int); END $$", false, TEMP_TT, "0"),
        ("CREATE TABLE Pg_Temp.tt AS SELECT 1", true, TEMP_TT, "0"),
        ("PREPARE q AS SELECT 1", false, "(SELECT count(*) FROM pg_prepared_statements WHERE from_sql)::text", "0"),
        (
            "BEGIN; DECLARE c CURSOR WITH HOLD FOR SELECT 1; COMMIT",
            false,
            "(SELECT count(*) FROM pg_cursors WHERE is_holdable)::text",
            "0",
        ),
        (
            "SELECT pg_advisory_lock(4242)",
            false,
            "(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid())::text",
            "0",
        ),
    ];
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for (statement, extended, probe, clean) in cases {
            let a = connect(&proxy.app()).await;
            let b = connect(&proxy.app()).await;
            if extended {
                a.execute(statement, &[]).await.unwrap();
            } else {
                a.batch_execute(statement).await.unwrap();
            }
            let probe = format!("SELECT coalesce({probe}, '')");
            let a_sees: String = a.query_one(&probe, &[]).await.unwrap().get(0);
            assert_ne!(a_sees, clean, "{statement}: a has what it did on its connection");
            let b_sees: String = b.query_one(&probe, &[]).await.unwrap().get(0);
            assert_eq!(b_sees, clean, "{statement}: b, on the same connection, has none of it");
        }
    });
    assert_eq!(proxy.servers_opened(), 1, "one server connection, reset rather than replaced");
}

/// A DISCARD ALL or DEALLOCATE ALL the proxy would not see (behind a comment, after another statement) leaves
/// it believing the connection still has the prepared statements it shares between clients: the next client's
/// Bind then fails there. Each form, one connection for all.
#[test]
fn statements_dropped_behind_a_comment_or_another_statement_are_prepared_again() {
    let pg = cluster();
    let proxy = TestProxy::start(&pg, "pool_size = 1", "");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // The last: a client that found the proxy's own name of the statement (pg_prepared_statements) drops it.
        // "extended:": sent through the extended protocol (as drivers send a pool's reset).
        let forms = [
            "/* app */ DISCARD ALL",
            "SELECT 1; DEALLOCATE ALL",
            "-- x\ndeallocate/**/prepare all",
            "DEALLOCATE {}",
            "extended:DISCARD ALL",
            "extended:DEALLOCATE ALL",
        ];
        for (i, drop_all) in forms.into_iter().enumerate() {
            let a = connect(&proxy.app()).await;
            let sql = format!("SELECT $1::int + {i}");
            let statement = a.prepare(&sql).await.unwrap();
            assert_eq!(a.query_one(&statement, &[&1i32]).await.unwrap().get::<_, i32>(0), 1 + i as i32);
            let find = format!("SELECT name FROM pg_prepared_statements WHERE statement = '{sql}'");
            let name: String = a.query_one(&find, &[]).await.unwrap().get(0);
            let drop_all = drop_all.replace("{}", &name);
            match drop_all.strip_prefix("extended:") {
                Some(sql) => drop(a.execute(sql, &[]).await.unwrap()),
                None => a.batch_execute(&drop_all).await.unwrap(),
            }
            let b = connect(&proxy.app()).await;
            let statement = b.prepare(&sql).await.unwrap();
            let row = b.query_one(&statement, &[&2i32]).await;
            assert_eq!(row.map(|r| r.get::<_, i32>(0)).ok(), Some(2 + i as i32), "after {drop_all:?}");
        }
    });
    assert_eq!(proxy.servers_opened(), 1);
}

/// A DISCARD ALL that fails (inside a transaction block) drops nothing: the proxy must not forget the prepared
/// statements it shares on that connection, or the next client's statement is prepared there a second time
/// (42P05).
#[test]
fn a_failed_discard_all_leaves_the_shared_statements_usable() {
    let pg = cluster();
    let proxy = TestProxy::start(&pg, "pool_size = 1", "");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let a = connect(&proxy.app()).await;
        let mine = a.prepare("SELECT $1::int * 3").await.unwrap();
        assert_eq!(a.query_one(&mine, &[&2i32]).await.unwrap().get::<_, i32>(0), 6);
        // Inside a transaction block, begun before or in the same query; among other statements.
        for failing in [&["BEGIN", "DISCARD ALL"][..], &["BEGIN; DISCARD ALL"], &["DISCARD ALL; SELECT 1"]] {
            let (last, before) = failing.split_last().unwrap();
            for step in before {
                a.batch_execute(step).await.unwrap();
            }
            let err = a.batch_execute(last).await.unwrap_err();
            assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::ACTIVE_SQL_TRANSACTION), "{err}");
            a.batch_execute("ROLLBACK").await.unwrap();
            let b = connect(&proxy.app()).await;
            let theirs = b.prepare("SELECT $1::int * 3").await.unwrap();
            let row = b.query_one(&theirs, &[&3i32]).await;
            assert_eq!(row.map(|r| r.get::<_, i32>(0)).map_err(|e| e.to_string()), Ok(9), "after {failing:?}");
            // And a's own statement still exists, as it would on the server alone.
            assert_eq!(a.query_one(&mine, &[&4i32]).await.unwrap().get::<_, i32>(0), 12, "after {failing:?}");
        }
    });
}

/// `DISCARD ALL` and `DEALLOCATE ALL` sent in the extended protocol (as drivers send every statement), or among
/// other statements: the connection lost every prepared statement, so what the proxy knows of it must say so,
/// or the next statement the client prepares is taken for present and fails with 26000.
#[test]
fn statements_dropped_in_the_extended_protocol_are_prepared_again() {
    let pg = cluster();
    let proxy = TestProxy::start(&pg, "pool_size = 1", "");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let a = connect(&proxy.app()).await;
        for drop_all in ["DEALLOCATE ALL", "DISCARD ALL", "SELECT 1; DEALLOCATE ALL"] {
            let before = a.prepare("SELECT $1::int + 1").await.unwrap();
            assert_eq!(a.query_one(&before, &[&1i32]).await.unwrap().get::<_, i32>(0), 2);
            if drop_all.contains(';') {
                a.batch_execute(drop_all).await.unwrap();
            } else {
                a.execute(drop_all, &[]).await.unwrap();
            }
            let again = a.prepare("SELECT $1::int + 1").await;
            let row = match again {
                Ok(s) => a.query_one(&s, &[&2i32]).await.map(|r| r.get::<_, i32>(0)),
                Err(e) => Err(e),
            };
            assert_eq!(row.map_err(|e| format!("{e:?}")), Ok(3), "after {drop_all}");
            // Another client on the same (only) connection too.
            let b = connect(&proxy.app()).await;
            let theirs = b.prepare("SELECT $1::int + 1").await.unwrap();
            assert_eq!(b.query_one(&theirs, &[&5i32]).await.unwrap().get::<_, i32>(0), 6, "after {drop_all}");
        }
    });
}

/// `DEALLOCATE ALL` in the extended protocol with more of the same pipeline behind it, sent before its answer:
/// a statement prepared again behind it is created again on the server, not taken for present there (which
/// failed with 26000), and a name given before it is gone, as on PostgreSQL.
#[test]
fn statements_used_behind_a_pipelined_drop_of_every_statement_are_prepared_again() {
    let pg = cluster();
    let proxy = trusted_proxy(&pg, "pool_size = 1");
    let mut s = raw_login(&proxy, Duration::from_secs(10));
    let execute = message(b'E', b"\0\0\0\0\0");
    let sync = message(b'S', b"");
    let bind = |name: &str| message(b'B', &[b"\0", name.as_bytes(), b"\0\0\0\0\0\0\0"].concat());
    let parse = |name: &str| message(b'P', &[name.as_bytes(), b"\0SELECT 41 + 1\0\0\0"].concat());
    let errors = |answers: &[(u8, Vec<u8>)]| -> Vec<String> {
        answers.iter().filter(|(tag, _)| *tag == b'E').map(|(_, b)| String::from_utf8_lossy(b).into()).collect()
    };
    let rows =
        |answers: &[(u8, Vec<u8>)]| answers.iter().filter(|(tag, body)| *tag == b'D' && body.ends_with(b"42")).count();
    s.write_all(&[parse("s1"), bind("s1"), execute.clone(), sync.clone()].concat()).unwrap();
    let first = read_to_ready(&mut s);
    assert!(errors(&first).is_empty(), "{first:?}");

    // Prepared again behind the drop: s1's text is the one the server had (and the proxy takes for present).
    let drop_all = [message(b'P', b"\0DEALLOCATE ALL\0\0\0"), bind(""), execute.clone()].concat();
    let behind = [parse("s1"), bind("s1"), execute.clone(), parse("s2"), bind("s2"), execute.clone(), sync.clone()];
    s.write_all(&[drop_all.clone(), behind.concat()].concat()).unwrap();
    let answers = read_to_ready(&mut s);
    assert!(errors(&answers).is_empty(), "{:?}", errors(&answers));
    assert_eq!(rows(&answers), 2, "both statements ran: {answers:?}");

    // Used behind the drop without being prepared again: gone, as PostgreSQL says; s1 given after the drop
    // was sent stays.
    s.write_all(&[drop_all, parse("s1"), bind("s2"), execute.clone(), sync.clone()].concat()).unwrap();
    let gone = read_to_ready(&mut s);
    let gone = errors(&gone);
    assert!(gone.len() == 1 && gone[0].contains("26000") && gone[0].contains("\"s2\""), "{gone:?}");
    s.write_all(&[bind("s1"), execute.clone(), sync.clone()].concat()).unwrap();
    let kept = read_to_ready(&mut s);
    assert!(errors(&kept).is_empty() && rows(&kept) == 1, "{kept:?}");

    // A named portal bound to the drop in one batch and executed in the next, the statement prepared again
    // right behind it; and a Sync between the drop and the statement sent before the drop's answer is read.
    s.write_all(&message(b'Q', b"BEGIN\0")).unwrap();
    read_to_ready(&mut s);
    let bind_p = message(b'B', b"p\0\0\0\0\0\0\0\0");
    s.write_all(&[message(b'P', b"\0DEALLOCATE ALL\0\0\0"), bind_p, sync.clone()].concat()).unwrap();
    read_to_ready(&mut s);
    let execute_p = message(b'E', b"p\0\0\0\0\0");
    let again = [execute_p, sync.clone(), parse("s1"), bind("s1"), execute.clone(), sync.clone()];
    s.write_all(&again.concat()).unwrap();
    let later = read_to_readies(&mut s, 2);
    s.write_all(&message(b'Q', b"COMMIT\0")).unwrap();
    read_to_ready(&mut s);
    assert!(errors(&later).is_empty() && rows(&later) == 1, "{later:?}");

    // The same pipeline in a failed transaction: nothing in it runs (the drop neither), and afterwards the
    // statement named before it still works.
    for sql in [&b"BEGIN\0"[..], b"SELECT 1/0\0"] {
        s.write_all(&message(b'Q', sql)).unwrap();
        read_to_ready(&mut s);
    }
    let drop_all = [message(b'P', b"\0DEALLOCATE ALL\0\0\0"), bind(""), execute.clone()].concat();
    s.write_all(&[drop_all, bind("s1"), execute.clone(), sync.clone()].concat()).unwrap();
    let aborted = read_to_ready(&mut s);
    assert!(errors(&aborted).iter().any(|e| e.contains("25P02")), "{aborted:?}");
    s.write_all(&message(b'Q', b"ROLLBACK\0")).unwrap();
    read_to_ready(&mut s);
    s.write_all(&[bind("s1"), execute, sync].concat()).unwrap();
    let after = read_to_ready(&mut s);
    assert!(errors(&after).is_empty() && rows(&after) == 1, "{after:?}");
}

/// A simple-query `DEALLOCATE ALL` pipelined behind an extended-protocol batch, a statement the server had
/// prepared again behind it: the Parse goes to the server (it was answered by the proxy, and the Bind failed
/// with 26000).
#[test]
fn a_simple_query_drop_pipelined_behind_other_requests_is_followed() {
    let pg = cluster();
    let proxy = trusted_proxy(&pg, "pool_size = 1");
    let mut s = raw_login(&proxy, Duration::from_secs(10));
    let (execute, sync) = (message(b'E', b"\0\0\0\0\0"), message(b'S', b""));
    let s1 = [message(b'P', b"s1\0SELECT 41 + 1\0\0\0"), message(b'B', b"\0s1\0\0\0\0\0\0\0")].concat();
    s.write_all(&[s1.clone(), execute.clone(), sync.clone()].concat()).unwrap();
    read_to_ready(&mut s);
    let unnamed = [message(b'P', b"\0SELECT 1\0\0\0"), message(b'B', b"\0\0\0\0\0\0\0\0")].concat();
    let pipeline =
        [unnamed, execute.clone(), sync.clone(), message(b'Q', b"DEALLOCATE ALL\0"), s1, execute, sync].concat();
    s.write_all(&pipeline).unwrap();
    let answers = read_to_readies(&mut s, 3);
    let errors: Vec<String> =
        answers.iter().filter(|(tag, _)| *tag == b'E').map(|(_, b)| String::from_utf8_lossy(b).into()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(answers.iter().filter(|(tag, _)| *tag == b'D').count(), 2, "{answers:?}");
}

/// 300,000 Bind/Execute pairs sent in one write while the answers stream back. The proxy reads the server between
/// client chunks and, while a write to the server is blocked, reads the server too (session/flush.rs); a proxy
/// that did neither would deadlock here against a server blocked on its own output.
#[test]
fn a_large_pipeline_streams_through_one_server_connection() {
    let pg = cluster();
    let proxy = trusted_proxy(&pg, "pool_size = 1");
    let mut s = raw_login(&proxy, Duration::from_secs(60));
    let mut buf = vec![0u8; 64 * 1024];
    // ~7 MB of requests, ~9 MB of answers.
    const N: usize = 300_000;
    let mut pipeline = message(b'P', b"\0SELECT 1\0\0\0");
    let bind_execute = [message(b'B', b"\0\0\0\0\0\0\0\0"), message(b'E', b"\0\0\0\0\0")].concat();
    for _ in 0..N {
        pipeline.extend_from_slice(&bind_execute);
    }
    pipeline.extend_from_slice(&message(b'S', b""));
    let mut writer = s.try_clone().unwrap();
    let sending = std::thread::spawn(move || writer.write_all(&pipeline));
    let (mut rows, mut pending) = (0usize, Vec::new());
    'read: loop {
        let n = s.read(&mut buf).expect("answers keep coming (no deadlock)");
        assert!(n > 0, "the proxy closed the connection");
        pending.extend_from_slice(&buf[..n]);
        let mut at = 0;
        while pending.len() - at >= 5 {
            let len = u32::from_be_bytes(pending[at + 1..at + 5].try_into().unwrap()) as usize;
            if pending.len() - at < len + 1 {
                break;
            }
            match pending[at] {
                b'D' => rows += 1,
                b'E' => panic!("error: {}", String::from_utf8_lossy(&pending[at..at + len + 1])),
                b'Z' => break 'read,
                _ => {}
            }
            at += len + 1;
        }
        pending.drain(..at);
    }
    sending.join().unwrap().unwrap();
    assert_eq!(rows, N);
}

#[test]
fn a_statement_made_stale_by_ddl_fails_once_not_for_every_client() {
    let pg = cluster();
    let proxy = TestProxy::start(&pg, "pool_size = 1", "");
    psql_conninfo(&proxy.app(), "CREATE TABLE t (a int); INSERT INTO t VALUES (1)").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let first = connect(&proxy.app()).await;
        let statement = first.prepare("SELECT * FROM t").await.unwrap();
        first.query(&statement, &[]).await.unwrap();
        first.batch_execute("ALTER TABLE t ADD COLUMN b int").await.unwrap();
        let err = first.query(&statement, &[]).await.unwrap_err();
        assert_eq!(err.code(), Some(&tokio_postgres::error::SqlState::FEATURE_NOT_SUPPORTED), "{err}");
        // Another client preparing the same text must not inherit the stale plan of the shared statement.
        let second = connect(&proxy.app()).await;
        let rows = second.query("SELECT * FROM t", &[]).await.unwrap();
        assert_eq!(rows[0].len(), 2, "the new shape, two columns");
    });
}

#[test]
fn a_client_killed_mid_copy_leaves_no_busy_server_connection() {
    let pg = cluster();
    let proxy = TestProxy::start(&pg, "pool_size = 1", "");
    psql_conninfo(&proxy.app(), "CREATE TABLE t (id int)").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use futures_util::SinkExt;
        let (client, conn) = tokio_postgres::connect(&proxy.app(), tokio_postgres::NoTls).await.unwrap();
        let driver = tokio::spawn(conn);
        let mut sink = Box::pin(client.copy_in::<_, bytes::Bytes>("COPY t FROM STDIN").await.unwrap());
        sink.send(bytes::Bytes::from_static(b"1\n2\n")).await.unwrap();
        // The client vanishes: its connection task is gone, the socket closes, no CopyFail is sent. The sink
        // is never dropped: dropping it makes the driver send CopyFail + Sync if a worker thread still polls the
        // driver, and a COPY ended that way leaves a clean connection that may rightly be reused.
        std::mem::forget(sink);
        driver.abort();
    });
    drop(rt);
    // The next client gets a working server connection (the one left mid-COPY was closed, not reused).
    assert_eq!(psql_conninfo(&proxy.app(), "SELECT count(*) FROM t").unwrap(), "0");
    let copying =
        "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' AND query LIKE 'COPY%' AND state <> 'idle'";
    assert!(eventually(Duration::from_secs(10), || pg.primary().psql(copying).is_ok_and(|n| n == "0")));
    assert_eq!(proxy.servers_opened(), 2, "the connection used by the COPY was replaced");
}

#[test]
fn per_user_limits_and_the_startup_timeout() {
    let pg = cluster();
    let proxy = TestProxy::start(&pg, "max_client_connections_per_user = 1\nstartup_timeout = \"1s\"", "");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _held = rt.block_on(connect(&proxy.app()));
    let err = psql_conninfo(&proxy.app(), "SELECT 1").unwrap_err();
    assert!(err.contains("too many client connections (1 allowed for this user)"), "{err}");

    // A client that connects and says nothing is dropped after startup_timeout.
    let mut silent = TcpStream::connect(proxy.addr).unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 256];
    let n = silent.read(&mut buf).unwrap_or(0);
    assert!(n == 0 || buf[0] == b'E', "closed, at most with an error");
    assert!(started.elapsed() < Duration::from_secs(5), "closed after about a second");
}

/// A client that sends a statement and its Terminate together, and goes: the statement runs, as it would on a
/// direct connection (it was dropped with the Terminate).
#[test]
fn a_statement_sent_with_the_terminate_still_runs() {
    let pg = cluster();
    pg.primary().psql_db("app", "CREATE TABLE fired (x int); GRANT ALL ON fired TO PUBLIC").unwrap();
    let proxy = trusted_proxy(&pg, "pool_size = 1");
    let mut s = raw_login(&proxy, Duration::from_secs(10));
    s.write_all(&[message(b'Q', b"INSERT INTO fired VALUES (1)\0"), message(b'X', b"")].concat()).unwrap();
    drop(s);
    let count = || pg.primary().psql_db("app", "SELECT count(*) FROM fired").unwrap();
    assert!(eventually(Duration::from_secs(10), || count() == "1"), "{} rows", count());
}

#[test]
fn an_unknown_message_type_ends_only_that_client() {
    let pg = cluster();
    let proxy = trusted_proxy(&pg, "pool_size = 1");
    let reply = raw_exchange(&proxy, &message(b'z', b"junk"), b'E');
    let text = String::from_utf8_lossy(&reply);
    assert!(reply.first() == Some(&b'E') && text.contains("invalid frontend message type"), "{text}");
    assert!(text.contains("08P01"), "{text}");
    // No pooled server connection was harmed: one per user's pool, none replaced.
    assert_eq!(psql_conninfo(&proxy.app(), "SELECT 1").unwrap(), "1");
    assert_eq!(raw_exchange(&proxy, &message(b'Q', b"SELECT 1\0"), b'Z').first(), Some(&b'T'));
    assert_eq!(proxy.servers_opened(), 2);
}

#[test]
fn an_idle_server_connection_ended_by_the_server_is_not_handed_out() {
    let pg = cluster();
    let proxy = TestProxy::start(&pg, "pool_size = 1", "");
    assert_eq!(psql_conninfo(&proxy.app(), "SELECT 1").unwrap(), "1");
    let killed = pg
        .primary()
        .psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = 'app'")
        .unwrap();
    assert_eq!(killed, "1", "the pooled connection's backend was terminated");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(psql_conninfo(&proxy.app(), "SELECT 2").unwrap(), "2", "the next client is not hit by it");
    assert_eq!(proxy.servers_opened(), 2);
}

#[test]
fn an_execute_followed_by_flush_keeps_its_server_until_the_sync() {
    let pg = cluster();
    let proxy = trusted_proxy(&pg, "pool_size = 1");
    pg.primary()
        .psql_db("app", "CREATE TABLE IF NOT EXISTS flushed (id int); GRANT ALL ON flushed TO trusted")
        .unwrap();
    // Parse, Bind, Execute an INSERT, then Flush: every answer comes back, but the implicit transaction stays
    // open on the server until the client's Sync (cursor libraries work this way).
    let parse = message(b'P', b"\0INSERT INTO flushed VALUES (1)\0\0\0");
    let bind = message(b'B', b"\0\0\0\0\0\0\0\0");
    let execute = message(b'E', b"\0\0\0\0\0");
    let mut s = raw_login(&proxy, Duration::from_secs(5));
    s.write_all(&[parse, bind, execute, message(b'H', b"")].concat()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.contains(&b'C') {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed");
        got.extend_from_slice(&buf[..n]);
    }
    let busy = |proxy: &TestProxy| proxy.listener.stats().iter().map(|(_, st)| st.servers_active).sum::<u64>();
    assert_eq!(busy(&proxy), 1, "the connection stays with the client: it is inside a transaction");
    s.write_all(&message(b'S', b"")).unwrap();
    while !got.contains(&b'Z') {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(eventually(Duration::from_secs(5), || busy(&proxy) == 0), "released after the Sync");
    assert_eq!(pg.primary().psql_db("app", "SELECT count(*) FROM flushed").unwrap(), "1");
}
