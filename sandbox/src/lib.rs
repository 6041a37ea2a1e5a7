//! Throwaway database clusters on loopback: PostgreSQL streaming replication and MariaDB GTID replication.
//!
//! Used by `hapool demo`, `hapool sandbox`, the integration tests and the benchmarks. Every server runs on
//! free loopback ports under a temporary folder (as the `postgres` / `mysql` OS user when we are root), behind
//! a fault-injecting TCP relay, and everything is stopped and removed when the cluster value is dropped,
//! including during a panic.

mod binaries;
mod error;
mod fsutil;
mod mysql;
mod net;
mod node;
mod os_user;
mod pg;
mod process;
mod relay;

pub use binaries::{MariaDbBinaries, PgBinaries};
pub use error::SandboxError;
pub use mysql::{MyCluster, MyClusterOptions, MyNode};
pub use node::ServerNode;
pub use pg::{PgCluster, PgClusterOptions, PgNode};
pub use process::{is_alive, process_tree};
pub use relay::{Fault, Relay};

/// User names and passwords the sandbox creates on every cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The application's user; it owns the database of the same name.
    pub app_user: String,
    pub app_password: String,
    /// The manager's probe user (PostgreSQL `pg_monitor`; MariaDB replication and binlog monitor rights).
    pub monitor_user: String,
    pub monitor_password: String,
    /// The user replicas log in as.
    pub replication_user: String,
    pub replication_password: String,
}

impl Default for Credentials {
    fn default() -> Self {
        Credentials {
            app_user: "app".into(),
            app_password: "app".into(),
            monitor_user: "hapool_monitor".into(),
            monitor_password: "monitor".into(),
            replication_user: "replicator".into(),
            replication_password: "replicator".into(),
        }
    }
}
