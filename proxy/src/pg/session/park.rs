//! An idle session leaves its task: the client goes to the listener's parking (`pg::parking`) and comes back in
//! a new task when it sends something, when it has been idle too long, or at shutdown.

use tokio::net::TcpStream;

use super::idle::{self, Idle};
use super::{Served, Session};
use crate::pg::error::PgError;
use crate::pg::parking::Wake;
use crate::pg::tls::Stream;

pub(super) enum Parked {
    Yes,
    /// Parking refused it: it goes on serving in its task.
    No(Box<Session>),
    /// The socket was lost on the way.
    Lost(Box<Session>, std::io::Error),
}

impl Session {
    /// Whether the client could be handed over now: nothing of it would be lost (plain TCP, no server held,
    /// nothing buffered, owed or held back) and the listener is not shutting down.
    fn can_park(&self) -> bool {
        self.parks_at_all()
            && self.server.is_none()
            && self.held_for_cancel.is_none()
            && self.at_boundary()
            && self.cbuf.is_empty()
            && self.pending.is_none()
            && !self.skip_to_sync
            && !self.shared.stopping()
    }

    /// Whether this kind of session ever parks: transaction pooling, plain TCP, and parking never refused it.
    fn parks_at_all(&self) -> bool {
        self.may_park && self.transaction_pooling && matches!(self.client, Stream::Plain(_))
    }

    /// Whether this session looks at its idleness at all (woken at each tick of the clock): one that may park,
    /// or one with an idle timeout.
    pub(super) fn needs_clock(&self) -> bool {
        let cluster = &self.settings.cluster;
        self.parks_at_all() || cluster.client_idle_timeout.is_some() || cluster.idle_transaction_timeout.is_some()
    }

    /// Before a wait: whether an idle client parks now, or has been idle longer than `client_idle_timeout`
    /// (between transactions) or `idle_transaction_timeout` (inside one, holding its server connection).
    pub(super) fn idle_next(&mut self) -> Result<Option<Served>, PgError> {
        let Some(since) = self.idle_since else { return Ok(None) };
        let ticks = self.shared.parking.epoch().saturating_sub(since);
        let cluster = &self.settings.cluster;
        let in_transaction = !self.at_boundary();
        let timeout = if in_transaction { cluster.idle_transaction_timeout } else { cluster.client_idle_timeout };
        match idle::verdict(|| self.can_park(), self.park_soon, ticks, idle::limit_ticks(timeout)) {
            Idle::Wait => Ok(None),
            Idle::Park => Ok(Some(Served::Park)),
            Idle::Expire if in_transaction => {
                Err(PgError::IdleInTransactionTimeout { seconds: timeout.unwrap_or_default().as_secs() })
            }
            Idle::Expire => Err(self.idle_timeout()),
        }
    }

    fn idle_timeout(&self) -> PgError {
        PgError::IdleTimeout { seconds: self.settings.cluster.client_idle_timeout.unwrap_or_default().as_secs() }
    }

    /// Hands the client to the parking; its task ends. `can_park` held.
    pub(super) fn park(mut self: Box<Self>) -> Parked {
        let tcp = match std::mem::replace(&mut self.client, Stream::Detached) {
            Stream::Plain(tcp) => tcp,
            other => {
                self.client = other;
                self.may_park = false;
                self.shared.cancels.set_ticks(self.key.0, self.needs_clock());
                return Parked::No(self);
            }
        };
        let socket = match tcp.into_std() {
            Ok(socket) => socket,
            Err(e) => return Parked::Lost(self, e),
        };
        // The waker of the task about to end: a parked client keeps nothing of it, nor buffers.
        self.cancel.forget_waker();
        self.watching = false;
        self.reclaim_buffers();
        self.park_soon = false;
        let now = self.shared.parking.epoch();
        self.parked_at = now;
        let since = self.idle_since.unwrap_or(now);
        let expires = idle::expiry(since, idle::limit_ticks(self.settings.cluster.client_idle_timeout));
        let shared = self.shared.clone();
        match shared.parking.park(self, socket, expires) {
            Ok(()) => Parked::Yes,
            Err((mut session, socket)) => {
                session.may_park = false;
                session.shared.cancels.set_ticks(session.key.0, session.needs_clock());
                match TcpStream::from_std(socket) {
                    Ok(tcp) => {
                        session.client = Stream::Plain(tcp);
                        Parked::No(session)
                    }
                    Err(e) => Parked::Lost(session, e),
                }
            }
        }
    }

    /// A parked client back in a task of its own (spawned by the listener's parking).
    pub async fn resume(mut self: Box<Self>, socket: std::net::TcpStream, why: Wake) {
        let result = match TcpStream::from_std(socket) {
            Ok(tcp) => {
                self.client = Stream::Plain(tcp);
                match why {
                    Wake::Expired => Err(self.idle_timeout()),
                    Wake::Readable | Wake::Closing => Ok(()),
                }
            }
            Err(e) => Err(PgError::ClientIo(e)),
        };
        if let Err(e) = result {
            return Box::pin(self.finish(Err(e))).await;
        }
        let epoch = self.shared.parking.epoch();
        // Parked across a whole tick or more: likely idle again after this message, so it parks right after it.
        // (A client that writes more often goes back to waiting for the clock.)
        self.back_from_park = epoch >= self.parked_at.saturating_add(2);
        // Not idle from here until its message is served: the wait reads the socket before anything else.
        self.idle_since = None;
        self.seen_epoch = epoch;
        Self::drive(self).await;
    }
}
