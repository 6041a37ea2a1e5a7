//! Transaction pooling: a client's prepared statements under proxy-wide names (`statements`), created on
//! whichever server connection the client gets before a Bind or Describe needs them, within each connection's
//! limit; a Close is answered by the proxy.

use std::sync::Arc;

use super::expect::{Expect, Unsure};
use super::follow::{text_drops_all, text_set};
use super::leftovers::{self, Head};
use super::statement_words::{deallocated_name, ends_transaction};
use super::statements::Statement;
use super::Session;
use crate::pg::codec::Frame;
use crate::pg::msg::{self, Severity};
use crate::pg::sqltext;

impl Session {
    /// A Parse, Bind or Describe of a statement name that a Parse or Close in an earlier batch still in flight
    /// changed (transaction pooling): it waits for that batch's answers, which say whether the change ran, so
    /// that it names the statement PostgreSQL would (a batch pipelined behind a failing one would otherwise bind
    /// what the skipped Parse made, or miss what the skipped Close left). A Parse of a name the client has waits
    /// for every earlier batch of the client's: it is refused as a name in use (42P05) only if no drop of every
    /// statement ran before it, and a multi-statement query can hold one the proxy does not see coming.
    pub(super) fn name_in_doubt(&self, frame: &Frame) -> bool {
        // Nothing in flight (the usual case for a Bind): no doubt, and the message is not read twice.
        if !self.transaction_pooling || self.outstanding.is_empty() {
            return false;
        }
        let name = match frame.tag() {
            b'P' => match msg::parse_fields(frame.body()) {
                Some((name, _)) if self.in_use(name) => return self.outstanding.client_batch_in_flight(),
                parsed => parsed.map(|(name, _)| name),
            },
            // An SQL DEALLOCATE of one of the client's names is answered here once nothing is in flight.
            // (Not inside an open batch or a COPY: the server answers nothing more until the client goes on, and
            // the query goes to the server then anyway.)
            b'Q' => return !self.unsynced && !self.copy_in && self.deallocates_own(frame).is_some(),
            b'B' => msg::bind_fields(frame.body()).map(|(_, name, _)| name),
            b'D' => match msg::target_fields(frame.body()) {
                Some((b'S', name)) => Some(name),
                _ => None,
            },
            _ => None,
        };
        name.is_some_and(|name| !name.is_empty() && self.outstanding.renames_in_earlier_batch(name))
    }

    /// Parse of a named statement: answered locally when the server already has it. `batch_begins`: it is the
    /// first message since a Sync or a simple query (the transaction status is then the server's).
    pub(super) fn parse(&mut self, frame: Frame, batch_begins: bool) {
        let Some((name, rest)) = msg::parse_fields(frame.body()) else {
            return self.forward(frame, Expect::Parse);
        };
        if name.is_empty() {
            // Bound and executed on this connection, in this unit. The server's unnamed statement is now this
            // client's (a Parse that fails leaves none; one skipped after an error leaves the one before, which
            // is then no one's: `server`).
            let key = self.key;
            self.server_conn().unnamed_owner = Some(key);
            let head = Head::of(rest);
            self.note_leftovers(leftovers::head_leftovers(head));
            self.unnamed_drops_all = text_drops_all(head);
            let set = text_set(head);
            if set.is_some() || self.extended_sets.is_some() {
                self.extended_sets.get_or_insert_default().prepared("", set);
            }
            return self.forward(frame, Expect::Parse);
        }
        if self.tx_status == b'E' && self.outstanding.is_empty() && batch_begins && !ends_transaction(rest) {
            // A failed transaction, surely (nothing has gone since its ReadyForQuery): PostgreSQL refuses the
            // Parse of anything but COMMIT, ROLLBACK (TO SAVEPOINT) or PREPARE TRANSACTION, makes no statement,
            // and ignores what follows up to the Sync. Answered here, where the statement may be on the server
            // already (then nothing would go there to fail).
            msg::error(&mut self.to_client, Severity::Error, "25P02", ABORTED, None);
            self.server_skipping = true;
            return;
        }
        if self.in_use(name) {
            // PostgreSQL refuses a name in use (42P05), and the refusal fails the transaction: the server refuses
            // a second Parse of the check statement the same way (the Close behind it is skipped, and the one
            // before the next check clears what is left). The client's name keeps its statement. The check's
            // text is one PostgreSQL parses in a failed transaction when the client's is (else 25P02 first).
            let check = if ends_transaction(rest) { CHECK_PARSE_EXIT } else { CHECK_PARSE };
            return self.check_with(check, [Expect::CheckParse, Expect::Duplicate(name.into())]);
        }
        let statement = self.shared.statements.intern(rest);
        let renamed = self.statements.rename(name, Some(statement.clone()));
        let present = self.server_conn().prepared.touch(&statement.name);
        let unsure = self.unsure_of(&statement.name) != Unsure::No;
        if present && !unsure {
            // A failed transaction (this Parse is not the batch's first message: something before it may end
            // it), or a batch of the client's still in flight that may leave one: PostgreSQL may refuse the Parse
            // (25P02), so the server is asked, with a statement of its own.
            // Closed before too (a Close of no statement is no error, and runs in a failed transaction): one
            // left there would make the check fail with 42P05.
            if (self.tx_status == b'E' || self.outstanding.client_batch_in_flight()) && !ends_transaction(rest) {
                return self.check_with(CHECK_PARSE, [Expect::CheckedParse(renamed)]);
            }
            self.outstanding.push(Expect::Renamed(b'1', renamed));
            return;
        }
        self.make_room_for(&statement, present, unsure);
        self.to_server.extend_from_slice(&statement.parse);
        self.outstanding.push(Expect::ParseNamed { created: statement.name.clone(), renamed });
    }

    /// Parses of the check statement `check` (one per answer owed, queued as `answers`), between two Closes of
    /// it: the one before clears a check statement left there, the one after the one made here.
    fn check_with<const N: usize>(&mut self, check: &[u8], answers: [Expect; N]) {
        msg::close_statement(&mut self.to_server, CHECK_NAME);
        self.outstanding.push(Expect::CheckClose);
        for answer in answers {
            self.to_server.extend_from_slice(check);
            self.outstanding.push(answer);
        }
        msg::close_statement(&mut self.to_server, CHECK_NAME);
        self.outstanding.push(Expect::CheckClose);
    }

    /// Bind to a named statement: renamed, and the statement created first if this server lacks it.
    pub(super) fn bind(&mut self, frame: Frame) {
        let Some((portal, name, rest)) = msg::bind_fields(frame.body()) else {
            return self.forward(frame, Expect::Bind);
        };
        let statement = self.known(name);
        let drops = statement.as_ref().map_or(name.is_empty() && self.unnamed_drops_all, |s| s.drops_all);
        self.note_drop_portal(portal, drops);
        let set = match &statement {
            Some(s) => s.set.as_ref(),
            None if name.is_empty() => self.extended_sets.as_ref().and_then(|e| e.of_statement("")),
            None => None,
        };
        if set.is_some() || self.extended_sets.is_some() {
            let set = set.cloned();
            self.extended_sets.get_or_insert_default().bound(portal, set);
        }
        let Some(statement) = statement else {
            if let Some(unknown) = self.foreign_name(name) {
                msg::bind_renamed(&mut self.to_server, portal, &unknown, rest);
                return self.outstanding.push(Expect::Bind);
            }
            return self.forward(frame, Expect::Bind);
        };
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

    pub(super) fn drops_all_at(&self, portal: &str) -> bool {
        self.drop_portals.as_ref().is_some_and(|portals| portals.iter().any(|p| &**p == portal))
    }

    /// Whether the server may not have what the proxy takes it to have of the statement `name` by the time what
    /// is sent now runs: a drop of every statement is on its way ahead of it, a Parse or Close of it in an
    /// earlier batch still in flight may be skipped after an error there, or an error left that unknown.
    fn unsure_of(&mut self, name: &str) -> Unsure {
        match self.outstanding.unsure_of(name) {
            _ if self.server_conn().statements_uncertain => Unsure::Dropped,
            unsure => unsure,
        }
    }

    pub(super) fn describe(&mut self, frame: Frame) {
        let (statement, unknown) = match msg::target_fields(frame.body()) {
            Some((b'S', name)) => (self.known(name), self.foreign_name(name)),
            _ => (None, None),
        };
        let Some(statement) = statement else {
            if let Some(unknown) = unknown {
                msg::describe_statement(&mut self.to_server, &unknown);
                return self.outstanding.push(Expect::Describe);
            }
            return self.forward(frame, Expect::Describe);
        };
        self.ensure_prepared(&statement);
        msg::describe_statement(&mut self.to_server, &statement.name);
        self.outstanding.push(Expect::Describe);
    }

    /// Close of a named statement is answered by the proxy: other clients may still use it on the server. As
    /// nothing goes to the server, the batch has not begun there (a Parse behind it in a failed transaction is
    /// refused as the batch's first message would be).
    pub(super) fn close(&mut self, frame: Frame) {
        match msg::target_fields(frame.body()) {
            Some((b'S', name)) if !name.is_empty() => {
                let renamed = self.statements.rename(name, None);
                self.outstanding.push(Expect::Renamed(b'3', renamed));
            }
            _ => {
                self.unsynced = true;
                self.forward(frame, Expect::Close)
            }
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

    /// Whether a Parse of `name` is refused as a name in use (42P05): the client has it (`known`), and no drop
    /// the proxy did not follow may have taken it.
    pub(super) fn in_use(&self, name: &str) -> bool {
        !name.is_empty() && !self.statements.unsure() && self.known(name).is_some()
    }

    fn ensure_prepared(&mut self, statement: &Arc<Statement>) {
        let present = self.server_conn().prepared.touch(&statement.name);
        let unsure = self.unsure_of(&statement.name);
        if present && unsure == Unsure::No {
            return;
        }
        self.make_room_for(statement, present, unsure != Unsure::No);
        self.to_server.extend_from_slice(&statement.parse);
        let name = statement.name.clone();
        // Made again only for an earlier batch's doubt, it changes nothing of the record (`Expect::Remade`).
        let remade = present && unsure == Unsure::EarlierBatch;
        self.outstanding.push(if remade { Expect::Remade(name) } else { Expect::InjectedParse(name) });
    }

    /// Before a Parse of `statement` goes to the server: room in its set when the server lacks it. When it is
    /// `present` there as far as the proxy knows, it may be gone by the time the Parse runs; and when the proxy is
    /// `unsure` (`unsure_of`), one it takes for absent may be there: either way it is closed first, which is no
    /// error when it is gone, so the Parse works either way.
    fn make_room_for(&mut self, statement: &Arc<Statement>, present: bool, unsure: bool) {
        if !present {
            self.evict_for(statement);
        }
        if present || unsure {
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

const ABORTED: &str = "current transaction is aborted, commands ignored until end of transaction block";

impl Session {
    /// The client's statement name a simple query deallocates, when it is `DEALLOCATE [PREPARE] name` alone and
    /// the client has that name (transaction pooling: on the server the statement has a proxy-wide name, and the
    /// query would fail there with 26000).
    pub(super) fn deallocates_own(&self, frame: &Frame) -> Option<String> {
        if !self.transaction_pooling || !sqltext::keyword_is(frame.body(), b"deallocate") {
            return None;
        }
        let name = deallocated_name(msg::query_text(frame.body())?)?;
        self.statements.get(&name).is_some().then_some(name)
    }

    /// Answers `frame` when it is an SQL DEALLOCATE of one of the client's names (`deallocates_own`), as
    /// PostgreSQL would (the caller sees that nothing of the client's is in flight and no batch is open): the
    /// name goes, or, in a failed transaction, 25P02. DEALLOCATE is not transactional: the server's transaction
    /// is as it would be.
    pub(super) fn deallocate_here(&mut self, frame: &Frame) -> bool {
        let Some(name) = self.deallocates_own(frame) else { return false };
        if self.tx_status == b'E' {
            msg::error(&mut self.to_client, Severity::Error, "25P02", ABORTED, None);
        } else {
            self.statements.remove(&name);
            msg::command_complete(&mut self.to_client, "DEALLOCATE");
        }
        msg::ready_for_query(&mut self.to_client, self.tx_status);
        true
    }
}

/// The statement the server parses to check a Parse it may refuse (`Expect::CheckedParse`), under a proxy-wide
/// name no client can bind (`foreign_name`). `SELECT`, not the empty query: PostgreSQL parses an empty query
/// even in a failed transaction.
const CHECK_NAME: &str = "hapool_check";
const CHECK_PARSE: &[u8] = b"P\0\0\0\x1ahapool_check\0SELECT\0\0\0";
/// The same with a text PostgreSQL parses in a failed transaction, for a name in use whose text it parses there.
const CHECK_PARSE_EXIT: &[u8] = b"P\0\0\0\x1ahapool_check\0COMMIT\0\0\0";

impl Session {
    /// A statement name this client may not bind or describe as it stands: a proxy-wide name (`hapool_…`, visible
    /// in `pg_prepared_statements`), or the unnamed statement when another client's Parse made it (the server
    /// keeps it across transactions). It goes as one no statement has, so that the server answers "does not
    /// exist", as it would to this client alone, instead of running a statement made for another client (its
    /// effects would then go unnoticed: a `set_config` in it, say, or a DELETE). Other unknown names go as they
    /// are.
    fn foreign_name(&mut self, name: &str) -> Option<String> {
        if name.is_empty() {
            let key = self.key;
            return (self.server_conn().unnamed_owner != Some(key))
                .then(|| "(the unnamed statement of another client)".to_string());
        }
        name.starts_with("hapool_").then(|| format!("{name} (not prepared by this client)"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_check_is_one_whole_parse_of_its_own_name() {
        let mut buf = bytes::BytesMut::from(super::CHECK_PARSE);
        let frame = crate::pg::codec::decode(&mut buf, 1 << 20).unwrap().expect("a whole message");
        assert!(buf.is_empty(), "nothing left over");
        assert_eq!(frame.tag(), b'P');
        let (name, rest) = crate::pg::msg::parse_fields(frame.body()).unwrap();
        assert_eq!(name, super::CHECK_NAME);
        assert_eq!(rest, b"SELECT\0\0\0", "the text, and no parameter types");
        assert!(!super::ends_transaction(rest), "refused in a failed transaction");
    }

    #[test]
    fn the_exit_check_is_one_whole_parse_postgresql_takes_in_a_failed_transaction() {
        let mut buf = bytes::BytesMut::from(super::CHECK_PARSE_EXIT);
        let frame = crate::pg::codec::decode(&mut buf, 1 << 20).unwrap().expect("a whole message");
        assert!(buf.is_empty());
        let (name, rest) = crate::pg::msg::parse_fields(frame.body()).unwrap();
        assert_eq!(name, super::CHECK_NAME);
        assert!(super::ends_transaction(rest));
    }
}
