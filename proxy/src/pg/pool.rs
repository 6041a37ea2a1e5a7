//! A pool of server connections for one (node, user, database): a fixed number of slots, idle connections
//! reused most-recent-first, a bounded wait when every slot is busy.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hapool_topology::NodeId;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_util::sync::CancellationToken;

use super::clock::coarse_now;
use super::error::PgError;
use super::server::{ServerConn, ServerTarget};
use crate::stats::PoolStats;

/// Limits of one pool.
/// Idle connections older than this are checked before reuse.
const CHECK_IDLE_AFTER: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub size: usize,
    pub query_wait_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_lifetime: Duration,
    pub max_prepared: usize,
    /// Idle connections kept open ahead of demand.
    pub min_idle: usize,
}

/// Parameter names and values a server reported at login.
pub type ServerParams = Arc<Vec<(String, String)>>;

#[derive(Debug)]
pub struct Pool {
    /// `user@database/node`, for messages and stats.
    pub name: String,
    pub node: NodeId,
    pub target: ServerTarget,
    /// Set when the topology no longer allows this node: idle connections close, checked-out ones close when
    /// returned, and sessions using one stop (the listener wakes them after retiring pools).
    is_retired: AtomicBool,
    /// Connections checked out of every pool of this node (for least-outstanding balancing).
    pub load: Arc<AtomicUsize>,
    pub settings: PoolSettings,
    pub stats: PoolStats,
    /// One permit per connection not checked out: a `Pooled` holds one (forgotten when it was taken, added back
    /// when it drops).
    slots: Semaphore,
    /// Boxed, as in `Pooled`: moving a connection in and out of the pool moves a pointer. With the time it came
    /// back (`coarse_now`).
    idle: Mutex<Vec<(Box<ServerConn>, Duration)>>,
    /// What the first server reported at login (sent to clients in their greeting).
    server_params: Mutex<Option<ServerParams>>,
    /// The session parameters clients asked for last, shared by the clients that want the same (most do).
    client_params: Mutex<Option<(u64, ServerParams)>>,
}

/// A server connection checked out of its pool, holding one of its slots. Dropping it closes the connection;
/// `release` returns it.
/// The connection is boxed: a session holds a `Pooled` inline, and every idle client's session would otherwise
/// carry the connection's ≈ 290 bytes of room.
#[derive(Debug)]
pub struct Pooled {
    conn: Option<Box<ServerConn>>,
    pool: Arc<Pool>,
}

impl Pool {
    pub fn new(
        name: String,
        node: NodeId,
        target: ServerTarget,
        settings: PoolSettings,
        load: Arc<AtomicUsize>,
    ) -> Pool {
        Pool {
            name,
            node,
            load,
            target,
            is_retired: AtomicBool::new(false),
            slots: Semaphore::new(settings.size),
            settings,
            stats: PoolStats::default(),
            idle: Mutex::new(Vec::new()),
            server_params: Mutex::new(None),
            client_params: Mutex::new(None),
        }
    }

    /// Waits (at most `query_wait_timeout`) for a free slot, then reuses an idle connection or opens one.
    pub async fn acquire(self: &Arc<Self>) -> Result<Pooled, PgError> {
        // Fast path: a free slot, no waiting to account for.
        let permit = match self.slots.try_acquire() {
            Ok(p) => p,
            // Boxed: waiting is the slow path, and its state would enlarge every session's future.
            Err(_) => Box::pin(self.wait_for_slot()).await?,
        };
        let conn = match self.take_idle() {
            Some(conn) => conn,
            None => {
                // Boxed: opening a connection is rare, and its state would enlarge every session's future.
                let conn = Box::new(Box::pin(ServerConn::connect(&self.target, self.settings.max_prepared)).await?);
                PoolStats::add(&self.stats.servers_opened, 1);
                self.remember_params(&conn);
                conn
            }
        };
        Ok(self.checked_out(permit, conn))
    }

    /// A free slot and an idle connection right now, or `None` (then `acquire` waits or connects).
    pub fn try_acquire(self: &Arc<Self>) -> Option<Pooled> {
        let permit = self.slots.try_acquire().ok()?;
        let conn = self.take_idle()?;
        Some(self.checked_out(permit, conn))
    }

    /// `conn` checked out in the slot `permit`, which the `Pooled` now holds (the permit is added back when it
    /// drops: not an owned permit, whose reference count two atomic operations per checkout would keep).
    fn checked_out(self: &Arc<Self>, permit: SemaphorePermit<'_>, conn: Box<ServerConn>) -> Pooled {
        permit.forget();
        self.load.fetch_add(1, Ordering::Relaxed);
        Pooled { conn: Some(conn), pool: self.clone() }
    }

    async fn wait_for_slot(&self) -> Result<SemaphorePermit<'_>, PgError> {
        // Timed on the coarse clock (most checkouts wait when clients outnumber connections): one wait's time is
        // off by up to one of its ticks, but their sum, which is what is kept, is not biased either way (a wait
        // begins at no particular point of a tick).
        let started = coarse_now();
        PoolStats::add(&self.stats.clients_waiting, 1);
        let permit = tokio::time::timeout(self.settings.query_wait_timeout, self.slots.acquire()).await;
        PoolStats::sub(&self.stats.clients_waiting, 1);
        PoolStats::add(&self.stats.wait_time_us, coarse_now().saturating_sub(started).as_micros() as u64);
        match permit {
            Ok(Ok(p)) => Ok(p),
            _ => Err(PgError::PoolTimeout {
                pool: self.name.clone(),
                seconds: self.settings.query_wait_timeout.as_secs(),
            }),
        }
    }

    /// The counters, with the server counts read from the pool itself.
    pub fn snapshot(&self) -> crate::stats::PoolSnapshot {
        let mut snap = self.stats.snapshot();
        snap.servers_idle = self.idle_count() as u64;
        snap.servers_active = (self.settings.size - self.slots.available_permits()) as u64;
        snap
    }

    fn take_idle(&self) -> Option<Box<ServerConn>> {
        // One clock read per checkout, of the coarse clock (see `clock`).
        let now = coarse_now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((mut conn, since)) = idle.pop() {
            let idle_for = now.saturating_sub(since);
            let fresh =
                idle_for < self.settings.idle_timeout && now.saturating_sub(conn.created) < self.settings.max_lifetime;
            // A connection the server ended while it sat idle (restart, pg_terminate_backend) is dropped here,
            // not handed to a client whose first statement would fail with it. Checked after a short idle time
            // only (one syscall), so a busy pool pays nothing; as PgBouncer's server_check_delay.
            if fresh && (idle_for < CHECK_IDLE_AFTER || conn.is_usable()) {
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

    /// One shared copy of a client's desired parameters: the previous client's when they are the same.
    pub fn shared_params(&self, params: Vec<(String, String)>, fingerprint: u64) -> ServerParams {
        let mut last = self.client_params.lock().unwrap_or_else(|e| e.into_inner());
        match last.as_ref() {
            Some((f, shared)) if *f == fingerprint && **shared == params => shared.clone(),
            _ => {
                let shared = Arc::new(params);
                *last = Some((fingerprint, shared.clone()));
                shared
            }
        }
    }

    /// The parameters servers of this pool report at login, once one has been opened.
    pub fn server_params(&self) -> Option<ServerParams> {
        self.server_params.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Looks after the pool while it lives (holds only a weak reference) and until shutdown, once a second:
    /// closes idle connections past `idle_timeout` or `max_lifetime` (checkouts take the most recent first, so
    /// those at the bottom of the stack would otherwise stay open for good), and keeps `min_idle` connections
    /// open, within `size`. A failed connect is retried at the next check.
    pub async fn maintain(pool: std::sync::Weak<Pool>, shutdown: CancellationToken) {
        loop {
            let Some(pool) = pool.upgrade().filter(|p| !p.is_retired()) else { return };
            pool.close_expired();
            Box::pin(pool.open_min_idle()).await;
            drop(pool);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// Closes the idle connections past `max_lifetime`, and those past `idle_timeout` beyond the `min_idle` most
    /// recently used.
    fn close_expired(&self) {
        let now = coarse_now();
        let expired: Vec<_> = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let spared_from = idle.len().saturating_sub(self.settings.min_idle);
            let mut at = 0;
            idle.extract_if(.., |(conn, since)| {
                let spared = at >= spared_from;
                at += 1;
                let too_old = now.saturating_sub(conn.created) >= self.settings.max_lifetime;
                too_old || (!spared && now.saturating_sub(*since) >= self.settings.idle_timeout)
            })
            .collect()
        };
        // Closed outside the lock.
        drop(expired);
    }

    /// Opens connections until `min_idle` are idle, as long as the open ones stay within `size`: the permits
    /// count the connections not checked out, so there is room while fewer are idle than permits are free.
    async fn open_min_idle(self: &Arc<Self>) {
        // A user whose password is the server's SCRAM secret waits for a client to prove its key.
        while self.target.credentials.ready(&self.target.user) {
            let idle = self.idle_count();
            if idle >= self.settings.min_idle || idle >= self.slots.available_permits() {
                return;
            }
            let Ok(slot) = self.slots.try_acquire() else { return };
            match Box::pin(ServerConn::connect(&self.target, self.settings.max_prepared)).await {
                Ok(conn) => {
                    PoolStats::add(&self.stats.servers_opened, 1);
                    self.remember_params(&conn);
                    self.checked_out(slot, Box::new(conn)).release();
                }
                Err(e) => {
                    tracing::warn!(pool = %self.name, error = %e, "cannot open a min_idle connection");
                    return;
                }
            }
        }
    }

    /// Stops using this pool's node: closes the idle connections now and the busy ones as they come back.
    pub fn retire(&self) {
        self.is_retired.store(true, Ordering::Release);
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    pub fn is_retired(&self) -> bool {
        self.is_retired.load(Ordering::Acquire)
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
        let now = coarse_now();
        if conn.broken || now.saturating_sub(conn.created) >= pool.settings.max_lifetime || pool.is_retired() {
            return;
        }
        pool.idle.lock().unwrap_or_else(|e| e.into_inner()).push((conn, now));
        // The slot is freed when `self` drops, after the connection is back: the next waiter finds it idle.
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }
}

impl Drop for Pooled {
    /// Not released: the connection's state is unknown, so it is closed.
    fn drop(&mut self) {
        self.conn.take();
        self.pool.load.fetch_sub(1, Ordering::Relaxed);
        self.pool.slots.add_permits(1);
    }
}
