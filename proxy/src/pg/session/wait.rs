//! What a session waits for between messages: the client, the server connection it holds, and the signals the
//! listener wakes every session for (shutdown, a retired node), which it checks by flag. A poll function, not a
//! `select!` over futures: an idle client's whole wait is two registered wakers, with no future state of its own
//! (the futures took 384 bytes in every session, and their waiter lists a lock on each wait).

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio_util::io::poll_read_buf;

use super::Session;

/// How much of what a client sends is read while one of its messages is held back (and how much of a batch is
/// read to see its end before it is placed: `place_unit`).
pub(super) const HELD_READ_LIMIT: usize = 1 << 20;

pub(super) enum Event {
    Client(std::io::Result<usize>),
    Server(std::io::Result<usize>),
    Shutdown,
    /// The topology no longer allows the node of the server connection held.
    Retired,
    /// The parking clock ticked while the client was idle: time to look at its idleness.
    Tick,
    /// A cancel forwarded to the server connection the session kept aside for it is through: the connection
    /// may go back.
    Forwarded,
}

impl Session {
    pub(super) fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        // Registered (once per task) before the flags are read: a signal raised after the check wakes this task.
        if !self.watching {
            self.cancel.watch(cx.waker());
            self.watching = true;
        }
        if self.at_boundary() && self.shared.stopping() {
            return Poll::Ready(Event::Shutdown);
        }
        if self.holds_retired() {
            return Poll::Ready(Event::Retired);
        }
        if self.held_for_cancel.is_some() && !self.cancel.forwarding() {
            return Poll::Ready(Event::Forwarded);
        }
        let epoch = self.shared.parking.epoch();
        if epoch != self.seen_epoch {
            self.seen_epoch = epoch;
            if self.idle_since.is_some() {
                return Poll::Ready(Event::Tick);
            }
        }
        self.server_first = !self.server_first;
        if self.server_first {
            if let Poll::Ready(event) = self.poll_server(cx) {
                return Poll::Ready(event);
            }
        }
        // While a message is held back for the server's answers, the client is read only up to a limit: its
        // leaving is still noticed, and its next messages do not pile up in memory for as long as the wait lasts.
        if self.pending.is_none() || self.cbuf.len() < HELD_READ_LIMIT {
            if let Poll::Ready(n) = self.client.poll_read_into(cx, &mut self.cbuf, &self.shared.buffers) {
                return Poll::Ready(Event::Client(n));
            }
        }
        if !self.server_first {
            return self.poll_server(cx);
        }
        Poll::Pending
    }

    fn poll_server(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        match self.server.as_mut() {
            Some(pooled) => {
                let conn = pooled.conn();
                poll_read_buf(Pin::new(&mut conn.stream), cx, &mut conn.rbuf).map(Event::Server)
            }
            None => Poll::Pending,
        }
    }
}
