//! The raw serde mirror of hapool.toml: every table and key, unknown keys refused, values not yet checked.
//!
//! Values that need checking (addresses, durations, sizes, enums) stay strings here so that validation can
//! report every problem at once, each with its own location.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub admin: Option<RawAdmin>,
    pub http: Option<RawHttp>,
    pub logging: Option<RawLogging>,
    pub coordination: Option<RawCoordination>,
    pub vip: Option<RawVip>,
    pub runtime: Option<RawRuntime>,
    #[serde(default)]
    pub cluster: Vec<RawCluster>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRuntime {
    pub worker_threads: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogging {
    pub level: Option<String>,
    pub format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCoordination {
    pub mode: Option<String>,
    pub endpoints: Option<Vec<String>>,
    pub node_name: Option<String>,
    pub ttl: Option<String>,
    pub prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVip {
    pub address: Option<String>,
    pub interface: Option<String>,
    pub follows: Option<String>,
    pub gratuitous_arp: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub name: Option<String>,
    pub engine: Option<String>,
    pub listen: Option<String>,
    pub pool_mode: Option<String>,
    pub pool_size: Option<i64>,
    pub min_idle: Option<i64>,
    pub max_client_connections: Option<i64>,
    pub max_client_connections_per_user: Option<i64>,
    pub connect_timeout: Option<String>,
    pub startup_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub client_idle_timeout: Option<String>,
    pub idle_transaction_timeout: Option<String>,
    pub max_lifetime: Option<String>,
    pub query_wait_timeout: Option<String>,
    pub max_message_size: Option<String>,
    pub max_prepared_statements: Option<i64>,
    pub ignore_startup_parameters: Option<Vec<String>>,
    pub auth_user: Option<String>,
    pub auth_query: Option<String>,
    pub auth_dbname: Option<String>,
    #[serde(default)]
    pub node: Vec<RawNode>,
    #[serde(default)]
    pub user: Vec<RawUser>,
    #[serde(default)]
    pub hba: Vec<RawHba>,
    pub monitor: Option<RawMonitor>,
    pub routing: Option<RawRouting>,
    pub failover: Option<RawFailover>,
    pub tls: Option<RawTls>,
    pub tcp: Option<RawTcp>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTcp {
    pub keepalive: Option<bool>,
    pub keepalive_idle: Option<String>,
    pub keepalive_interval: Option<String>,
    pub keepalive_count: Option<i64>,
    pub user_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    pub name: Option<String>,
    pub host: Option<String>,
    pub port: Option<i64>,
    pub weight: Option<i64>,
    pub priority: Option<i64>,
    pub no_failover: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub name: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<String>,
    pub auth: Option<String>,
    pub pool_size: Option<i64>,
    pub max_client_connections: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHba {
    pub users: Option<Vec<String>>,
    pub address: Option<String>,
    pub method: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMonitor {
    pub user: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<String>,
    pub probe_interval: Option<String>,
    pub probe_timeout: Option<String>,
    pub failure_threshold: Option<i64>,
    pub recovery_threshold: Option<i64>,
}

/// A key that takes `true`, `false` or a word (`primary_reads = "weight"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged, expecting = "true, false or a word such as \"weight\"")]
pub enum BoolOrWord {
    Bool(bool),
    Word(String),
}

impl BoolOrWord {
    pub fn text(&self) -> String {
        match self {
            BoolOrWord::Bool(b) => b.to_string(),
            BoolOrWord::Word(w) => w.clone(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    pub read_write_split: Option<bool>,
    pub max_replica_lag: Option<String>,
    pub max_replica_lag_bytes: Option<String>,
    pub read_your_writes: Option<String>,
    pub causal_wait: Option<String>,
    pub primary_reads: Option<BoolOrWord>,
    pub fallback_to_primary: Option<bool>,
    pub load_balance: Option<String>,
    pub unknown_functions: Option<String>,
    pub read_only_functions: Option<Vec<String>>,
    pub write_functions: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFailover {
    pub automatic: Option<bool>,
    pub failover_cooldown: Option<String>,
    pub max_lag_on_failover: Option<String>,
    pub synchronous: Option<bool>,
    pub promote_timeout: Option<String>,
    pub fence_command: Option<String>,
    pub rejoin_command: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub client_mode: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub server_mode: Option<String>,
    pub server_ca: Option<String>,
}
