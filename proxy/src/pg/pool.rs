//! A pool of server connections for one (node, user, database): a fixed number of slots, idle connections
//! reused most-recent-first, a bounded wait when every slot is busy.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::PgError;
use super::server::{ServerConn, ServerTarget};
use crate::stats::PoolStats;

/// Limits of one pool.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub size: usize,
    pub query_wait_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_lifetime: Duration,
    pub max_prepared: usize,
}

/// Parameter names and values a server reported at login.
pub type ServerParams = Arc<Vec<(String, String)>>;

#[derive(Debug)]
pub struct Pool {
    /// `user@database`, for messages and stats.
    pub name: String,
    pub target: ServerTarget,
    pub settings: PoolSettings,
    pub stats: PoolStats,
    slots: Arc<Semaphore>,
    idle: Mutex<Vec<(ServerConn, Instant)>>,
    /// What the first server reported at login (sent to clients in their greeting).
    server_params: Mutex<Option<ServerParams>>,
}

/// A server connection checked out of its pool. Dropping it closes the connection; `release` returns it.
#[derive(Debug)]
pub struct Pooled {
    conn: Option<ServerConn>,
    pool: Arc<Pool>,
    _slot: OwnedSemaphorePermit,
}

impl Pool {
    pub fn new(name: String, target: ServerTarget, settings: PoolSettings) -> Pool {
        Pool {
            name,
            target,
            slots: Arc::new(Semaphore::new(settings.size)),
            settings,
            stats: PoolStats::default(),
            idle: Mutex::new(Vec::new()),
            server_params: Mutex::new(None),
        }
    }

    /// Waits (at most `query_wait_timeout`) for a free slot, then reuses an idle connection or opens one.
    pub async fn acquire(self: &Arc<Self>) -> Result<Pooled, PgError> {
        let started = Instant::now();
        PoolStats::add(&self.stats.clients_waiting, 1);
        let permit = tokio::time::timeout(self.settings.query_wait_timeout, self.slots.clone().acquire_owned()).await;
        PoolStats::sub(&self.stats.clients_waiting, 1);
        PoolStats::add(&self.stats.wait_time_us, started.elapsed().as_micros() as u64);
        let permit = match permit {
            Ok(Ok(p)) => p,
            _ => {
                return Err(PgError::PoolTimeout {
                    pool: self.name.clone(),
                    seconds: self.settings.query_wait_timeout.as_secs(),
                })
            }
        };
        let conn = match self.take_idle() {
            Some(conn) => conn,
            None => {
                // Boxed: opening a connection is rare, and its state would enlarge every session's future.
                let conn = Box::pin(ServerConn::connect(&self.target, self.settings.max_prepared)).await?;
                PoolStats::add(&self.stats.servers_opened, 1);
                self.remember_params(&conn);
                conn
            }
        };
        PoolStats::add(&self.stats.servers_active, 1);
        Ok(Pooled { conn: Some(conn), pool: self.clone(), _slot: permit })
    }

    fn take_idle(&self) -> Option<ServerConn> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((conn, since)) = idle.pop() {
            PoolStats::sub(&self.stats.servers_idle, 1);
            let fresh =
                since.elapsed() < self.settings.idle_timeout && conn.created.elapsed() < self.settings.max_lifetime;
            if fresh {
                return Some(conn);
            }
        }
        None
    }

    fn remember_params(&self, conn: &ServerConn) {
        let mut params = self.server_params.lock().unwrap_or_else(|e| e.into_inner());
        if params.is_none() {
            let mut list: Vec<(String, String)> = conn.params.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            list.sort();
            *params = Some(Arc::new(list));
        }
    }

    /// The parameters servers of this pool report at login, once one has been opened.
    pub fn server_params(&self) -> Option<ServerParams> {
        self.server_params.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Idle connections right now.
    pub fn idle_count(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Pooled {
    pub fn conn(&mut self) -> &mut ServerConn {
        self.conn.as_mut().expect("a checked-out connection is present until release or drop")
    }

    pub fn conn_ref(&self) -> &ServerConn {
        self.conn.as_ref().expect("a checked-out connection is present until release or drop")
    }

    /// Returns a clean connection (idle at ReadyForQuery, nothing outstanding) to the pool.
    pub fn release(mut self) {
        let Some(conn) = self.conn.take() else { return };
        let pool = &self.pool;
        PoolStats::sub(&pool.stats.servers_active, 1);
        if conn.broken || conn.created.elapsed() >= pool.settings.max_lifetime {
            return;
        }
        PoolStats::add(&pool.stats.servers_idle, 1);
        pool.idle.lock().unwrap_or_else(|e| e.into_inner()).push((conn, Instant::now()));
        // The slot is freed when `self` drops, after the connection is back: the next waiter finds it idle.
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }
}

impl Drop for Pooled {
    /// Not released: the connection's state is unknown, so it is closed.
    fn drop(&mut self) {
        if self.conn.take().is_some() {
            PoolStats::sub(&self.pool.stats.servers_active, 1);
        }
    }
}
