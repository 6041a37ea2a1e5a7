//! Per-pool counters, kept with relaxed atomics so the hot path pays one add per event.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters for one pool (one node, user and database). Read them with `Pool::snapshot`, which adds the server
/// counts (kept by the pool itself rather than counted on every checkout).
#[derive(Debug, Default)]
pub struct PoolStats {
    pub clients_active: AtomicU64,
    pub clients_waiting: AtomicU64,
    pub servers_opened: AtomicU64,
    pub wait_time_us: AtomicU64,
    pub queries: AtomicU64,
    pub transactions: AtomicU64,
    pub bytes_from_clients: AtomicU64,
    pub bytes_from_servers: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolSnapshot {
    pub clients_active: u64,
    pub clients_waiting: u64,
    pub servers_active: u64,
    pub servers_idle: u64,
    pub servers_opened: u64,
    pub wait_time_us: u64,
    pub queries: u64,
    pub transactions: u64,
    pub bytes_from_clients: u64,
    pub bytes_from_servers: u64,
}

impl PoolStats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn sub(counter: &AtomicU64, n: u64) {
        counter.fetch_sub(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> PoolSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PoolSnapshot {
            clients_active: get(&self.clients_active),
            clients_waiting: get(&self.clients_waiting),
            servers_active: 0,
            servers_idle: 0,
            servers_opened: get(&self.servers_opened),
            wait_time_us: get(&self.wait_time_us),
            queries: get(&self.queries),
            transactions: get(&self.transactions),
            bytes_from_clients: get(&self.bytes_from_clients),
            bytes_from_servers: get(&self.bytes_from_servers),
        }
    }
}

/// Where units of work went, and why those on the primary went there (by `Why::ALL` order).
#[derive(Debug, Default)]
pub struct RouteStats {
    pub to_readers: AtomicU64,
    pub to_primary: [AtomicU64; crate::pg::session::routing::Why::ALL.len()],
}

impl RouteStats {
    pub fn record(&self, place: crate::pg::session::routing::Place) {
        use crate::pg::session::routing::Place;
        match place {
            Place::Reader => PoolStats::add(&self.to_readers, 1),
            Place::Primary(why) => PoolStats::add(&self.to_primary[why as usize], 1),
        }
    }

    /// `("reader", n)` then one `(reason, n)` per reason a unit went to the primary.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        use crate::pg::session::routing::Why;
        let mut out = vec![("reader", self.to_readers.load(Ordering::Relaxed))];
        for (why, n) in Why::ALL.iter().zip(&self.to_primary) {
            out.push((why.name(), n.load(Ordering::Relaxed)));
        }
        out
    }
}
