//! Table of validation rules: one failing example each, and the error text with its line and column.

use std::path::Path;

use super::*;

const BASE: &str = r#"
[[cluster]]
name = "app"
engine = "postgres"

  [[cluster.node]]
  name = "db1"
  host = "127.0.0.1"

  [[cluster.user]]
  name = "app"
  password = "pw"
"#;

fn env(name: &str) -> Option<String> {
    match name {
        "APP_PW" => Some("from-env".into()),
        _ => None,
    }
}

fn check(source: &str) -> Result<Config, ConfigError> {
    parse(source, "t.toml", &env, Path::new("/nonexistent-dir"))
}

fn errors(source: &str) -> Vec<String> {
    match check(source) {
        Ok(_) => panic!("expected errors for:\n{source}"),
        Err(e) => e.to_string().lines().map(str::to_string).collect(),
    }
}

/// The only error of `source`, which must contain `needle`.
fn one_error(source: &str, needle: &str) -> String {
    let errs = errors(source);
    assert_eq!(errs.len(), 1, "expected one error, got {errs:#?}");
    assert!(errs[0].contains(needle), "{:?} does not contain {needle:?}", errs[0]);
    errs[0].clone()
}

fn with(extra_cluster_keys: &str) -> String {
    BASE.replacen("engine = \"postgres\"\n", &format!("engine = \"postgres\"\n{extra_cluster_keys}\n"), 1)
}

#[test]
fn base_is_valid_with_defaults() {
    let c = check(BASE).unwrap();
    let cl = &c.cluster[0];
    assert_eq!(cl.listen.to_string(), "127.0.0.1:6432");
    assert_eq!(cl.pool_mode, PoolMode::Transaction);
    assert_eq!(cl.node[0].port, 5432);
    assert_eq!(cl.user[0].auth, AuthMethod::ScramSha256);
    assert_eq!(cl.monitor.failure_threshold, 3);
    assert_eq!(c.coordination, Coordination::Local);
    assert_eq!(c.admin.listen.to_string(), "127.0.0.1:9898");
}

#[test]
fn example_config_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let source = std::fs::read_to_string(dir.join("hapool.toml")).unwrap();
    let c = parse(&source, "hapool.toml", &|_| None, &dir).unwrap();
    assert_eq!(c.cluster.len(), 2);
    assert_eq!(c.cluster[1].engine, Engine::Mysql);
    assert_eq!(c.cluster[0].user[0].password.as_ref().unwrap().expose(), "app");
}

#[test]
fn normalized_output_validates_again_and_hides_secrets() {
    let c = check(BASE).unwrap();
    let text = c.to_toml();
    assert!(!text.contains("\"pw\""), "{text}");
    assert!(text.contains("\"***\""));
    let again = check(&text).unwrap();
    assert_eq!(again.cluster[0].connect_timeout, c.cluster[0].connect_timeout);
    assert_eq!(again.cluster[0].max_message_size, c.cluster[0].max_message_size);
    assert!(!format!("{c:?}").contains("\"pw\""));
}

#[test]
fn toml_syntax_error_has_its_line() {
    let e = one_error("[admin]\nlisten = \n", "t.toml:2:");
    assert!(e.contains("t.toml:2:"), "{e}");
}

#[test]
fn unknown_key_is_refused_with_location() {
    let e = one_error(&format!("{BASE}  colour = \"red\"\n"), "unknown field `colour`");
    assert!(e.starts_with("t.toml:13:"), "{e}");
}

#[test]
fn wrong_type_is_refused() {
    one_error(&with("pool_size = \"many\""), "invalid type");
}

#[test]
fn port_out_of_range_names_file_line_col_and_node() {
    let src = BASE.replace("host = \"127.0.0.1\"", "host = \"127.0.0.1\"\n  port = 70000");
    let e = one_error(&src, "port");
    assert_eq!(e, "t.toml:9:10: cluster \"app\" node \"db1\": port 70000 is out of range 1-65535");
}

#[test]
fn cluster_name_is_required() {
    one_error(&BASE.replace("name = \"app\"\nengine", "engine"), "cluster #1: name is required");
}

#[test]
fn engine_is_required_and_checked() {
    one_error(&BASE.replace("engine = \"postgres\"\n", ""), "engine is required");
    one_error(
        &BASE.replace("\"postgres\"", "\"oracle\""),
        "engine \"oracle\" is not valid: expected one of \"postgres\", \"mysql\"",
    );
}

#[test]
fn duplicate_names_are_refused() {
    let twice_node = BASE
        .replace("  [[cluster.user]]", "  [[cluster.node]]\n  name = \"db1\"\n  host = \"h\"\n\n  [[cluster.user]]");
    one_error(&twice_node, "name \"db1\" is used more than once");
    let twice_user = format!("{BASE}\n  [[cluster.user]]\n  name = \"app\"\n  password = \"x\"\n");
    one_error(&twice_user, "user \"app\": name \"app\" is used more than once");
    let twice_cluster = format!(
        "{BASE}{}",
        BASE.replace("engine = \"postgres\"", "engine = \"postgres\"\nlisten = \"127.0.0.1:7000\"")
    );
    one_error(&twice_cluster, "cluster \"app\": name \"app\" is used more than once");
}

#[test]
fn clusters_need_nodes_and_users() {
    let no_nodes = BASE.replace("  [[cluster.node]]\n  name = \"db1\"\n  host = \"127.0.0.1\"\n", "");
    one_error(&no_nodes, "node requires at least one [[cluster.node]]");
    let no_users = BASE.replace("  [[cluster.user]]\n  name = \"app\"\n  password = \"pw\"\n", "");
    one_error(&no_users, "user requires at least one [[cluster.user]]");
}

#[test]
fn node_host_is_required() {
    one_error(&BASE.replace("  host = \"127.0.0.1\"\n", ""), "node \"db1\": host is required");
}

#[test]
fn listen_must_be_an_address() {
    one_error(&with("listen = \"localhost\""), "listen \"localhost\" is not valid");
}

#[test]
fn listeners_must_not_collide() {
    let src = format!("[http]\nlisten = \"127.0.0.1:6432\"\n{BASE}");
    one_error(&src, "cluster \"app\": listen 127.0.0.1:6432 is also used by http.listen");
}

#[test]
fn durations_must_parse_and_be_positive() {
    one_error(
        &with("connect_timeout = \"5 parsecs\""),
        "connect_timeout \"5 parsecs\" is not valid: expected a duration",
    );
    one_error(&with("idle_timeout = \"0s\""), "idle_timeout \"0s\" is not valid");
    one_error(&with("query_wait_timeout = \"30\""), "query_wait_timeout \"30\"");
}

#[test]
fn sizes_must_parse() {
    one_error(&with("max_message_size = \"big\""), "max_message_size \"big\" is not valid: expected a size");
}

#[test]
fn pool_limits_are_checked() {
    one_error(&with("pool_size = 0"), "pool_size 0 is out of range 1-10000");
    one_error(&with("pool_size = 5\nmin_idle = 6"), "min_idle 6 is out of range 0-5");
    one_error(&with("max_client_connections = -1"), "max_client_connections -1 is out of range");
}

#[test]
fn node_weight_is_bounded() {
    one_error(
        &BASE.replace("host = \"127.0.0.1\"", "host = \"h\"\n  weight = 5000"),
        "weight 5000 is out of range 0-1000",
    );
}

#[test]
fn password_and_password_file_are_exclusive() {
    let src = BASE.replace("password = \"pw\"", "password = \"pw\"\n  password_file = \"pw.txt\"");
    one_error(&src, "password and password_file cannot both be set");
}

#[test]
fn password_file_must_be_readable_and_is_trimmed() {
    let src = BASE.replace("password = \"pw\"", "password_file = \"missing.pw\"");
    one_error(&src, "password_file /nonexistent-dir/missing.pw cannot be read");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.pw"), "filepw\n").unwrap();
    let c = parse(&src.replace("missing.pw", "app.pw"), "t.toml", &env, dir.path()).unwrap();
    assert_eq!(c.cluster[0].user[0].password.as_ref().unwrap().expose(), "filepw");
}

#[test]
fn environment_variables_expand_or_fail() {
    let c = check(&BASE.replace("\"pw\"", "\"${APP_PW}\"")).unwrap();
    assert_eq!(c.cluster[0].user[0].password.as_ref().unwrap().expose(), "from-env");
    one_error(&BASE.replace("\"pw\"", "\"${NOT_SET}\""), "password refers to ${NOT_SET}, which is not set");
    one_error(&BASE.replace("\"pw\"", "\"${BROKEN\""), "password has a malformed ${…} reference");
}

#[test]
fn auth_method_must_suit_the_engine() {
    one_error(
        &BASE.replace("password = \"pw\"", "password = \"pw\"\n  auth = \"mysql_native_password\""),
        "auth \"mysql_native_password\" is not valid",
    );
    let mysql =
        BASE.replace("\"postgres\"", "\"mysql\"").replace("password = \"pw\"", "password = \"pw\"\n  auth = \"md5\"");
    one_error(&mysql, "auth \"md5\" is not valid");
}

#[test]
fn password_is_required_unless_trust() {
    one_error(&BASE.replace("  password = \"pw\"\n", ""), "auth requires password or password_file");
    check(&BASE.replace("password = \"pw\"", "auth = \"trust\"")).unwrap();
}

#[test]
fn etcd_needs_endpoints_and_a_node_name() {
    let errs = errors(&format!("[coordination]\nmode = \"etcd\"\n{BASE}"));
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(errs[0].contains("mode requires at least one entry in endpoints"));
    assert!(errs[1].contains("mode requires node_name"));
    let bad = format!("[coordination]\nmode = \"etcd\"\nnode_name = \"n1\"\nendpoints = [\"127.0.0.1:2379\"]\n{BASE}");
    one_error(&bad, "endpoints \"127.0.0.1:2379\" is not valid: expected a URL");
    let good =
        format!("[coordination]\nmode = \"etcd\"\nnode_name = \"n1\"\nendpoints = [\"http://127.0.0.1:2379\"]\n{BASE}");
    assert!(matches!(check(&good).unwrap().coordination, Coordination::Etcd(_)));
}

#[test]
fn vip_needs_an_ip_and_an_interface() {
    one_error(
        &format!("[vip]\naddress = \"10.0.0.300\"\ninterface = \"eth0\"\n{BASE}"),
        "vip: address \"10.0.0.300\" is not valid",
    );
    one_error(&format!("[vip]\naddress = \"10.0.0.30\"\n{BASE}"), "vip: interface is required");
}

#[test]
fn tls_modes_need_their_files() {
    let t = |body: &str| format!("{BASE}\n  [cluster.tls]\n{body}\n");
    let errs = errors(&t("  client_mode = \"require\"\n  cert = \"c.pem\""));
    assert!(errs[0].contains("client_mode requires key (a PEM file)"), "{errs:?}");
    assert!(errs[1].contains("cert /nonexistent-dir/c.pem cannot be read"), "{errs:?}");
    one_error(&t("  server_mode = \"verify-full\""), "server_mode requires server_ca");
    one_error(
        &t("  server_mode = \"verify-ca\"\n  server_ca = \"ca.pem\""),
        "server_ca /nonexistent-dir/ca.pem cannot be read",
    );
    one_error(&t("  server_mode = \"sometimes\""), "server_mode \"sometimes\" is not valid");
}

#[test]
fn enums_in_sections_are_checked() {
    one_error(&format!("[logging]\nlevel = \"loud\"\n{BASE}"), "logging: level \"loud\" is not valid");
    one_error(
        &format!("{BASE}\n  [cluster.routing]\n  read_your_writes = \"always\"\n"),
        "read_your_writes \"always\"",
    );
    let routing = |v: &str| format!("{BASE}\n  [cluster.routing]\n  primary_reads = {v}\n");
    for (value, want) in
        [("true", PrimaryReads::True), ("false", PrimaryReads::False), ("\"weight\"", PrimaryReads::Weight)]
    {
        let config = crate::parse(&routing(value), "t.toml", &|_| None, Path::new("/nonexistent-dir")).unwrap();
        assert_eq!(config.cluster[0].routing.primary_reads, want, "{value}");
    }
    one_error(&routing("3"), "true, false or a word");
    one_error(&routing("\"sometimes\""), "primary_reads \"sometimes\" is not valid");
    one_error(
        &format!("{BASE}\n  [cluster.monitor]\n  failure_threshold = 0\n"),
        "cluster \"app\" monitor: failure_threshold 0 is out of range 1-100",
    );
}

#[test]
fn several_mistakes_are_reported_together_in_file_order() {
    let src = BASE
        .replace("engine = \"postgres\"", "engine = \"postgres\"\npool_size = 0")
        .replace("host = \"127.0.0.1\"", "host = \"127.0.0.1\"\n  port = 0")
        .replace("password = \"pw\"", "password = \"pw\"\n  pool_size = \"x\"".replace("\"x\"", "-3").as_str());
    let errs = errors(&src);
    assert_eq!(
        errs,
        vec![
            "t.toml:5:13: cluster \"app\": pool_size 0 is out of range 1-10000",
            "t.toml:10:10: cluster \"app\" node \"db1\": port 0 is out of range 1-65535",
            "t.toml:15:15: cluster \"app\" user \"app\": pool_size -3 is out of range 1-10000",
        ]
    );
}

#[test]
fn hba_rules_are_checked_and_decide_by_first_match() {
    let rules = "\n  [[cluster.hba]]\n  users = [\"app\"]\n  address = \"10.0.0.0/8\"\n  method = \"trust\"\n\n  [[cluster.hba]]\n  users = [\"all\"]\n  address = \"127.0.0.1\"\n  method = \"password\"\n";
    let c = check(&format!("{BASE}{rules}")).unwrap();
    let hba = &c.cluster[0].hba;
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    assert_eq!(hba_decision(hba, "app", ip("10.1.2.3")), HbaMethod::Trust);
    assert_eq!(hba_decision(hba, "app", ip("127.0.0.1")), HbaMethod::Password);
    assert_eq!(hba_decision(hba, "app", ip("::ffff:127.0.0.1")), HbaMethod::Password, "IPv4-mapped");
    assert_eq!(hba_decision(hba, "other", ip("10.1.2.3")), HbaMethod::Reject, "no rule matches");
    assert_eq!(hba_decision(hba, "app", ip("192.168.1.1")), HbaMethod::Reject);
    assert_eq!(hba_decision(&[], "app", ip("192.168.1.1")), HbaMethod::Password, "no rules: the user's own method");

    one_error(
        &format!("{BASE}\n  [[cluster.hba]]\n  address = \"10.0.0.0/33\"\n  method = \"trust\"\n"),
        "address \"10.0.0.0/33\" is not valid",
    );
    one_error(
        &format!(
            "{BASE}\n  [[cluster.hba]]\n  users = [\"ghost\"]\n  address = \"10.0.0.0/8\"\n  method = \"trust\"\n"
        ),
        "users \"ghost\" is not valid",
    );
    one_error(&format!("{BASE}\n  [[cluster.hba]]\n  address = \"10.0.0.0/8\"\n"), "method is required");
}

#[test]
fn cidr_ranges_match_by_prefix() {
    let c = Cidr::parse("192.168.0.0/23").unwrap();
    assert!(c.contains("192.168.1.200".parse().unwrap()));
    assert!(!c.contains("192.168.2.1".parse().unwrap()));
    assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
    assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
    assert!(!Cidr::parse("0.0.0.0/0").unwrap().contains("::2".parse().unwrap()));
    assert_eq!(Cidr::parse("1.2.3.4/x"), None);
}

#[test]
fn worker_threads_default_to_half_the_cores() {
    let c = check(BASE).unwrap();
    assert_eq!(c.runtime.threads(2), 1);
    assert_eq!(c.runtime.threads(16), 8);
    assert_eq!(c.runtime.threads(1), 1);
    let c = check(&format!("[runtime]\nworker_threads = 3\n{BASE}")).unwrap();
    assert_eq!(c.runtime.threads(2), 3);
    one_error(&format!("[runtime]\nworker_threads = -1\n{BASE}"), "worker_threads -1 is out of range 0-1024");
}

#[test]
fn ignore_startup_parameters_default_to_what_jdbc_sends() {
    assert_eq!(check(BASE).unwrap().cluster[0].ignore_startup_parameters, ["extra_float_digits"]);
    let c = check(&with("ignore_startup_parameters = [\"extra_float_digits\", \"search_path\"]")).unwrap();
    assert_eq!(c.cluster[0].ignore_startup_parameters, ["extra_float_digits", "search_path"]);
    assert!(check(&with("ignore_startup_parameters = []")).unwrap().cluster[0].ignore_startup_parameters.is_empty());
    let e = one_error(&with("ignore_startup_parameters = \"search_path\""), "invalid type");
    assert!(e.starts_with("t.toml:"), "{e}");
}

#[test]
fn idle_transaction_timeout_is_optional() {
    assert_eq!(check(BASE).unwrap().cluster[0].idle_transaction_timeout, None);
    let c = check(&with("idle_transaction_timeout = \"5m\"")).unwrap();
    assert_eq!(c.cluster[0].idle_transaction_timeout, Some(std::time::Duration::from_secs(300)));
    one_error(&with("idle_transaction_timeout = \"soon\""), "idle_transaction_timeout");
}

#[test]
fn tcp_options_default_to_keepalive_with_the_systems_times() {
    let tcp = check(BASE).unwrap().cluster[0].tcp.clone();
    assert!(
        tcp.keepalive && tcp.keepalive_idle.is_none() && tcp.keepalive_count.is_none() && tcp.user_timeout.is_none()
    );
    let t = |body: &str| format!("{BASE}\n  [cluster.tcp]\n{body}\n");
    let c = check(&t(
        "  keepalive_idle = \"1m\"\n  keepalive_interval = \"5s\"\n  keepalive_count = 3\n  user_timeout = \"30s\"",
    ));
    let tcp = c.unwrap().cluster[0].tcp.clone();
    assert_eq!(tcp.keepalive_idle, Some(std::time::Duration::from_secs(60)));
    assert_eq!((tcp.keepalive_interval, tcp.keepalive_count), (Some(std::time::Duration::from_secs(5)), Some(3)));
    assert_eq!(tcp.user_timeout, Some(std::time::Duration::from_secs(30)));
    assert!(!check(&t("  keepalive = false")).unwrap().cluster[0].tcp.keepalive);
    let e = one_error(&t("  keepalive_idle = \"1500ms\""), "whole seconds");
    assert!(e.contains("cluster.tcp.keepalive_idle") || e.contains("keepalive_idle"), "{e}");
    one_error(&t("  keepalive_interval = \"10h\""), "keepalive_interval");
    one_error(&t("  keepalive_count = 0"), "keepalive_count");
    one_error(&t("  user_timeout = \"25d\""), "user_timeout");
    one_error(&t("  user_timeout = \"500us\""), "user_timeout");
    assert!(check(&t("  user_timeout = \"24d\"")).is_ok());
    one_error(&t("  keepalive = false\n  keepalive_count = 3"), "keepalive_count");
    one_error(&t("  keepalive_time = \"1m\""), "keepalive_time");
}

#[test]
fn a_secret_the_server_keeps_serves_its_own_auth_method() {
    let scram = "SCRAM-SHA-256$4096:/fzR7dLl/fl+VsAM8JxGRQ==$wr9FBcMGQGQuI2LjeuvFevjLvBgkCmKEs7CZlbMcLdk=:\
                 uIMTZz5b42se8M36duw4AP0g2pQeH3ehGLz4N+fzzFs=";
    let md5 = "md599d7714169587ba382241135a9f425e7";
    let with = |password: &str, auth: &str| {
        BASE.replace("password = \"pw\"", &format!("password = \"{password}\"\n  auth = \"{auth}\""))
    };
    check(&with(scram, "scram-sha-256")).unwrap();
    check(&with(md5, "md5")).unwrap();
    check(&with(md5, "trust")).unwrap();
    one_error(&with(scram, "md5"), "auth cannot be used: a SCRAM secret as the password serves only");
    one_error(&with(md5, "scram-sha-256"), "auth cannot be used: an MD5 hash as the password serves only");
    let broken = with(&scram.replace("$4096", "$x"), "scram-sha-256");
    one_error(&broken, "password cannot be used: it starts like a SCRAM secret but is not one");
    let err = check(&broken).unwrap_err().to_string();
    assert!(!err.contains("/fzR7dLl"), "the secret is never shown: {err}");
    let monitor = format!("{BASE}\n  [cluster.monitor]\n  user = \"mon\"\n  password = \"{md5}\"\n");
    one_error(&monitor, "password cannot be used: the manager logs in with the password itself");
}

#[test]
fn auth_user_names_a_user_with_its_password_and_auth_query_takes_the_name() {
    let c = check(&with("auth_user = \"app\"")).unwrap();
    assert_eq!(c.cluster[0].auth_user.as_deref(), Some("app"));
    assert!(c.cluster[0].auth_query.starts_with("SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = $1"));
    assert_eq!(c.cluster[0].auth_dbname, "postgres");
    assert_eq!(check(BASE).unwrap().cluster[0].auth_user, None);
    one_error(
        &with("auth_user = \"nobody\""),
        "auth_user cannot be used: auth_user must name a [[cluster.user]] of this cluster",
    );
    let hashed = with("auth_user = \"app\"")
        .replace("password = \"pw\"", "password = \"md599d7714169587ba382241135a9f425e7\"\n  auth = \"md5\"");
    one_error(&hashed, "auth_user cannot be used: auth_user needs the password itself");
    let query = with("auth_user = \"app\"\nauth_query = \"SELECT u, p FROM users WHERE u = 'x'\"");
    one_error(&query, "auth_query cannot be used: it must take the user name as $1");
}
