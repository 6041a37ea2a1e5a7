//! hapool's proxy: listeners, the PostgreSQL wire protocol, authentication, pooling.
//!
//! It reads the topology (today: the cluster's first configured node is the primary) and never depends on the
//! manager. MySQL and TLS arrive in later steps.

pub mod pg;
pub mod stats;

pub use pg::listener::{PgListener, PgProxyConfig};
