//! `read_your_writes = "causal"`: after a client's write commits, the primary's WAL position is read on the
//! same connection; a later read goes to a reader only once that reader has replayed up to it (checked on the
//! reader's connection, polled up to `causal_wait`), else to the primary.

use std::time::Duration;

use hapool_topology::NodeId;
use tokio::time::Instant;

use super::routing::Place;
use super::server::query_value;
use super::Session;
use crate::pg::error::PgError;
use crate::pg::pool::{Pool, Pooled};
use crate::pg::server::ServerConn;

/// Read on the primary when a write unit ends. The insert position: never behind the commit just made, even
/// with `synchronous_commit = off` (the write position could be).
const PRIMARY_POSITION: &str = "SELECT pg_catalog.pg_current_wal_insert_lsn()";

/// Pause between two checks of a reader that has not caught up yet.
const POLL: Duration = Duration::from_millis(2);

/// One bounded exchange with a server (the primary's position, one check of a reader).
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a client must see on a reader.
#[derive(Debug, Default)]
pub struct Causal {
    /// The primary's WAL position after the client's last write.
    lsn: Option<u64>,
    /// Readers seen to have replayed up to `lsn`.
    caught_up: Vec<NodeId>,
}

impl Causal {
    /// Whether a read on `node` needs a check first.
    pub fn must_check(&self, node: &NodeId) -> Option<u64> {
        self.lsn.filter(|_| !self.caught_up.contains(node))
    }

    /// Reads the primary's position after a write on `conn` (idle, at a transaction boundary).
    pub async fn after_write(&mut self, conn: &mut ServerConn) -> Result<(), PgError> {
        let text = bounded(query_value(conn, PRIMARY_POSITION)).await?;
        let Some(lsn) = text.as_deref().and_then(parse_lsn) else {
            return Err(PgError::ServerProtocol(format!("pg_current_wal_insert_lsn() gave {text:?}")));
        };
        if self.lsn.is_none_or(|old| lsn > old) {
            self.lsn = Some(lsn);
            self.caught_up.clear();
        }
        Ok(())
    }

    /// Waits until the reader behind `conn` has replayed up to `lsn`, polling for at most `wait`; returns
    /// whether it did.
    pub async fn wait_for(
        &mut self,
        node: &NodeId,
        lsn: u64,
        conn: &mut ServerConn,
        wait: Duration,
    ) -> Result<bool, PgError> {
        let sql = format!(
            "SELECT pg_catalog.pg_last_wal_replay_lsn() OPERATOR(pg_catalog.>=) '{}'::pg_catalog.pg_lsn",
            format_lsn(lsn)
        );
        let deadline = Instant::now() + wait;
        loop {
            if bounded(query_value(conn, &sql)).await?.as_deref() == Some("t") {
                self.caught_up.push(node.clone());
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            tokio::time::sleep(left.min(POLL)).await;
        }
    }
}

impl Session {
    /// With causal reads, whether the reader behind `pooled` has replayed the client's last write (polled up
    /// to `causal_wait`). `Some(false)`: not in time, the connection is clean; `None`: the check failed, the
    /// connection must be closed. Anything but a read on a reader needs no check.
    pub(super) async fn caught_up(&mut self, pool: &Pool, place: Place, pooled: &mut Pooled) -> Option<bool> {
        let wait = self.settings.cluster.routing.causal_wait;
        let check = match self.causal.as_deref_mut() {
            Some(causal) if place == Place::Reader && pool.node != self.pool.node => {
                causal.must_check(&pool.node).map(|lsn| (causal, lsn))
            }
            _ => None,
        };
        let Some((causal, lsn)) = check else { return Some(true) };
        // (The caller boxes this future: it runs for few units, and its state should not make every session
        // future larger.)
        match causal.wait_for(&pool.node, lsn, pooled.conn(), wait).await {
            Ok(done) => Some(done),
            Err(e) => {
                tracing::debug!(node = %pool.node, error = %e, "causal check failed: reading on the primary");
                None
            }
        }
    }

    /// After a unit that wrote on the primary ends (transaction pooling, at a boundary, before the connection
    /// goes back): the primary's position, which later reads must see.
    pub(super) async fn note_write_position(&mut self) -> Result<(), PgError> {
        if !self.unit_writes || !self.at_boundary() || !self.to_server.is_empty() {
            return Ok(());
        }
        let (Some(causal), Some(server)) = (self.causal.as_deref_mut(), self.server.as_mut()) else { return Ok(()) };
        self.unit_writes = false;
        Box::pin(causal.after_write(server.conn())).await
    }
}

async fn bounded<T>(f: impl std::future::Future<Output = Result<T, PgError>>) -> Result<T, PgError> {
    tokio::time::timeout(EXCHANGE_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| Err(PgError::ServerIo(std::io::ErrorKind::TimedOut.into())))
}

/// `16/B374D848` → its 64-bit position.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    Some((u64::from(u32::from_str_radix(hi, 16).ok()?) << 32) | u64::from(u32::from_str_radix(lo, 16).ok()?))
}

pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_round_trip_and_reject_garbage() {
        for text in ["0/0", "16/B374D848", "FFFFFFFF/FFFFFFFF"] {
            assert_eq!(format_lsn(parse_lsn(text).unwrap()), text);
        }
        assert_eq!(parse_lsn("1/0"), Some(1 << 32));
        for bad in ["", "16", "x/1", "1/2/3", "'; DROP TABLE t; --", "100000000/0"] {
            assert_eq!(parse_lsn(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_newer_write_makes_every_reader_check_again() {
        let mut c = Causal::default();
        let a = NodeId("a".into());
        assert_eq!(c.must_check(&a), None, "nothing written yet");
        c.lsn = Some(10);
        assert_eq!(c.must_check(&a), Some(10));
        c.caught_up.push(a.clone());
        assert_eq!(c.must_check(&a), None);
    }
}
