//! The validated, typed configuration the rest of hapool reads. Every value here has passed validation.
//!
//! It serializes back to TOML (durations as "3s", sizes as "16MiB", secrets as "***") for `hapool check`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::secret::Secret;
use crate::units::ByteSize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    pub admin: Admin,
    pub http: Http,
    pub logging: Logging,
    pub coordination: Coordination,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vip: Option<Vip>,
    pub runtime: Runtime,
    pub cluster: Vec<Cluster>,
}

/// How many threads serve clients.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Runtime {
    /// 0: half the CPU cores (at least one), leaving the rest to the database and the clients that usually
    /// share the machine; measured on 2 cores, one thread cost 22 µs of CPU per transaction and two 32 µs.
    pub worker_threads: u32,
}

impl Runtime {
    /// The thread count to start with `cores` CPU cores available.
    pub fn threads(&self, cores: usize) -> usize {
        match self.worker_threads {
            0 => (cores / 2).max(1),
            n => n as usize,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Admin {
    pub listen: SocketAddr,
    pub user: String,
    pub password: Option<Secret>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Http {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Logging {
    pub level: LogLevel,
    pub format: LogFormat,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum Coordination {
    Local,
    Etcd(Etcd),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Etcd {
    pub endpoints: Vec<String>,
    pub node_name: String,
    #[serde(serialize_with = "duration")]
    pub ttl: Duration,
    pub prefix: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VipFollows {
    Leader,
    Primary,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Vip {
    pub address: IpAddr,
    pub interface: String,
    pub follows: VipFollows,
    pub gratuitous_arp: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Postgres,
    Mysql,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    Session,
    Transaction,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cluster {
    pub name: String,
    pub engine: Engine,
    pub listen: SocketAddr,
    pub pool_mode: PoolMode,
    pub pool_size: u32,
    pub min_idle: u32,
    pub max_client_connections: u32,
    pub max_client_connections_per_user: Option<u32>,
    #[serde(serialize_with = "duration")]
    pub connect_timeout: Duration,
    #[serde(serialize_with = "duration")]
    pub startup_timeout: Duration,
    #[serde(serialize_with = "duration")]
    pub idle_timeout: Duration,
    #[serde(serialize_with = "opt_duration")]
    pub client_idle_timeout: Option<Duration>,
    /// Clients that hold a transaction open this long without sending anything are ended (25P03), their
    /// transaction rolled back: one stalled client does not keep a pooled connection from the others.
    #[serde(serialize_with = "opt_duration")]
    pub idle_transaction_timeout: Option<Duration>,
    #[serde(serialize_with = "duration")]
    pub max_lifetime: Duration,
    #[serde(serialize_with = "duration")]
    pub query_wait_timeout: Duration,
    pub max_message_size: ByteSize,
    pub max_prepared_statements: u32,
    /// Startup parameters a client may send that the proxy neither follows nor refuses: dropped (PgBouncer's
    /// setting of the same name). Default: `extra_float_digits`, which JDBC sends.
    pub ignore_startup_parameters: Vec<String>,
    /// A user of this cluster hapool logs in as to look up the others in the server (PgBouncer's `auth_user`):
    /// a client whose user is not configured is checked against what `auth_query` returns for it.
    pub auth_user: Option<String>,
    /// Returns the user name and what the server keeps for its password (`$1`: the user name).
    pub auth_query: String,
    /// The database `auth_query` runs in (default `postgres`).
    pub auth_dbname: String,
    pub node: Vec<Node>,
    pub user: Vec<User>,
    /// Client address rules, first match wins; empty: every user authenticates with its own `auth`.
    pub hba: Vec<HbaRule>,
    pub monitor: Monitor,
    pub routing: Routing,
    pub failover: Failover,
    pub tls: Tls,
    pub tcp: Tcp,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub weight: u32,
    pub priority: u32,
    pub no_failover: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AuthMethod {
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    #[serde(rename = "md5")]
    Md5,
    #[serde(rename = "trust")]
    Trust,
    #[serde(rename = "mysql_native_password")]
    MysqlNativePassword,
    #[serde(rename = "caching_sha2_password")]
    CachingSha2Password,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct User {
    pub name: String,
    pub password: Option<Secret>,
    pub auth: AuthMethod,
    pub pool_size: Option<u32>,
    pub max_client_connections: Option<u32>,
}

/// What an hba rule demands of the clients it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum HbaMethod {
    /// The user's own `auth` method.
    #[serde(rename = "password")]
    Password,
    #[serde(rename = "trust")]
    Trust,
    #[serde(rename = "reject")]
    Reject,
}

/// `address` in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub network: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// Parses "10.0.0.0/8", "::1/128" or a lone address (a /32 or /128).
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (text.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Cidr { network: addr, prefix })
    }

    /// Whether `ip` is inside the range (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => mask_eq(&n.octets(), &a.octets(), self.prefix),
            (IpAddr::V6(n), IpAddr::V6(a)) => mask_eq(&n.octets(), &a.octets(), self.prefix),
            _ => false,
        }
    }
}

fn mask_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let (full, rest) = ((prefix / 8) as usize, prefix % 8);
    if a[..full] != b[..full] {
        return false;
    }
    rest == 0 || (a[full] ^ b[full]) & (0xffu8 << (8 - rest)) == 0
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{}/{}", self.network, self.prefix))
    }
}

/// One client address rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HbaRule {
    /// User names it applies to; empty: every user.
    pub users: Vec<String>,
    pub address: Cidr,
    pub method: HbaMethod,
}

impl HbaRule {
    pub fn matches(&self, user: &str, ip: IpAddr) -> bool {
        (self.users.is_empty() || self.users.iter().any(|u| u == user)) && self.address.contains(ip)
    }
}

/// How a client must authenticate: the first matching rule, else (with no rules at all) its own method; with
/// rules but no match the client is rejected, as pg_hba.conf does.
pub fn hba_decision(rules: &[HbaRule], user: &str, ip: IpAddr) -> HbaMethod {
    if rules.is_empty() {
        return HbaMethod::Password;
    }
    rules.iter().find(|r| r.matches(user, ip)).map_or(HbaMethod::Reject, |r| r.method)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Monitor {
    pub user: Option<String>,
    pub password: Option<Secret>,
    #[serde(serialize_with = "duration")]
    pub probe_interval: Duration,
    #[serde(serialize_with = "duration")]
    pub probe_timeout: Duration,
    pub failure_threshold: u32,
    pub recovery_threshold: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadYourWrites {
    Off,
    Transaction,
    Session,
    Causal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PrimaryReads {
    False,
    True,
    Weight,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadBalance {
    Weighted,
    LeastOutstanding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownFunctions {
    Primary,
    Replica,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Routing {
    pub read_write_split: bool,
    #[serde(serialize_with = "opt_duration")]
    pub max_replica_lag: Option<Duration>,
    pub max_replica_lag_bytes: Option<ByteSize>,
    pub read_your_writes: ReadYourWrites,
    #[serde(serialize_with = "duration")]
    pub causal_wait: Duration,
    pub primary_reads: PrimaryReads,
    pub fallback_to_primary: bool,
    pub load_balance: LoadBalance,
    pub unknown_functions: UnknownFunctions,
    pub read_only_functions: Vec<String>,
    pub write_functions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failover {
    pub automatic: bool,
    #[serde(serialize_with = "duration")]
    pub failover_cooldown: Duration,
    pub max_lag_on_failover: Option<ByteSize>,
    pub synchronous: bool,
    #[serde(serialize_with = "duration")]
    pub promote_timeout: Duration,
    pub fence_command: Option<String>,
    pub rejoin_command: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientTlsMode {
    Disable,
    Allow,
    Require,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServerTlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tls {
    pub client_mode: ClientTlsMode,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub server_mode: ServerTlsMode,
    pub server_ca: Option<PathBuf>,
}

/// Options of the TCP sockets to clients and to servers (PgBouncer's `tcp_keepalive`, `tcp_keepidle`,
/// `tcp_keepintvl`, `tcp_keepcnt` and `tcp_user_timeout`). `None`: the operating system's value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tcp {
    /// Keepalive probes on idle connections, so that a peer that vanished (a host gone, a cable pulled) is
    /// noticed and its connection closed.
    pub keepalive: bool,
    /// Idle time before the first probe (whole seconds).
    #[serde(serialize_with = "opt_duration")]
    pub keepalive_idle: Option<Duration>,
    /// Time between probes (whole seconds).
    #[serde(serialize_with = "opt_duration")]
    pub keepalive_interval: Option<Duration>,
    /// Probes unanswered before the connection is closed.
    pub keepalive_count: Option<u32>,
    /// How long data sent to a client may stay unacknowledged (or its window stay shut) before the connection
    /// is closed: bounds a write to a client that stopped reading. Not set on server sockets: a server running
    /// a long statement reads nothing meanwhile, and a client's pipelined messages may wait on its window.
    #[serde(serialize_with = "opt_duration")]
    pub user_timeout: Option<Duration>,
}

impl Config {
    /// The normalized config as TOML, secrets shown as `***`.
    pub fn to_toml(&self) -> String {
        // Every field serializes to a TOML-representable value, so this cannot fail; show the reason if it ever does.
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

fn duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

fn opt_duration<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => duration(d, s),
        None => s.serialize_none(),
    }
}
