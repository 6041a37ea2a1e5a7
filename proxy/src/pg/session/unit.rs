//! Placing units of work: the verdicts of the statements a unit holds, the reader that serves a read, and the
//! client's `SHOW hapool.route`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use hapool_config::{LoadBalance, ReadYourWrites};

use super::params;
use super::routing::{self, place, Context, Place, Why};
use super::wait::HELD_READ_LIMIT;
use super::Session;
use crate::pg::classify::Verdict;
use crate::pg::codec::{cstr, message_len, peek, Frame};
use crate::pg::error::PgError;
use crate::pg::msg;
use crate::pg::pool::Pool;

/// What placing a unit found (`place_unit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Placing {
    Placed(Place),
    /// Reads so far, and the batch's end has not come: the client's buffer was judged up to this offset.
    Open(usize),
}

/// A message held back (`Session::pending`).
#[derive(Debug)]
pub(super) struct Held {
    pub frame: Frame,
    /// Waiting for the rest of its batch (no server held): the client's buffer judged so far (`Placing::Open`).
    /// `None`: waiting for a reader's unit to end, or for an earlier batch's answers.
    pub scanned: Option<usize>,
}

/// What routing needs to know of the parameters a client expects.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct DesiredFlags {
    /// standard_conforming_strings is off: backslashes escape quotes, and the grammar the classifier uses
    /// (always "on") could take part of a string for code or the reverse. Such a client stays on the primary.
    escaped_strings: bool,
    /// default_transaction_read_only is on.
    default_read_only: bool,
}

impl DesiredFlags {
    fn of(desired: &[(String, String)]) -> DesiredFlags {
        let is = |name: &str, value: &str| desired.iter().any(|(k, v)| k == name && v == value);
        DesiredFlags {
            escaped_strings: is("standard_conforming_strings", "off"),
            default_read_only: is("default_transaction_read_only", "on"),
        }
    }
}

impl Session {
    /// After `desired` changed: its fingerprint (returned) and what routing reads of it.
    pub(super) fn desired_changed(&mut self) -> u64 {
        self.desired_flags = DesiredFlags::of(&self.desired);
        self.desired_hash = params::fingerprint(&self.desired);
        self.desired_hash
    }

    fn routing_context(&self) -> Context {
        let r = &self.settings.cluster.routing;
        Context {
            split: self.settings.splits_reads() && !self.desired_flags.escaped_strings,
            read_your_writes: r.read_your_writes,
            wrote: self.wrote,
            unknown_functions: r.unknown_functions,
            default_read_only: self.desired_flags.default_read_only,
        }
    }

    /// The verdict of a message's statement: `None` for a message that carries none (Execute, Sync, a Bind of
    /// the unnamed statement …), `Some(None)` for a statement the proxy cannot see.
    fn verdict(&self, tag: u8, body: &[u8]) -> Option<Option<Verdict>> {
        let classifier = &self.settings.classifier;
        let named = |name: &str| self.statement_text(name).map(|q| classifier.classify(q));
        match tag {
            b'Q' => Some(msg::query_text(body).map(|q| classifier.classify(q))),
            b'P' => Some(msg::parse_fields(body).and_then(|(_, rest)| cstr(rest)).map(|(q, _)| classifier.classify(q))),
            b'B' => match msg::bind_fields(body) {
                Some((_, name, _)) if !name.is_empty() => Some(named(name)),
                _ => None,
            },
            b'D' => match msg::target_fields(body) {
                Some((b'S', name)) if !name.is_empty() => Some(named(name)),
                _ => None,
            },
            // A fast-path function call runs a function the proxy cannot see by name (found in review).
            b'F' => Some(None),
            _ => None,
        }
    }

    /// The query text of one of the client's named statements.
    fn statement_text(&self, name: &str) -> Option<&str> {
        let statement = self.statements.get(name)?;
        let (_, rest) = msg::parse_fields(statement.parse.get(5..)?)?;
        cstr(rest).map(|(q, _)| q)
    }

    /// Where the unit that starts with `first` goes, judging `first` and what the client has sent after it up to
    /// the batch's end: its Sync, or a simple query (which runs in the batch's implicit transaction, and is judged
    /// with it). A batch is one implicit transaction: all of it must be fit for a replica. `Placing::Open`: every
    /// statement seen so far is a read, but the batch's end has not come, so it cannot be placed yet (the caller
    /// reads on, and judges from the offset it returns: messages from `from` on are judged, those before it were
    /// reads). Once the client has Flushed (it may wait for answers before it sends the rest), or what it sent
    /// reaches `HELD_READ_LIMIT`, such a batch goes to the primary instead (`Why::Partial`).
    pub(super) fn place_unit(&self, first: &Frame, from: usize) -> Placing {
        if !self.settings.splits_reads() {
            return Placing::Placed(Place::Primary(Why::NoSplit)); // (without looking through the client's parameters)
        }
        let ctx = self.routing_context();
        if !ctx.split {
            return Placing::Placed(Place::Primary(Why::NoSplit));
        }
        // No reader in this route (a single node, or every replica down or lagging): everything runs on the
        // primary, so the statements need no classifying, unless read-your-writes must note the writes.
        let tracks_writes = matches!(ctx.read_your_writes, ReadYourWrites::Session | ReadYourWrites::Causal);
        if self.route.readers.is_empty() && self.settings.cluster.routing.fallback_to_primary && !tracks_writes {
            return Placing::Placed(Place::Primary(Why::NoReplica));
        }
        let head = self.verdict(first.tag(), first.body()).flatten();
        let (mut ended, mut flushed, mut scanned) = (first.tag() == b'Q', false, from);
        let mut frames = peek(self.cbuf.get(from..).unwrap_or_default());
        let rest = std::iter::from_fn(|| {
            while !ended {
                let (tag, body) = frames.next()?;
                scanned += body.len() + 5;
                match tag {
                    // (A Terminate ends it too: what came before it still runs.)
                    b'S' | b'X' => ended = true,
                    b'H' => flushed = true,
                    _ => {
                        ended = tag == b'Q';
                        if let Some(verdict) = self.verdict(tag, body) {
                            return Some(verdict);
                        }
                    }
                }
            }
            None
        });
        match place(std::iter::once(head).chain(rest), &ctx) {
            Place::Reader if !ended && !flushed && self.cbuf.len() < HELD_READ_LIMIT && !self.malformed_at(scanned) => {
                Placing::Open(scanned)
            }
            Place::Reader if !ended => Placing::Placed(Place::Primary(Why::Partial)),
            placed => Placing::Placed(placed),
        }
    }

    /// Whether the client's next message, at `offset` in its buffer, has a length no message may have: the batch
    /// is placed now, and decoding that message fails it, rather than waiting for more.
    fn malformed_at(&self, offset: usize) -> bool {
        let max = self.settings.cluster.max_message_size.0 as usize;
        message_len(self.cbuf.get(offset..).unwrap_or_default(), max).is_err()
    }

    /// Whether the message held back (`pending`) may go now: one that waits for the rest of its batch (no server
    /// held) once that has come (judged from where the last look stopped); one that waited for a reader's unit or
    /// an earlier batch's answers as soon as the server is given back, or once it no longer holds back.
    pub(super) fn held_may_go(&self, held: &Held) -> bool {
        match (held.scanned, &self.server) {
            (Some(from), None) => !matches!(self.place_unit(&held.frame, from), Placing::Open(_)),
            (None, None) => true,
            (_, Some(_)) => !self.holds_back(&held.frame),
        }
    }

    /// While a reader serves an autocommit unit (its ReadyForQuery is owed): whether `frame` must wait for that
    /// unit to end and start one of its own. Only the first message of a batch or a simple query is judged, and
    /// with what the client sent after it, as `place_unit` judges a unit: a batch is one implicit transaction,
    /// and a write in it must not follow the batch's reads onto the reader. Later messages of a batch the reader
    /// took were judged with it (a batch goes to a reader only once its end has come). Inside a read-only
    /// transaction everything is forwarded, and a write then fails as PostgreSQL says.
    pub(super) fn must_wait(&self, frame: &Frame) -> bool {
        if self.last_place != Place::Reader || self.tx_status != b'I' || self.unsynced || self.starts_nothing(frame) {
            return false;
        }
        self.outstanding.awaits_ready() && !matches!(self.place_unit(frame, 0), Placing::Placed(Place::Reader))
    }

    /// A message that begins no work on the server: a Flush, a Sync with no batch before it, or a Close of a
    /// named statement in transaction pooling (answered by the proxy). It may go where the unit is.
    fn starts_nothing(&self, frame: &Frame) -> bool {
        match frame.tag() {
            b'H' | b'S' => true,
            b'C' => {
                self.transaction_pooling
                    && matches!(msg::target_fields(frame.body()), Some((b'S', name)) if !name.is_empty())
            }
            _ => false,
        }
    }

    /// On the primary, in a unit not counted as a write (a hinted read, a batch placed before its end …), with
    /// read-your-writes on: a write among its later messages counts (`wrote`, and `unit_writes` in causal mode).
    pub(super) fn note_late_write(&mut self, frame: &Frame) {
        let noted = match self.settings.cluster.routing.read_your_writes {
            ReadYourWrites::Session => self.wrote,
            ReadYourWrites::Causal => self.unit_writes,
            ReadYourWrites::Off | ReadYourWrites::Transaction => true,
        };
        if noted || self.last_place == Place::Reader || routing::writes(self.last_place) {
            return;
        }
        // Without the split (session pooling, or a client whose strings the classifier cannot read), the client
        // never leaves the primary: nothing to note.
        let ctx = self.routing_context();
        if !ctx.split {
            return;
        }
        let Some(verdict) = self.verdict(frame.tag(), frame.body()) else { return };
        if routing::writes(place(std::iter::once(verdict), &ctx)) {
            self.wrote = true;
            self.unit_writes = self.causal.is_some();
        }
    }

    /// Whether the unit that starts with `first` runs a statement (Query, Execute, FunctionCall) rather than
    /// only preparing or describing one.
    pub(super) fn unit_executes(&self, first: &Frame) -> bool {
        let runs = |tag: u8| matches!(tag, b'Q' | b'E' | b'F');
        runs(first.tag())
            || peek(&self.cbuf).take_while(|(tag, _)| *tag != b'S' && *tag != b'Q').any(|(tag, _)| runs(tag))
    }

    /// A reader's pool for a read, by the configured balancing; the primary when no reader may serve and
    /// `fallback_to_primary` allows it. A unit that executes nothing does not move the schedule: a driver that
    /// describes then executes would otherwise have all its executions land on every other slot of it.
    pub(super) fn reader(&mut self, executes: bool) -> Result<(Arc<Pool>, Place), PgError> {
        let readers = &self.route.readers;
        let chosen = match self.settings.cluster.routing.load_balance {
            LoadBalance::Weighted => readers.weighted(executes),
            LoadBalance::LeastOutstanding => readers.least_outstanding(),
        };
        let Some(node) = chosen.cloned() else {
            if self.settings.cluster.routing.fallback_to_primary {
                return Ok((self.pool.clone(), Place::Primary(Why::NoReplica)));
            }
            let lagging = self.route.route.lagging;
            return Err(PgError::NoReplica { cluster: self.settings.cluster.name.clone(), lagging });
        };
        if let Some(pool) = self.readers.iter().flat_map(|r| r.iter()).find(|p| p.node == node.node) {
            return Ok((pool.clone(), Place::Reader));
        }
        let Some(auth) = self.shared.user_auth(&self.settings, self.user()) else {
            return Err(PgError::AuthFailed { user: self.user().to_string() });
        };
        let pool = self.shared.pool(&self.settings, &auth, self.database(), &node);
        self.readers.get_or_insert_default().push(pool.clone());
        Ok((pool, Place::Reader))
    }

    /// Answers `SHOW hapool.route`: where this client's last unit of work went and why.
    pub(super) fn report_route(&mut self) {
        let node = self.serving.node.0.clone();
        let primary = self.route.route.primary.as_ref().is_some_and(|p| p.node == self.serving.node);
        let (role, why) = match self.last_place {
            Place::Reader if primary => ("primary", "read"),
            Place::Reader => ("replica", "read"),
            Place::Primary(why) => ("primary", why.name()),
        };
        let load = self.serving.load.load(Ordering::Relaxed).to_string();
        let row = vec![node, role.to_string(), why.to_string(), self.route.route.generation.to_string(), load];
        msg::text_rows(&mut self.to_client, &["node", "role", "reason", "generation", "in_use"], &[row]);
        msg::ready_for_query(&mut self.to_client, self.tx_status);
    }
}

/// `SHOW hapool.route` (any case, optional semicolon). Runs on every simple query: no allocation.
pub(super) fn asks_route(sql: &str) -> bool {
    let mut words = sql.trim().trim_end_matches(';').split_whitespace();
    matches!(
        (words.next(), words.next(), words.next()),
        (Some(show), Some(what), None) if show.eq_ignore_ascii_case("show") && what.eq_ignore_ascii_case("hapool.route")
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn recognises_show_route() {
        for sql in ["SHOW hapool.route", "show HAPOOL.ROUTE;", "  show hapool.route ; "] {
            assert!(super::asks_route(sql), "{sql}");
        }
        for sql in ["SHOW hapool", "SELECT 'SHOW hapool.route'", "SHOW hapool.route extra"] {
            assert!(!super::asks_route(sql), "{sql}");
        }
    }
}
