//! Messages from the client: forwarded by tag and length; in transaction pooling, prepared statements are
//! renamed to proxy-wide names and created on whichever server the client gets.

use std::sync::Arc;

use super::expect::Expect;
use super::leftovers::{self, Leftovers, Owned};
use super::routing::Place;
use super::statements::Statement;
use super::{unit, unreported, Flow, Session};
use crate::pg::buffers::rewind;
use crate::pg::codec::{cstr, decode, Frame};
use crate::pg::error::PgError;
use crate::pg::msg::{self, Severity};
use crate::pg::sqltext;
use crate::stats::PoolStats;

impl Session {
    /// Handles every complete message buffered from the client.
    pub(super) async fn process_client(&mut self) -> Result<Flow, PgError> {
        loop {
            let frame = match self.pending.take() {
                Some(frame) => {
                    let frame = *frame;
                    // It waited for the reader's unit to end: give the reader back first, so that the frame
                    // starts a unit of its own instead of following the last one onto the reader.
                    self.maybe_release();
                    frame
                }
                None => match decode(&mut self.cbuf, self.settings.cluster.max_message_size.0 as usize)? {
                    Some(frame) => frame,
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
                let place = self.place_unit(&frame);
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
            } else if self.must_wait(&frame) {
                self.pending = Some(Box::new(frame));
                break;
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
                Some((name, rest)) if !name.is_empty() => {
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
            b'H' => true,
            _ => false,
        }
    }

    fn route(&mut self, frame: Frame) {
        let renaming = self.transaction_pooling;
        match frame.tag() {
            b'P' | b'B' | b'D' | b'E' | b'C' => self.unsynced = true,
            b'S' | b'Q' => self.unsynced = false,
            _ => {}
        }
        match frame.tag() {
            b'Q' => {
                PoolStats::add(&self.serving.stats.queries, 1);
                let expect =
                    if renaming { self.follow_statement(frame.body()) } else { self.session_query(frame.body()) };
                self.forward(frame, expect);
            }
            b'F' => self.forward(frame, Expect::Query),
            b'P' if renaming => self.parse(frame),
            b'P' => {
                if let Some((name, text)) = msg::parse_fields(frame.body()) {
                    self.session_parse(name, text);
                }
                self.forward(frame, Expect::Parse { created: None })
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

    /// Follows the simple-query statements that change what a server connection holds (transaction pooling):
    /// `DISCARD ALL` and `DEALLOCATE ALL` drop its prepared statements; plain autocommit SETs and RESETs of
    /// parameters the server does not report are followed (`unreported`); anything else a client leaves on the
    /// connection marks it to be cleared before another client gets it (`leftovers`). The text is read only
    /// when the first word is one of theirs (or another statement follows a `;`). What the server owes for it:
    /// a drop that may run is marked (`Expect::QueryDropAll`).
    fn follow_statement(&mut self, body: &[u8]) -> Expect {
        // Past leading comments, as PostgreSQL reads it (a comment also ends a keyword: `DISCARD/**/ALL`).
        let keyword = sqltext::leading_keyword(body);
        let is = |word: &[u8]| keyword.eq_ignore_ascii_case(word);
        if is(b"set") || is(b"reset") {
            if let Some(change) = self.follow_unreported(body) {
                return Expect::QuerySet(Box::new(change)); // the session follows it: nothing left behind
            }
        }
        let mut left = leftovers::query_leftovers(body);
        let mut expect = Expect::Query;
        if drops_all_after(keyword, body) {
            let alone = leftovers::one_statement(body);
            let outcome = drop_outcome(is(b"discard"), self.outstanding.is_empty(), self.tx_status, alone);
            match outcome {
                Outcome::Fails => {}
                // What the server will have is unknown: the connection is replaced once the client is done.
                Outcome::Unknown => self.server_conn().broken = true,
                Outcome::Drops => self.forget_statements(is(b"discard")),
            }
            if outcome != Outcome::Fails {
                expect = Expect::QueryDropAll(self.statements.mark_drop());
            }
            if alone && outcome != Outcome::Unknown {
                // Followed exactly: nothing is left that another client's checkout would need to clear.
                left = Leftovers::NONE;
            }
        }
        self.note_leftovers(left);
        // SETs among other statements leave settings the connection is still cleared of; the client's own record
        // follows them too (one query of several statements holds as a whole).
        if left.contains(Leftovers::SETTINGS) && expect == Expect::Query {
            if let Some(change) = self.follow_several(body) {
                return Expect::QuerySet(Box::new(change));
            }
        }
        expect
    }

    /// The SETs and RESETs the session follows in a query of several statements sent outside a transaction
    /// (`unreported::several`).
    pub(super) fn follow_several(&self, body: &[u8]) -> Option<unreported::Change> {
        if self.tx_status != b'I' {
            return None;
        }
        msg::query_text(body).and_then(unreported::several)
    }

    /// The server drops every prepared statement (and with `discard`, resets the session): the client's names
    /// and what the proxy knows of the connection go too.
    fn forget_statements(&mut self, discard: bool) {
        self.statements.clear();
        self.server_conn().prepared.clear();
        if discard {
            // DISCARD ALL resets every setting too (DEALLOCATE ALL only drops statements).
            self.reset_unreported();
            self.server_conn().unreported = Some(Default::default());
        }
    }

    /// Session pooling: what a client leaves is cleared by `DISCARD ALL` when it leaves, but a library it loaded
    /// stays in the server process: that connection is closed instead.
    pub(super) fn replace_if_loading(&mut self, text: &[u8]) {
        if leftovers::loads_library(text) {
            self.server_conn().broken = true;
        }
    }

    /// The server connection now holds `kinds` of session state of this client's that the proxy does not follow.
    pub(super) fn note_leftovers(&mut self, kinds: Leftovers) {
        if kinds.is_empty() {
            return;
        }
        let owner = self.key;
        let conn = self.server_conn();
        if kinds.contains(Leftovers::LIBRARY) {
            // No reset unloads it: closed, not pooled, once this client is done with it.
            conn.broken = true;
        }
        if kinds.contains(Leftovers::SETTINGS) {
            // Which values it now has is unknown: the client's next checkout of it sets them all again.
            conn.unreported = None;
        }
        let before = conn.leftovers.filter(|l| l.owner == owner).map_or(Leftovers::NONE, |l| l.kinds);
        conn.leftovers = Some(Owned { owner, kinds: before.with(kinds) });
    }

    /// A plain SET or RESET of an unreported parameter outside a transaction: its change applies when the
    /// statement succeeds (`Expect::QuerySet`, read at its ReadyForQuery), and every later connection of the
    /// client is brought to it. Inside a transaction the outcome depends on COMMIT: not followed (the
    /// connection's values become unknown, and it is cleared before another client gets it). The change, when
    /// followed.
    pub(super) fn follow_unreported(&mut self, body: &[u8]) -> Option<unreported::Change> {
        let change = msg::query_text(body).and_then(unreported::change)?;
        if self.tx_status != b'I' {
            self.server_conn().unreported = None;
            return None;
        }
        Some(change)
    }

    fn forward(&mut self, frame: Frame, expect: Expect) {
        self.to_server.extend_from_slice(frame.bytes());
        self.outstanding.push(expect);
    }

    /// Parse of a named statement: answered locally when the server already has it.
    fn parse(&mut self, frame: Frame) {
        let Some((name, rest)) = msg::parse_fields(frame.body()) else {
            return self.forward(frame, Expect::Parse { created: None });
        };
        if name.is_empty() {
            // Bound and executed on this connection, in this unit.
            self.note_leftovers(leftovers::query_leftovers(rest));
            self.unnamed_drops_all = text_drops_all(rest);
            let set = text_set(rest);
            if set.is_some() || self.extended_sets.is_some() {
                self.extended_sets.get_or_insert_default().unnamed = set;
            }
            return self.forward(frame, Expect::Parse { created: None });
        }
        let statement = self.shared.statements.intern(rest);
        self.statements.insert(name.to_string(), statement.clone());
        let present = self.server_conn().prepared.touch(&statement.name);
        if present && !self.may_be_dropped() {
            self.outstanding.push(Expect::Synthetic(msg::empty(b'1')));
            return;
        }
        self.make_room_for(&statement, present);
        self.to_server.extend_from_slice(&statement.parse);
        self.outstanding.push(Expect::Parse { created: Some(statement.name.clone()) });
    }

    /// Bind to a named statement: renamed, and the statement created first if this server lacks it.
    fn bind(&mut self, frame: Frame) {
        let Some((portal, name, rest)) = msg::bind_fields(frame.body()) else {
            return self.forward(frame, Expect::Bind);
        };
        let statement = self.known(name);
        let drops = statement.as_ref().map_or(name.is_empty() && self.unnamed_drops_all, |s| s.drops_all);
        self.note_drop_portal(portal, drops);
        let set = match &statement {
            Some(s) => s.set.as_ref(),
            None if name.is_empty() => self.extended_sets.as_ref().and_then(|e| e.unnamed.as_ref()),
            None => None,
        };
        if set.is_some() || self.extended_sets.is_some() {
            let set = set.cloned();
            self.extended_sets.get_or_insert_default().bound(portal, set);
        }
        let Some(statement) = statement else { return self.forward(frame, Expect::Bind) };
        self.note_leftovers(statement.leftovers);
        self.ensure_prepared(&statement);
        msg::bind_renamed(&mut self.to_server, portal, &statement.name, rest);
        self.outstanding.push(Expect::Bind);
    }

    /// Keeps track of the portals whose Execute drops every prepared statement (a portal bound again is
    /// whatever it is bound to now; one closed or ended with its transaction may stay listed: its name then
    /// only makes the proxy more careful).
    fn note_drop_portal(&mut self, portal: &str, drops: bool) {
        match (&mut self.drop_portals, drops) {
            (Some(portals), _) => {
                portals.retain(|p| &**p != portal);
                if drops {
                    portals.push(portal.into());
                } else if portals.is_empty() {
                    self.drop_portals = None;
                }
            }
            (None, true) => self.drop_portals = Some(Box::new(vec![portal.into()])),
            (None, false) => {}
        }
    }

    fn drops_all_at(&self, portal: &str) -> bool {
        self.drop_portals.as_ref().is_some_and(|portals| portals.iter().any(|p| &**p == portal))
    }

    /// Whether statements the proxy takes for present on the server may be gone by the time what is sent now
    /// runs: a drop of every statement is on its way ahead of it, or an error left that unknown.
    fn may_be_dropped(&mut self) -> bool {
        self.outstanding.drop_in_flight() || self.server_conn().statements_uncertain
    }

    fn describe(&mut self, frame: Frame) {
        let statement = match msg::target_fields(frame.body()) {
            Some((b'S', name)) => self.known(name),
            _ => None,
        };
        let Some(statement) = statement else { return self.forward(frame, Expect::Describe) };
        self.ensure_prepared(&statement);
        msg::describe_statement(&mut self.to_server, &statement.name);
        self.outstanding.push(Expect::Describe);
    }

    /// Close of a named statement is answered by the proxy: other clients may still use it on the server.
    fn close(&mut self, frame: Frame) {
        match msg::target_fields(frame.body()) {
            Some((b'S', name)) if !name.is_empty() => {
                self.statements.remove(name);
                self.outstanding.push(Expect::Synthetic(msg::empty(b'3')));
            }
            _ => self.forward(frame, Expect::Close),
        }
    }

    /// The client's statement by its own name; `None` for unnamed or unknown ones (forwarded unchanged, so
    /// the server gives its own error for an unknown name). A name given before a drop of every statement sent
    /// in the same batch is unknown: what comes behind the drop runs only if the drop ran, and then the name is
    /// gone, as PostgreSQL says.
    fn known(&self, name: &str) -> Option<Arc<Statement>> {
        if name.is_empty() {
            return None;
        }
        self.statements.get_unless_before(name, self.outstanding.drop_in_batch()).cloned()
    }

    fn ensure_prepared(&mut self, statement: &Arc<Statement>) {
        let present = self.server_conn().prepared.touch(&statement.name);
        if present && !self.may_be_dropped() {
            return;
        }
        self.make_room_for(statement, present);
        self.to_server.extend_from_slice(&statement.parse);
        self.outstanding.push(Expect::InjectedParse(statement.name.clone()));
    }

    /// Before a Parse of `statement` goes to the server: room in its set when the server lacks it. When it is
    /// `present` there as far as the proxy knows, it may be gone by the time the Parse runs (`may_be_dropped`):
    /// it is closed first, which is no error when it is gone, so the Parse works either way.
    /// After an error left the server's statements unknown (`statements_uncertain`), one the proxy takes for
    /// absent is closed first too.
    fn make_room_for(&mut self, statement: &Arc<Statement>, present: bool) {
        if !present {
            self.evict_for(statement);
        }
        if present || self.server_conn().statements_uncertain {
            msg::close_statement(&mut self.to_server, &statement.name);
            self.outstanding.push(Expect::Reclose(statement.name.clone()));
        }
    }

    /// Makes room on the server: closes its least recently used statement when the set is full.
    fn evict_for(&mut self, statement: &Arc<Statement>) {
        if let Some(victim) = self.server_conn().prepared.insert(statement.name.clone()) {
            msg::close_statement(&mut self.to_server, &victim);
            self.outstanding.push(Expect::InjectedClose(victim));
        }
    }
}

/// Whether a query that would drop every prepared statement will. Known when nothing is in flight before it
/// (the transaction status is then the server's): `DISCARD ALL` fails inside a transaction block and among other
/// statements of one query (`alone`: it is the query's only statement); `DEALLOCATE ALL` fails in a failed
/// transaction. Pure.
fn drop_outcome(discard: bool, nothing_before: bool, tx_status: u8, alone: bool) -> Outcome {
    let runs = if discard { tx_status == b'I' && alone } else { tx_status != b'E' };
    match (nothing_before, runs) {
        (false, _) => Outcome::Unknown,
        (true, true) => Outcome::Drops,
        (true, false) => Outcome::Fails,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Drops,
    Fails,
    Unknown,
}

/// Whether a statement's text (a Query body, or the text part of a Parse) is `DISCARD ALL` or `DEALLOCATE
/// [PREPARE] ALL`, which remove every prepared statement of the server connection.
pub fn text_drops_all(body: &[u8]) -> bool {
    drops_all_after(sqltext::leading_keyword(body), body)
}

/// The change a query body (or a Parse's text part) makes when it is a plain SET or RESET the session follows
/// (`unreported::change`). The keyword first, as for `text_drops_all`.
pub fn text_set(body: &[u8]) -> Option<unreported::Change> {
    let keyword = sqltext::leading_keyword(body);
    let is = |word: &[u8]| keyword.eq_ignore_ascii_case(word);
    (is(b"set") || is(b"reset")).then(|| msg::query_text(body).and_then(unreported::change)).flatten()
}

/// `text_drops_all` for a text whose leading keyword is known. The keyword first: every query passes here, and
/// reading its text costs more.
fn drops_all_after(keyword: &[u8], body: &[u8]) -> bool {
    (keyword.eq_ignore_ascii_case(b"discard") || keyword.eq_ignore_ascii_case(b"deallocate"))
        && msg::query_text(body).is_some_and(|sql| drops_all_statements(&sqltext::blank_comments(sql)))
}

/// `DISCARD ALL` and `DEALLOCATE [PREPARE] ALL` remove every prepared statement of the server connection. Asked
/// only of a query that begins with one of those words (`sql` with its comments read as spaces).
fn drops_all_statements(sql: &str) -> bool {
    let mut words = sql.split_whitespace().map(|w| w.trim_end_matches(';'));
    let is = |w: Option<&str>, want: &str| w.is_some_and(|w| w.eq_ignore_ascii_case(want));
    let (a, b) = (words.next(), words.next());
    (is(a, "DISCARD") && is(b, "ALL"))
        || (is(a, "DEALLOCATE") && (is(b, "ALL") || (is(b, "PREPARE") && is(words.next(), "ALL"))))
}

#[cfg(test)]
mod tests {
    use super::{drops_all_statements, text_drops_all};

    #[test]
    fn statement_texts_that_drop_every_statement() {
        // Query bodies and the text part of Parse messages (text, NUL, parameter types).
        for body in [&b"DEALLOCATE ALL\0"[..], b"/* pool reset */ discard all\0", b"DEALLOCATE PREPARE ALL\0\0\0"] {
            assert!(text_drops_all(body), "{}", String::from_utf8_lossy(body));
        }
        for body in [&b"DEALLOCATE s1\0"[..], b"SELECT 'DISCARD ALL'\0", b"DISCARD TEMP\0\0\0", b""] {
            assert!(!text_drops_all(body), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn whether_a_drop_of_every_statement_runs() {
        use super::{drop_outcome, Outcome::*};
        // (discard, nothing in flight before it, transaction status, alone in its query) → outcome
        let cases = [
            (true, true, b'I', true, Drops),
            (true, true, b'T', true, Fails),
            (true, true, b'I', false, Fails),
            (true, false, b'I', true, Unknown),
            (false, true, b'T', true, Drops),
            (false, true, b'E', true, Fails),
            (false, true, b'I', false, Drops),
        ];
        for (discard, nothing_before, status, alone, want) in cases {
            let got = drop_outcome(discard, nothing_before, status, alone);
            assert_eq!(got, want, "{discard} {nothing_before} {} {alone}", status as char);
        }
    }

    #[test]
    fn recognises_statements_that_drop_every_prepared_statement() {
        for sql in ["DISCARD ALL", "discard all;", "  DEALLOCATE ALL", "deallocate prepare all"] {
            assert!(drops_all_statements(sql), "{sql}");
        }
        for sql in ["DISCARD PLANS", "DEALLOCATE s1", "SELECT 'DISCARD ALL'", ""] {
            assert!(!drops_all_statements(sql), "{sql}");
        }
    }
}
