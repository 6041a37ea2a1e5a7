//! Why a PostgreSQL session or server connection failed: whose side it was, and what the client is told.

use std::net::SocketAddr;

use super::codec::FrameError;

/// Whose fault an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
    Proxy,
}

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("client connection: {0}")]
    ClientIo(#[source] std::io::Error),
    #[error("protocol violation: {0}")]
    ClientProtocol(#[from] FrameError),
    #[error("{0}")]
    ClientMessage(String),
    #[error("password authentication failed for user \"{user}\"")]
    AuthFailed { user: String },
    /// A setting of the client's startup packet the server refused (its SQLSTATE and message).
    #[error("startup parameter refused: {message}")]
    StartupSetting { code: String, message: String },
    #[error("no such user \"{user}\" or database \"{database}\" in this cluster")]
    UnknownPool { user: String, database: String },
    #[error("too many client connections ({limit} allowed{scope})")]
    TooManyClients { limit: u32, scope: &'static str },
    #[error("timed out after {seconds}s waiting for a server connection in pool {pool}")]
    PoolTimeout { pool: String, seconds: u64 },
    #[error("startup and authentication did not finish within {seconds}s")]
    StartupTimeout { seconds: u64 },
    #[error("could not connect to server {addr}: {source}")]
    ServerConnect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("server {addr} refused the login: {message}")]
    ServerLogin { addr: SocketAddr, message: String },
    /// The cluster's `auth_query` could not look the client's user up (why is logged, not told the client).
    #[error("could not look the user up (auth_query); the proxy's log says why")]
    AuthQuery,
    #[error("server connection lost: {0}")]
    ServerIo(#[source] std::io::Error),
    #[error("server sent an unexpected message: {0}")]
    ServerProtocol(String),
    #[error("hapool is shutting down")]
    Shutdown,
    #[error("this listener requires TLS (connect with sslmode=require or stronger)")]
    TlsRequired,
    #[error("no hba rule allows user \"{user}\" from {ip}")]
    HbaRejected { user: String, ip: std::net::IpAddr },
    #[error("cluster {cluster} has no usable primary ({why}) after waiting {seconds}s")]
    NoPrimary { cluster: String, why: String, seconds: u64 },
    #[error("node {node} is no longer usable (the topology changed); reconnect to reach the current primary")]
    NodeGone { node: String },
    #[error("terminating connection due to idle-session timeout ({seconds}s, client_idle_timeout)")]
    IdleTimeout { seconds: u64 },
    #[error("terminating connection due to idle-in-transaction timeout ({seconds}s, idle_transaction_timeout)")]
    IdleInTransactionTimeout { seconds: u64 },
    #[error("cluster {cluster}: no replica can serve reads now ({lagging} over the lag limit) and fallback_to_primary is off")]
    NoReplica { cluster: String, lagging: usize },
}

impl PgError {
    pub fn side(&self) -> Side {
        use PgError::*;
        match self {
            ClientIo(_) | ClientProtocol(_) | ClientMessage(_) | AuthFailed { .. } | UnknownPool { .. } => Side::Client,
            StartupSetting { .. } => Side::Client,
            StartupTimeout { .. } | TlsRequired | HbaRejected { .. } | IdleTimeout { .. } => Side::Client,
            IdleInTransactionTimeout { .. } => Side::Client,
            ServerConnect { .. } | ServerLogin { .. } | ServerIo(_) | ServerProtocol(_) => Side::Server,
            AuthQuery => Side::Server,
            TooManyClients { .. }
            | PoolTimeout { .. }
            | Shutdown
            | NoPrimary { .. }
            | NodeGone { .. }
            | NoReplica { .. } => Side::Proxy,
        }
    }

    /// The SQLSTATE the client receives.
    pub fn sqlstate(&self) -> &str {
        use PgError::*;
        match self {
            StartupSetting { code, .. } => code,
            ClientIo(_) | ServerIo(_) | ServerConnect { .. } | NoPrimary { .. } | NodeGone { .. } => "08006",
            NoReplica { .. } => "57P03",
            ClientProtocol(_) | ClientMessage(_) | ServerProtocol(_) => "08P01",
            AuthFailed { .. } => "28P01",
            UnknownPool { .. } => "3D000",
            TooManyClients { .. } | PoolTimeout { .. } => "53300",
            StartupTimeout { .. } => "08006",
            ServerLogin { .. } | AuthQuery => "08004",
            Shutdown => "57P01",
            IdleTimeout { .. } => "57P05",
            IdleInTransactionTimeout { .. } => "25P03",
            TlsRequired | HbaRejected { .. } => "28000",
        }
    }

    /// Whether the client can still be told (not when its own connection broke).
    pub fn reaches_client(&self) -> bool {
        !matches!(self, PgError::ClientIo(_))
    }
}
