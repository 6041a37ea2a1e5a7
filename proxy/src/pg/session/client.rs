//! Messages from the client: forwarded by tag and length, each with the answer it is owed queued; what they
//! change on the server connection is followed in `follow`, and in transaction pooling their prepared
//! statements are renamed in `renaming`.

use super::expect::Expect;
use super::leftovers;
use super::routing::Place;
use super::unit::{self, Held, Placing};
use super::{Flow, Session};
use crate::pg::buffers::rewind;
use crate::pg::codec::{cstr, decode, Frame};
use crate::pg::error::PgError;
use crate::pg::msg::{self, Severity};
use crate::stats::PoolStats;

impl Session {
    /// Handles every complete message buffered from the client.
    pub(super) async fn process_client(&mut self) -> Result<Flow, PgError> {
        loop {
            let (frame, scanned) = match self.pending.take() {
                Some(held) => {
                    // It waited for the reader's unit to end: give the reader back first, so that the frame
                    // starts a unit of its own instead of following the last one onto the reader.
                    self.maybe_release();
                    (held.frame, held.scanned)
                }
                None => match decode(&mut self.cbuf, self.settings.cluster.max_message_size.0 as usize)? {
                    Some(frame) => (frame, None),
                    None => break,
                },
            };
            match frame.tag() {
                b'X' => return Ok(Flow::Terminate),
                b'Q' | b'P' | b'B' | b'D' | b'E' | b'C' | b'S' | b'H' | b'F' | b'd' | b'c' | b'f' => {}
                // Refused here, as PostgreSQL would: forwarded, it would end a pooled server connection.
                other => {
                    return Err(PgError::ClientMessage(format!("invalid frontend message type {}", other as char)))
                }
            }
            if matches!(frame.tag(), b'd' | b'c' | b'f') && !self.copy_in && self.outstanding.is_empty() {
                // The rest of a COPY the server ended with an error (nothing in flight could start one): the
                // server drops it too.
                continue;
            }
            if self.server_skipping {
                // The rest of a batch the server failed: it ignores all of it but the Sync, which goes on.
                if frame.tag() != b'S' {
                    continue;
                }
                self.server_skipping = false;
            }
            if self.skip_to_sync {
                // The rest of a unit that could not be placed: PostgreSQL's own behaviour after an error.
                if frame.tag() == b'S' {
                    self.skip_to_sync = false;
                    msg::ready_for_query(&mut self.to_client, self.tx_status);
                }
                continue;
            }
            if frame.tag() == b'Q'
                && self.outstanding.is_empty()
                && msg::first_word(frame.body()).eq_ignore_ascii_case(b"show")
                && msg::query_text(frame.body()).is_some_and(unit::asks_route)
            {
                self.report_route();
                continue;
            }
            if self.server.is_none() {
                if self.answer_without_server(&frame) {
                    continue;
                }
                let place = match self.place_unit(&frame, scanned.unwrap_or(0)) {
                    Placing::Placed(place) => place,
                    Placing::Open(scanned) => {
                        // The batch's end has not come: read on, then place it whole.
                        self.pending = Some(Box::new(Held { frame, scanned: Some(scanned) }));
                        break;
                    }
                };
                let executes = place == Place::Reader && self.unit_executes(&frame);
                match self.checkout(place, executes).await {
                    Ok(()) => {}
                    // A read with no replica to serve it fails alone; the session goes on.
                    Err(e @ PgError::NoReplica { .. }) => {
                        self.refuse_unit(&frame, &e);
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            } else if self.holds_retired() {
                return Err(PgError::NodeGone { node: self.serving.node.0.clone() });
            } else if self.holds_back(&frame) {
                self.pending = Some(Box::new(Held { frame, scanned: None }));
                break;
            } else {
                self.note_late_write(&frame);
            }
            self.route(frame);
            // An answer we give ourselves with nothing owed before it goes out now: a client may wait for it
            // after a Flush, or with no Sync at all.
            self.emit_synthetic();
        }
        // Every message read: the next read goes to the buffer's start (a warm line) and needs no reserve.
        rewind(&mut self.cbuf);
        Ok(Flow::Continue)
    }

    /// Whether `frame`, with a server held, must wait for answers still owed: a write behind a read's unit
    /// (`must_wait`), or a statement name an earlier batch in flight changed (`name_in_doubt`).
    pub(super) fn holds_back(&self, frame: &Frame) -> bool {
        self.must_wait(frame) || self.name_in_doubt(frame)
    }

    /// Answers a unit that cannot run with an error, as PostgreSQL would: a simple query is done with it; in the
    /// extended protocol, what follows up to the Sync is skipped.
    fn refuse_unit(&mut self, first: &Frame, e: &PgError) {
        msg::error(&mut self.to_client, Severity::Error, e.sqlstate(), &e.to_string(), None);
        match first.tag() {
            b'Q' | b'S' => msg::ready_for_query(&mut self.to_client, self.tx_status),
            _ => self.skip_to_sync = true,
        }
    }

    /// Between transactions, what needs no server is answered here: a Parse of a statement some server already
    /// accepted, a Close of a statement, Flush, and Sync. A driver that prepares with a blocking call then never
    /// waits for a pool slot just to prepare (pgbench -M prepared could stall on that under lock contention).
    fn answer_without_server(&mut self, frame: &Frame) -> bool {
        if !self.transaction_pooling || !self.outstanding.is_empty() || self.tx_status != b'I' {
            return false;
        }
        match frame.tag() {
            b'P' => match msg::parse_fields(frame.body()) {
                // (Not a name in use: the server refuses that, as PostgreSQL would.)
                Some((name, rest)) if !name.is_empty() && !self.in_use(name) => {
                    let statement = self.shared.statements.intern(rest);
                    if !statement.is_validated() {
                        return false;
                    }
                    self.statements.insert(name.to_string(), statement);
                    self.to_client.extend_from_slice(&msg::empty(b'1'));
                    true
                }
                _ => false,
            },
            b'C' => match msg::target_fields(frame.body()) {
                Some((b'S', name)) if !name.is_empty() => {
                    self.statements.remove(name);
                    self.to_client.extend_from_slice(&msg::empty(b'3'));
                    true
                }
                _ => false,
            },
            b'S' => {
                msg::ready_for_query(&mut self.to_client, b'I');
                true
            }
            b'Q' => self.deallocate_here(frame),
            b'H' => true,
            _ => false,
        }
    }

    fn route(&mut self, frame: Frame) {
        let renaming = self.transaction_pooling;
        let batch_begins = !self.unsynced;
        match frame.tag() {
            b'P' | b'B' | b'D' | b'E' => self.unsynced = true,
            // (A Close answered by the proxy sends nothing: `close`.)
            b'C' if !renaming => self.unsynced = true,
            b'S' | b'Q' => self.unsynced = false,
            _ => {}
        }
        match frame.tag() {
            b'Q' => {
                // An SQL DEALLOCATE of one of the client's names, with no batch open (held until nothing is in
                // flight: `name_in_doubt`), is answered here.
                if batch_begins && self.outstanding.is_empty() && self.deallocate_here(&frame) {
                    return;
                }
                PoolStats::add(&self.serving.stats.queries, 1);
                let expect =
                    if renaming { self.follow_statement(frame.body()) } else { self.session_query(frame.body()) };
                self.forward(frame, expect);
            }
            b'F' => {
                // A fast-path function call can do what any function does (set_config, an advisory lock…),
                // and the proxy does not read which one: in transaction pooling the connection is cleared of
                // all of that before another client gets it.
                if renaming {
                    self.note_leftovers(leftovers::fast_path_leftovers(frame.body()));
                }
                self.forward(frame, Expect::Query)
            }
            b'P' if renaming => self.parse(frame, batch_begins),
            b'P' => {
                if let Some((name, text)) = msg::parse_fields(frame.body()) {
                    self.session_parse(name, text);
                }
                self.forward(frame, Expect::Parse)
            }
            b'B' if renaming => self.bind(frame),
            b'B' => {
                self.session_bind(frame.body());
                self.forward(frame, Expect::Bind)
            }
            b'D' if renaming => self.describe(frame),
            b'D' => self.forward(frame, Expect::Describe),
            b'C' if renaming => self.close(frame),
            b'C' => self.forward(frame, Expect::Close),
            b'E' => {
                PoolStats::add(&self.serving.stats.queries, 1);
                let drops =
                    self.drop_portals.is_some() && cstr(frame.body()).is_some_and(|(p, _)| self.drops_all_at(p));
                let set = match (&self.extended_sets, drops) {
                    (Some(sets), false) => cstr(frame.body()).and_then(|(p, _)| sets.at(p)),
                    _ => None,
                };
                let expect = match (drops, set) {
                    (true, _) => Expect::ExecuteDropAll(self.statements.mark_drop()),
                    (false, Some(change)) => Expect::ExecuteSet(Box::new(change)),
                    (false, None) => Expect::Execute,
                };
                self.forward(frame, expect);
            }
            // During COPY FROM STDIN the server ignores Sync: nothing will answer it.
            b'S' if self.copy_in => self.to_server.extend_from_slice(frame.bytes()),
            b'S' => self.forward(frame, Expect::Sync),
            b'c' | b'f' => {
                self.copy_in = false;
                self.to_server.extend_from_slice(frame.bytes());
            }
            // Flush, CopyData and anything else: forwarded as is; the server answers what it must.
            _ => self.to_server.extend_from_slice(frame.bytes()),
        }
    }

    pub(super) fn forward(&mut self, frame: Frame, expect: Expect) {
        self.to_server.extend_from_slice(frame.bytes());
        self.outstanding.push(expect);
    }
}
