//! What one probe of one node saw: plain data, the same shape for both engines.

use std::net::SocketAddr;

use crate::position::Position;

/// The role a server reports for itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    /// Accepts writes: PostgreSQL not in recovery; MySQL/MariaDB with no replication configured and not read-only.
    Primary,
    /// Follows another server.
    Replica,
    /// Neither: read-only without replication (e.g. a fenced old primary).
    Neither,
}

/// One successful probe.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub claimed: Claimed,
    /// Primary: its write position. Replica: what it has applied (replayed).
    pub position: Option<Position>,
    /// Replica: what it has received (may be ahead of `position`).
    pub received: Option<Position>,
    /// Replica: seconds since the last transaction it applied was committed on the primary, as the server
    /// itself computes it (PostgreSQL: `clock_timestamp() - pg_last_xact_replay_timestamp()`; MySQL:
    /// `Seconds_Behind_Master`). Only meaningful while the replica is behind.
    pub reported_delay: Option<f64>,
    /// Replica: the state of its replication stream.
    pub replication: Option<Replication>,
    /// PostgreSQL timeline id.
    pub timeline: Option<u32>,
    /// Primary: the replicas connected to it (PostgreSQL `pg_stat_replication`).
    pub downstream: Vec<Downstream>,
    /// MySQL/MariaDB `@@server_id`.
    pub server_id: Option<u32>,
}

/// A replica's replication threads (MySQL: IO and SQL threads; PostgreSQL: the WAL receiver and replay).
#[derive(Debug, Clone, PartialEq)]
pub struct Replication {
    /// Receiving from its upstream (WAL receiver streaming; IO thread running).
    pub receiving: bool,
    /// Applying what it receives (MySQL SQL thread running; PostgreSQL replay not paused).
    pub applying: bool,
    /// An error that stopped it (MySQL Last_IO_Error / Last_SQL_Error).
    pub error: Option<String>,
    /// Where it replicates from, resolved.
    pub upstream: Option<SocketAddr>,
}

impl Replication {
    /// Broken replication makes a replica unfit for reads even if it answers queries: nothing arrives, or
    /// applying stopped on an error. Applying stopped deliberately (paused replay, `STOP SLAVE SQL_THREAD`)
    /// is not broken: the replica only falls behind, which the lag limits deal with.
    pub fn broken(&self) -> Option<String> {
        if let Some(e) = &self.error {
            return Some(format!("replication error: {e}"));
        }
        (!self.receiving).then(|| "not receiving from its primary".to_string())
    }
}

/// A replica as its primary sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Downstream {
    pub name: String,
    pub client: Option<String>,
    pub state: String,
    pub sync_state: String,
    /// What it has made durable (what synchronous replication waits for).
    pub flush: Option<Position>,
    pub replay: Option<Position>,
}
