//! Validation of `[[cluster]]` tables: nodes, users, monitor, routing, failover and TLS.

use std::collections::HashSet;
use std::time::Duration;

use super::ctx::{Ctx, Scope};
use crate::error::ProblemKind;
use crate::model::*;
use crate::password::PasswordKind;
use crate::raw::*;

pub fn clusters(ctx: &mut Ctx<'_>, root: &Scope, raw: &[RawCluster]) -> Vec<Cluster> {
    let mut names = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, rc) in raw.iter().enumerate() {
        let scope = root.element("cluster", i, rc.name.as_deref());
        let cluster = cluster(ctx, &scope, rc);
        if !cluster.name.is_empty() && !names.insert(cluster.name.clone()) {
            ctx.report(&scope, "name", ProblemKind::Duplicate { value: cluster.name.clone() });
        }
        out.push(cluster);
    }
    out
}

fn cluster(ctx: &mut Ctx<'_>, s: &Scope, raw: &RawCluster) -> Cluster {
    let name = ctx.required(s, "name", raw.name.as_ref());
    let engines = [("postgres", Engine::Postgres), ("mysql", Engine::Mysql)];
    if raw.engine.is_none() {
        ctx.report(s, "engine", ProblemKind::Missing);
    }
    let engine = ctx.choice(s, "engine", raw.engine.as_ref(), Engine::Postgres, &engines);
    let default_listen = match engine {
        Engine::Postgres => "127.0.0.1:6432",
        Engine::Mysql => "127.0.0.1:6033",
    };
    let modes = [("session", PoolMode::Session), ("transaction", PoolMode::Transaction)];
    let pool_size = ctx.int(s, "pool_size", raw.pool_size, 20, 1, 10_000);
    let min_idle = ctx.int(s, "min_idle", raw.min_idle, 0, 0, i64::from(pool_size));
    if raw.node.is_empty() {
        ctx.report(s, "node", ProblemKind::Requires { what: "at least one [[cluster.node]]".into() });
    }
    if raw.user.is_empty() {
        ctx.report(s, "user", ProblemKind::Requires { what: "at least one [[cluster.user]]".into() });
    }
    let user = users(ctx, s, engine, &raw.user);
    Cluster {
        engine,
        listen: ctx.socket(s, "listen", raw.listen.as_ref(), default_listen),
        pool_mode: ctx.choice(s, "pool_mode", raw.pool_mode.as_ref(), PoolMode::Transaction, &modes),
        pool_size,
        min_idle,
        max_client_connections: ctx.int(s, "max_client_connections", raw.max_client_connections, 1000, 1, 1_000_000),
        max_client_connections_per_user: ctx.opt_int(
            s,
            "max_client_connections_per_user",
            raw.max_client_connections_per_user,
            1,
            1_000_000,
        ),
        connect_timeout: ctx.duration(s, "connect_timeout", raw.connect_timeout.as_ref(), Duration::from_secs(5)),
        startup_timeout: ctx.duration(s, "startup_timeout", raw.startup_timeout.as_ref(), Duration::from_secs(10)),
        idle_timeout: ctx.duration(s, "idle_timeout", raw.idle_timeout.as_ref(), Duration::from_secs(600)),
        client_idle_timeout: ctx.opt_duration(s, "client_idle_timeout", raw.client_idle_timeout.as_ref()),
        idle_transaction_timeout: ctx.opt_duration(
            s,
            "idle_transaction_timeout",
            raw.idle_transaction_timeout.as_ref(),
        ),
        max_lifetime: ctx.duration(s, "max_lifetime", raw.max_lifetime.as_ref(), Duration::from_secs(3600)),
        query_wait_timeout: ctx.duration(
            s,
            "query_wait_timeout",
            raw.query_wait_timeout.as_ref(),
            Duration::from_secs(30),
        ),
        max_message_size: ctx
            .size(s, "max_message_size", raw.max_message_size.as_ref())
            .unwrap_or(crate::units::ByteSize(64 << 20)),
        max_prepared_statements: ctx.int(s, "max_prepared_statements", raw.max_prepared_statements, 200, 0, 100_000),
        ignore_startup_parameters: raw
            .ignore_startup_parameters
            .clone()
            .unwrap_or_else(|| vec!["extra_float_digits".to_string()]),
        auth_user: auth_user(ctx, s, engine, raw.auth_user.as_ref(), &user),
        auth_query: auth_query(ctx, s, raw.auth_query.as_ref()),
        auth_dbname: ctx.string(s, "auth_dbname", raw.auth_dbname.as_ref()).unwrap_or_else(|| "postgres".into()),
        node: nodes(ctx, s, engine, &raw.node),
        user,
        hba: hba(ctx, s, &raw.hba, &raw.user),
        monitor: monitor(ctx, &s.table("monitor"), raw.monitor.as_ref(), engine),
        routing: routing(ctx, &s.table("routing"), raw.routing.as_ref()),
        failover: failover(ctx, &s.table("failover"), raw.failover.as_ref()),
        tls: tls(ctx, &s.table("tls"), raw.tls.as_ref()),
        tcp: tcp(ctx, &s.table("tcp"), raw.tcp.as_ref()),
        name,
    }
}

fn nodes(ctx: &mut Ctx<'_>, s: &Scope, engine: Engine, raw: &[RawNode]) -> Vec<Node> {
    let default_port = match engine {
        Engine::Postgres => 5432,
        Engine::Mysql => 3306,
    };
    let mut names = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, rn) in raw.iter().enumerate() {
        let s = s.element("node", i, rn.name.as_deref());
        let node = Node {
            name: ctx.required(&s, "name", rn.name.as_ref()),
            host: ctx.required(&s, "host", rn.host.as_ref()),
            port: ctx.int(&s, "port", rn.port, default_port, 1, 65_535) as u16,
            weight: ctx.int(&s, "weight", rn.weight, 1, 0, 1_000),
            priority: ctx.int(&s, "priority", rn.priority, 100, 0, 1_000),
            no_failover: rn.no_failover.unwrap_or(false),
        };
        if !node.name.is_empty() && !names.insert(node.name.clone()) {
            ctx.report(&s, "name", ProblemKind::Duplicate { value: node.name.clone() });
        }
        out.push(node);
    }
    out
}

fn users(ctx: &mut Ctx<'_>, s: &Scope, engine: Engine, raw: &[RawUser]) -> Vec<User> {
    let (default_auth, methods): (AuthMethod, &[(&str, AuthMethod)]) = match engine {
        Engine::Postgres => (
            AuthMethod::ScramSha256,
            &[("scram-sha-256", AuthMethod::ScramSha256), ("md5", AuthMethod::Md5), ("trust", AuthMethod::Trust)],
        ),
        Engine::Mysql => (
            AuthMethod::CachingSha2Password,
            &[
                ("caching_sha2_password", AuthMethod::CachingSha2Password),
                ("mysql_native_password", AuthMethod::MysqlNativePassword),
                ("trust", AuthMethod::Trust),
            ],
        ),
    };
    let mut names = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, ru) in raw.iter().enumerate() {
        let s = s.element("user", i, ru.name.as_deref());
        let user = User {
            name: ctx.required(&s, "name", ru.name.as_ref()),
            password: ctx.secret(&s, ru.password.as_ref(), ru.password_file.as_ref()),
            auth: ctx.choice(&s, "auth", ru.auth.as_ref(), default_auth, methods),
            pool_size: ctx.opt_int(&s, "pool_size", ru.pool_size, 1, 10_000),
            max_client_connections: ctx.opt_int(&s, "max_client_connections", ru.max_client_connections, 1, 1_000_000),
        };
        let no_password_given = ru.password.is_none() && ru.password_file.is_none();
        if user.auth != AuthMethod::Trust && no_password_given {
            ctx.report(&s, "auth", ProblemKind::Requires { what: "password or password_file".into() });
        }
        if let (Engine::Postgres, Some(password)) = (engine, &user.password) {
            secret_fits(ctx, &s, user.auth, password.expose());
        }
        if !user.name.is_empty() && !names.insert(user.name.clone()) {
            ctx.report(&s, "name", ProblemKind::Duplicate { value: user.name.clone() });
        }
        out.push(user);
    }
    out
}

/// `auth_user` names a configured user of a PostgreSQL cluster with the password itself: hapool logs in as it,
/// before any client of it has.
fn auth_user(ctx: &mut Ctx<'_>, s: &Scope, engine: Engine, raw: Option<&String>, users: &[User]) -> Option<String> {
    let name = ctx.string(s, "auth_user", raw)?;
    let user = users.iter().find(|u| u.name == name);
    let plain =
        |u: &User| u.password.as_ref().is_some_and(|p| crate::password_kind(p.expose()) == Ok(PasswordKind::Plain));
    let problem = match (engine, user) {
        (Engine::Mysql, _) => Some("auth_user is for PostgreSQL clusters"),
        (_, None) => Some("auth_user must name a [[cluster.user]] of this cluster"),
        (_, Some(u)) if !plain(u) => {
            Some("auth_user needs the password itself (not a secret the server keeps): hapool logs in as it")
        }
        _ => None,
    };
    if let Some(reason) = problem {
        ctx.report(s, "auth_user", ProblemKind::Unusable { reason: reason.into() });
    }
    Some(name)
}

/// The query that looks a user up (the default is PgBouncer's, schema-qualified, and leaving out a role whose
/// password has expired: pg_shadow needs a superuser; a SECURITY DEFINER function serves a less privileged
/// auth_user). `$1` is bound as a parameter, never pasted into the text.
fn auth_query(ctx: &mut Ctx<'_>, s: &Scope, raw: Option<&String>) -> String {
    let query = ctx.string(s, "auth_query", raw).unwrap_or_else(|| {
        "SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = $1 \
         AND (valuntil IS NULL OR valuntil OPERATOR(pg_catalog.>) pg_catalog.now())"
            .to_string()
    });
    if !query.contains("$1") {
        ctx.report(s, "auth_query", ProblemKind::Unusable { reason: "it must take the user name as $1".into() });
    }
    query
}

/// A PostgreSQL password given as a secret the server keeps must serve the user's `auth`: an MD5 hash cannot
/// answer SCRAM, and a SCRAM secret serves only SCRAM logins (hapool logs in to the server with the keys of a
/// client's SCRAM login, since it never has the password).
fn secret_fits(ctx: &mut Ctx<'_>, s: &Scope, auth: AuthMethod, password: &str) {
    let problem = match (crate::password_kind(password), auth) {
        (Err(reason), _) => Some(("password", reason)),
        (Ok(PasswordKind::Md5Hash), AuthMethod::ScramSha256) => {
            Some(("auth", "an MD5 hash as the password serves only auth = \"md5\" or \"trust\" (give the password or its SCRAM secret)"))
        }
        (Ok(PasswordKind::ScramSecret), AuthMethod::Md5 | AuthMethod::Trust) => Some((
            "auth",
            "a SCRAM secret as the password serves only auth = \"scram-sha-256\" (hapool logs in to the server with \
             the keys of a client's SCRAM login)",
        )),
        _ => None,
    };
    if let Some((key, reason)) = problem {
        ctx.report(s, key, ProblemKind::Unusable { reason: reason.into() });
    }
}

fn hba(ctx: &mut Ctx<'_>, s: &Scope, raw: &[RawHba], users: &[RawUser]) -> Vec<HbaRule> {
    let methods = [("password", HbaMethod::Password), ("trust", HbaMethod::Trust), ("reject", HbaMethod::Reject)];
    let mut out = Vec::with_capacity(raw.len());
    for (i, rh) in raw.iter().enumerate() {
        let s = s.element("hba", i, None);
        let text = ctx.required(&s, "address", rh.address.as_ref());
        let address = Cidr::parse(&text).unwrap_or_else(|| {
            if !text.is_empty() {
                ctx.report(
                    &s,
                    "address",
                    super::ctx::invalid(&text, "an address range such as \"10.0.0.0/8\" or \"::1/128\""),
                );
            }
            Cidr { network: std::net::IpAddr::from([0, 0, 0, 0]), prefix: 32 }
        });
        let names: Vec<String> = rh.users.clone().unwrap_or_default().into_iter().filter(|u| u != "all").collect();
        for name in &names {
            if !users.iter().any(|u| u.name.as_deref() == Some(name.as_str())) {
                ctx.report(&s, "users", super::ctx::invalid(name, "a user of this cluster, or \"all\""));
            }
        }
        if rh.method.is_none() {
            ctx.report(&s, "method", ProblemKind::Missing);
        }
        let method = ctx.choice(&s, "method", rh.method.as_ref(), HbaMethod::Reject, &methods);
        out.push(HbaRule { users: names, address, method });
    }
    out
}

fn monitor(ctx: &mut Ctx<'_>, s: &Scope, raw: Option<&RawMonitor>, engine: Engine) -> Monitor {
    let default = RawMonitor::default();
    let raw = raw.unwrap_or(&default);
    let password = ctx.secret(s, raw.password.as_ref(), raw.password_file.as_ref());
    let hashed = password.as_ref().is_some_and(|p| crate::password_kind(p.expose()) != Ok(PasswordKind::Plain));
    if engine == Engine::Postgres && hashed {
        let reason = "the manager logs in with the password itself, not with a secret the server keeps";
        ctx.report(s, "password", ProblemKind::Unusable { reason: reason.into() });
    }
    Monitor {
        user: ctx.string(s, "user", raw.user.as_ref()),
        password,
        probe_interval: ctx.duration(s, "probe_interval", raw.probe_interval.as_ref(), Duration::from_secs(1)),
        probe_timeout: ctx.duration(s, "probe_timeout", raw.probe_timeout.as_ref(), Duration::from_secs(1)),
        failure_threshold: ctx.int(s, "failure_threshold", raw.failure_threshold, 3, 1, 100),
        recovery_threshold: ctx.int(s, "recovery_threshold", raw.recovery_threshold, 2, 1, 100),
    }
}

fn routing(ctx: &mut Ctx<'_>, s: &Scope, raw: Option<&RawRouting>) -> Routing {
    let default = RawRouting::default();
    let raw = raw.unwrap_or(&default);
    use ReadYourWrites as R;
    let ryw = [("off", R::Off), ("transaction", R::Transaction), ("session", R::Session), ("causal", R::Causal)];
    let primary_reads =
        [("false", PrimaryReads::False), ("true", PrimaryReads::True), ("weight", PrimaryReads::Weight)];
    let balance = [("weighted", LoadBalance::Weighted), ("least_outstanding", LoadBalance::LeastOutstanding)];
    let unknown = [("primary", UnknownFunctions::Primary), ("replica", UnknownFunctions::Replica)];
    Routing {
        read_write_split: raw.read_write_split.unwrap_or(true),
        max_replica_lag: ctx.opt_duration(s, "max_replica_lag", raw.max_replica_lag.as_ref()),
        max_replica_lag_bytes: ctx.size(s, "max_replica_lag_bytes", raw.max_replica_lag_bytes.as_ref()),
        read_your_writes: ctx.choice(s, "read_your_writes", raw.read_your_writes.as_ref(), R::Off, &ryw),
        causal_wait: ctx.duration(s, "causal_wait", raw.causal_wait.as_ref(), Duration::from_millis(100)),
        primary_reads: ctx.choice(
            s,
            "primary_reads",
            raw.primary_reads.as_ref().map(BoolOrWord::text).as_ref(),
            PrimaryReads::False,
            &primary_reads,
        ),
        fallback_to_primary: raw.fallback_to_primary.unwrap_or(true),
        load_balance: ctx.choice(s, "load_balance", raw.load_balance.as_ref(), LoadBalance::Weighted, &balance),
        unknown_functions: ctx.choice(
            s,
            "unknown_functions",
            raw.unknown_functions.as_ref(),
            UnknownFunctions::Primary,
            &unknown,
        ),
        read_only_functions: raw.read_only_functions.clone().unwrap_or_default(),
        write_functions: raw.write_functions.clone().unwrap_or_default(),
    }
}

fn failover(ctx: &mut Ctx<'_>, s: &Scope, raw: Option<&RawFailover>) -> Failover {
    let default = RawFailover::default();
    let raw = raw.unwrap_or(&default);
    Failover {
        automatic: raw.automatic.unwrap_or(true),
        failover_cooldown: ctx.duration(
            s,
            "failover_cooldown",
            raw.failover_cooldown.as_ref(),
            Duration::from_secs(3600),
        ),
        max_lag_on_failover: ctx.size(s, "max_lag_on_failover", raw.max_lag_on_failover.as_ref()),
        synchronous: raw.synchronous.unwrap_or(false),
        promote_timeout: ctx.duration(s, "promote_timeout", raw.promote_timeout.as_ref(), Duration::from_secs(30)),
        fence_command: ctx.string(s, "fence_command", raw.fence_command.as_ref()),
        rejoin_command: ctx.string(s, "rejoin_command", raw.rejoin_command.as_ref()),
    }
}

fn tcp(ctx: &mut Ctx<'_>, s: &Scope, raw: Option<&RawTcp>) -> Tcp {
    let default = RawTcp::default();
    let raw = raw.unwrap_or(&default);
    // Linux takes keepalive times in whole seconds up to 32767, and the user timeout in milliseconds (an i32).
    let seconds = |ctx: &mut Ctx<'_>, key: &str, value: Option<&String>| {
        let d = ctx.opt_duration(s, key, value)?;
        if d.subsec_nanos() == 0 && d.as_secs() <= 32_767 {
            return Some(d);
        }
        let text = value.map(String::as_str).unwrap_or_default();
        ctx.report(s, key, super::ctx::invalid(text, "whole seconds from \"1s\" to \"32767s\""));
        None
    };
    let keepalive = raw.keepalive.unwrap_or(true);
    let keepalive_idle = seconds(ctx, "keepalive_idle", raw.keepalive_idle.as_ref());
    let keepalive_interval = seconds(ctx, "keepalive_interval", raw.keepalive_interval.as_ref());
    let keepalive_count = ctx.opt_int(s, "keepalive_count", raw.keepalive_count, 1, 127);
    if !keepalive {
        let given = [
            ("keepalive_idle", raw.keepalive_idle.as_ref().map(String::to_string)),
            ("keepalive_interval", raw.keepalive_interval.as_ref().map(String::to_string)),
            ("keepalive_count", raw.keepalive_count.map(|n| n.to_string())),
        ];
        for (key, value) in given.into_iter().filter_map(|(key, value)| Some((key, value?))) {
            ctx.report(
                s,
                key,
                super::ctx::invalid(&value, "no value while keepalive = false (it applies to keepalive)"),
            );
        }
    }
    // At least a millisecond (0 is the system's default), at most i32::MAX milliseconds (Linux refuses more).
    let user_timeout = ctx.opt_duration(s, "user_timeout", raw.user_timeout.as_ref()).filter(|d| {
        let fits = (1..=i32::MAX as u128).contains(&d.as_millis());
        if !fits {
            let text = raw.user_timeout.as_deref().unwrap_or_default();
            ctx.report(s, "user_timeout", super::ctx::invalid(text, "from \"1ms\" to 24 days (\"2147483647ms\")"));
        }
        fits
    });
    Tcp { keepalive, keepalive_idle, keepalive_interval, keepalive_count, user_timeout }
}

fn tls(ctx: &mut Ctx<'_>, s: &Scope, raw: Option<&RawTls>) -> Tls {
    let default = RawTls::default();
    let raw = raw.unwrap_or(&default);
    use ClientTlsMode as C;
    use ServerTlsMode as S;
    let client_modes = [("disable", C::Disable), ("allow", C::Allow), ("require", C::Require)];
    let server_modes = [
        ("disable", S::Disable),
        ("prefer", S::Prefer),
        ("require", S::Require),
        ("verify-ca", S::VerifyCa),
        ("verify-full", S::VerifyFull),
    ];
    let client_mode = ctx.choice(s, "client_mode", raw.client_mode.as_ref(), C::Disable, &client_modes);
    let server_mode = ctx.choice(s, "server_mode", raw.server_mode.as_ref(), S::Prefer, &server_modes);
    if client_mode != C::Disable {
        for (key, value) in [("cert", &raw.cert), ("key", &raw.key)] {
            if value.is_none() {
                ctx.report(s, "client_mode", ProblemKind::Requires { what: format!("{key} (a PEM file)") });
            }
        }
    }
    if matches!(server_mode, S::VerifyCa | S::VerifyFull) && raw.server_ca.is_none() {
        ctx.report(s, "server_mode", ProblemKind::Requires { what: "server_ca (a PEM file)".into() });
    }
    Tls {
        client_mode,
        cert: ctx.readable_file(s, "cert", raw.cert.as_ref()),
        key: ctx.readable_file(s, "key", raw.key.as_ref()),
        server_mode,
        server_ca: ctx.readable_file(s, "server_ca", raw.server_ca.as_ref()),
    }
}
