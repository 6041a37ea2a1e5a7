//! hapool's proxy: listeners, the PostgreSQL wire protocol, authentication, pooling.
//!
//! It follows the topology the manager publishes (a `watch` of `Arc<Topology>` snapshots) and never depends on
//! the manager itself.

pub mod balance;
pub mod pg;
pub mod route;
pub mod stats;
#[cfg(test)]
mod testutil;

pub use pg::listener::{PgListener, PgProxyConfig};
