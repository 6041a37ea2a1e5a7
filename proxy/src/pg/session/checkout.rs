//! Server connections in and out of a session: checked out for a unit of work where its route says, set up
//! with the client's session parameters, given back at a transaction boundary (transaction pooling) or when the
//! client leaves, cleaned first.

use std::sync::Arc;

use super::leftovers::Leftovers;
use super::routing::{Place, Why};
use super::server;
use super::unreported::{self, Values};
use super::{expect, params, routing, Session, RESET_TIMEOUT};
use crate::pg::error::PgError;
use crate::pg::msg;
use crate::pg::pool::{Pool, Pooled};
use crate::stats::PoolStats;

/// Connections tried in turn when clearing another client's state from one fails.
const CLEAR_ATTEMPTS: usize = 3;

impl Session {
    /// Checks a server connection out where `place` says (a reader is chosen here, or the primary when none
    /// may serve) and queues the SETs that give it the client's session parameters. A unit that `executes`
    /// nothing (a Describe before the Bind/Execute that follow) keeps the reader of the unit before it.
    pub(super) async fn checkout(&mut self, place: Place, executes: bool) -> Result<(), PgError> {
        if self.held_for_cancel.is_some() {
            // The connection kept for a cancel holds a slot the client may now wait for: back to the pool if the
            // cancel is through, closed if not (then the cancel reaches no one's query).
            self.give_up_held();
        }
        if self.shared.generation() != self.route.route.generation || self.pool.is_retired() {
            Box::pin(self.repoint()).await?;
        }
        let (pool, place) = match place {
            Place::Reader => self.reader(executes)?,
            primary => (self.pool.clone(), primary),
        };
        self.shared.buffers.lend(&mut self.to_server);
        self.shared.buffers.lend(&mut self.to_client);
        self.outstanding.lend(&self.shared.buffers);
        // Most checkouts find an idle connection and need no causal check. The other paths are boxed: a session
        // future holds room for its largest await, and every idle client holds a session future.
        // (Not `try_acquire().filter(..)`: a connection taken and dropped is a connection closed.)
        let causal_check = self.causal.is_some() && place == Place::Reader;
        if let Some(mut pooled) = (!causal_check).then(|| pool.try_acquire()).flatten() {
            if !self.holds_foreign_state(&mut pooled) {
                self.install(pool, place, pooled);
                return Ok(());
            }
            return Box::pin(self.checkout_cleared(pool, place, Some(pooled))).await;
        }
        Box::pin(self.checkout_cleared(pool, place, None)).await
    }

    /// The slow checkout: clears what another client left on `first`, or waits for a connection (cleared too);
    /// a connection whose clearing fails is closed and another one taken.
    async fn checkout_cleared(&mut self, pool: Arc<Pool>, place: Place, first: Option<Pooled>) -> Result<(), PgError> {
        if let Some(pooled) = first {
            if let Some(pooled) = self.cleared(&pool, pooled).await {
                self.install(pool, place, pooled);
                return Ok(());
            }
        }
        let (pool, place, pooled) = self.acquire_slow(pool, place).await?;
        self.install(pool, place, pooled);
        Ok(())
    }

    /// A connection of `pool`, cleared of what another client left on it; one whose clearing fails is closed and
    /// another one taken, a few times at most.
    async fn acquire_cleared(&mut self, pool: &Arc<Pool>) -> Result<Pooled, PgError> {
        for _ in 0..CLEAR_ATTEMPTS {
            if let Some(pooled) = self.cleared(pool, pool.acquire().await?).await {
                return Ok(pooled);
            }
        }
        Err(PgError::ServerProtocol("clearing another client's state failed on every connection tried".into()))
    }

    /// The connection cleared of what another client left on it, or `None` when that failed (it is closed).
    async fn cleared(&mut self, pool: &Pool, mut pooled: Pooled) -> Option<Pooled> {
        if !self.holds_foreign_state(&mut pooled) {
            return Some(pooled);
        }
        match self.clear_foreign_state(&mut pooled).await {
            Ok(()) => Some(pooled),
            Err(e) => {
                tracing::warn!(pool = %pool.name, error = %e, "clearing another client's state failed: connection closed");
                None
            }
        }
    }

    /// Whether the connection holds session state another client left there (`leftovers`).
    fn holds_foreign_state(&self, pooled: &mut Pooled) -> bool {
        pooled.conn().leftovers.is_some_and(|l| l.owner != self.key && !l.kinds.is_empty())
    }

    /// Clears what another client left on the connection, in a query of its own whose answer is awaited: the
    /// client's messages reach the connection only once it succeeded. (Sent ahead of them in the same write, a
    /// reset that failed, or that one of the client's own settings failing after it rolled back, left them
    /// running in the other client's role, settings and temporary tables.)
    async fn clear_foreign_state(&mut self, pooled: &mut Pooled) -> Result<(), PgError> {
        let conn = pooled.conn();
        let Some(left) = conn.leftovers.filter(|l| l.owner != self.key).map(|l| l.kinds) else { return Ok(()) };
        let mut sql = String::new();
        left.reset_sql(&mut sql);
        if !sql.is_empty() {
            let ran = tokio::time::timeout(RESET_TIMEOUT, server::run_reset(conn, &sql)).await;
            ran.map_err(|_| PgError::ServerIo(std::io::ErrorKind::TimedOut.into()))??;
        }
        conn.leftovers = None;
        if left.contains(Leftovers::PREPARED) {
            conn.prepared.clear();
        }
        if left.contains(Leftovers::SETTINGS) {
            conn.unreported = Some(Values::new());
            conn.synced = None;
        }
        Ok(())
    }

    /// Waits for a connection or opens one; with read_your_writes = "causal", moves to the primary when the
    /// reader has not replayed the client's last write in time.
    async fn acquire_slow(
        &mut self,
        mut pool: Arc<Pool>,
        mut place: Place,
    ) -> Result<(Arc<Pool>, Place, Pooled), PgError> {
        loop {
            // Cleared before anything else runs there (the causal check too).
            let mut pooled = self.acquire_cleared(&pool).await?;
            match self.caught_up(&pool, place, &mut pooled).await {
                Some(true) => return Ok((pool, place, pooled)),
                Some(false) => pooled.release(),
                None => drop(pooled), // closed: its state is unknown
            }
            (pool, place) = (self.pool.clone(), Place::Primary(Why::Causal));
        }
    }

    /// Takes the connection for the unit: counts the route, and queues what the server needs to match the
    /// client's session parameters.
    fn install(&mut self, pool: Arc<Pool>, place: Place, mut pooled: Pooled) {
        self.shared.route_stats.record(place);
        self.wrote |= routing::writes(place);
        self.unit_writes = self.causal.is_some() && routing::writes(place);
        self.last_place = place;
        self.serving = pool;
        let conn = pooled.conn();
        // Another client's state was cleared by `checkout` already; what is left to do is this client's own.
        let mut sql = String::new();
        if conn.synced != Some(self.desired_hash) {
            // The server's values: those it reported, its reports of a clearing included (that was awaited).
            sql.extend(params::sync_sql(&self.desired, &conn.params));
            conn.synced = Some(self.desired_hash);
        }
        // Compared without building an empty map for a client that set nothing (one per checkout, measured).
        let want = self.unreported.as_deref().map(|u| &u.current);
        let in_sync = match (&conn.unreported, want) {
            (Some(have), Some(want)) => have == want,
            (Some(have), None) => have.is_empty(),
            (None, _) => false,
        };
        if !in_sync {
            let want = want.cloned().unwrap_or_default();
            unreported::sync_sql(&want, conn.unreported.as_ref(), &mut sql);
            conn.unreported = Some(want);
        }
        if !sql.is_empty() {
            msg::query(&mut self.to_server, &sql);
            self.outstanding.push(expect::Expect::InjectedQuery);
        }
        self.cancel.set(Some((conn.addr, conn.key.0, conn.key.1)));
        self.server = Some(pooled);
    }

    /// The topology changed since this session last looked: take the primary's pool in the new one (waiting for
    /// a primary if there is none right now). The client's counters move with it.
    pub(super) async fn repoint(&mut self) -> Result<(), PgError> {
        let Some(auth) = self.shared.user_auth(&self.settings, self.user()) else {
            return Err(PgError::AuthFailed { user: self.user().to_string() });
        };
        let (pool, route) = self.shared.primary_pool(&self.settings, &auth, self.database()).await?;
        if !Arc::ptr_eq(&pool, &self.pool) {
            PoolStats::sub(&self.pool.stats.clients_active, 1);
            PoolStats::add(&pool.stats.clients_active, 1);
            self.pool = pool;
        }
        self.route = route;
        self.readers = None;
        Ok(())
    }

    /// Whether the server connection held is on a node the topology no longer allows.
    pub(super) fn holds_retired(&self) -> bool {
        self.server.is_some() && self.serving.is_retired()
    }

    /// In transaction pooling, gives the server connection back at a transaction boundary.
    pub(super) fn maybe_release(&mut self) {
        if self.transaction_pooling && self.at_boundary() && self.to_server.is_empty() {
            if let Some(pooled) = self.server.take() {
                PoolStats::add(&self.serving.stats.transactions, 1);
                if self.cancel.release() {
                    // A cancel of this client's is on its way to the connection: kept out of the pool until that
                    // is through (the session is woken then: `Event::Forwarded`), so that it cannot stop another
                    // client's query. Kept aside, not used: the client's next unit is placed as any other.
                    self.held_for_cancel = Some(Box::new(pooled));
                    return;
                }
                pooled.release();
            }
        }
    }

    /// The connection kept for a cancel goes back to its pool once the cancel is through (`Event::Forwarded`);
    /// given up before, it is closed.
    pub(super) fn give_up_held(&mut self) {
        if let Some(held) = self.held_for_cancel.take() {
            if !self.cancel.forwarding() {
                held.release();
            }
        }
    }

    /// The client's startup settings (`unreported`), tried on a server connection of its pool before it is let
    /// in: one a server refuses (an invalid value, a parameter that cannot change once a session has started)
    /// refuses the login with the server's error, as PostgreSQL refuses it, rather than failing every statement
    /// after. The connection keeps them for the client's first checkout.
    pub(super) async fn try_startup_settings(&mut self) -> Result<(), PgError> {
        let Some(want) = self.unreported.as_deref().map(|u| u.baseline.clone()) else { return Ok(()) };
        let pool = self.pool.clone();
        let mut pooled = self.acquire_cleared(&pool).await?;
        let conn = pooled.conn();
        let mut sql = String::new();
        unreported::sync_sql(&want, conn.unreported.as_ref(), &mut sql);
        if !sql.is_empty() {
            let tried = tokio::time::timeout(RESET_TIMEOUT, server::run_settings(conn, &sql)).await;
            match tried.map_err(|_| PgError::ServerIo(std::io::ErrorKind::TimedOut.into()))?? {
                None => conn.unreported = Some(want),
                Some((code, message)) => {
                    pooled.release();
                    return Err(PgError::StartupSetting { code, message });
                }
            }
        }
        pooled.release();
        Ok(())
    }

    /// After the client left: a server with nothing in flight is cleaned (a transaction left open rolled back;
    /// in session pooling, DISCARD ALL) and reused; one still busy, or one a reset failed on, is closed.
    pub(super) async fn return_server(&mut self) {
        // One kept for a cancel still on its way is closed.
        self.give_up_held();
        let Some(mut pooled) = self.server.take() else { return };
        // A cancel of this client's from now on must not reach the connection the next client may get; one still
        // on its way to it could: then it is closed.
        if self.cancel.release() || !self.outstanding.is_empty() || self.copy_in || self.unsynced {
            return; // dropped: closed; the server aborts what it was doing.
        }
        // DISCARD ALL cannot run inside a transaction block: the transaction ends first, in a query of its own.
        let resets: &[&str] = match (self.transaction_pooling, self.tx_status) {
            (true, b'I') => &[],
            (true, _) => &["ROLLBACK"],
            (false, b'I') => &["DISCARD ALL"],
            (false, _) => &["ROLLBACK", "DISCARD ALL"],
        };
        for sql in resets {
            let conn = pooled.conn();
            if tokio::time::timeout(RESET_TIMEOUT, server::run_reset(conn, sql)).await.map_or(true, |r| r.is_err()) {
                return;
            }
            if *sql == "DISCARD ALL" {
                conn.prepared.clear();
            }
        }
        PoolStats::add(&self.serving.stats.transactions, 1);
        pooled.release();
    }
}
