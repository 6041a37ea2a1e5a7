//! What a client's statements change on the server connection they run on: a drop of every prepared statement,
//! the SETs and RESETs the session follows (`unreported`), and what it does not follow (`leftovers`: the
//! connection is then cleared before another client gets it).

use super::expect::Expect;
use super::leftovers::{self, Head, Leftovers, Owned};
use super::{unreported, Session};
use crate::pg::msg;
use crate::pg::sqltext;

impl Session {
    /// Follows the simple-query statements that change what a server connection holds (transaction pooling):
    /// `DISCARD ALL` and `DEALLOCATE ALL` drop its prepared statements; plain SETs and RESETs of
    /// parameters the server does not report are followed (`unreported`); anything else a client leaves on the
    /// connection marks it to be cleared before another client gets it (`leftovers`). The text is read only
    /// when the first word is one of theirs (or another statement follows a `;`). What the server owes for it:
    /// a drop that may run is marked (`Expect::QueryDropAll`).
    pub(super) fn follow_statement(&mut self, body: &[u8]) -> Expect {
        // Past leading comments, as PostgreSQL reads it (a comment also ends a keyword: `DISCARD/**/ALL`).
        let head = Head::of(body);
        if head.is(b"set") || head.is(b"reset") {
            if let Some(change) = self.follow_unreported(body) {
                return Expect::QuerySet(Box::new(change)); // the session follows it: nothing left behind
            }
        }
        let mut left = leftovers::head_leftovers(head);
        let mut expect = Expect::Query;
        if drops_all_after(head.keyword(), body) {
            let alone = leftovers::one_statement(body);
            let outcome = drop_outcome(head.is(b"discard"), self.outstanding.is_empty(), self.tx_status, alone);
            match outcome {
                Outcome::Fails => {}
                // What the server will have is unknown: the connection is replaced once the client is done.
                Outcome::Unknown => self.server_conn().broken = true,
                Outcome::Drops => self.forget_statements(),
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

    /// The SETs and RESETs the session follows in a query of several statements (`unreported::several`).
    pub(super) fn follow_several(&self, body: &[u8]) -> Option<unreported::Change> {
        msg::query_text(body).and_then(unreported::several)
    }

    /// The server drops every prepared statement: the client's names and what the proxy knows of the
    /// connection's statements go too. What `DISCARD ALL` does to settings is taken only once its CommandComplete
    /// says it ran (`statements_dropped`): one cancelled or timed out leaves them as they were.
    fn forget_statements(&mut self) {
        self.statements.clear();
        self.server_conn().prepared.clear();
    }

    /// Session pooling: what a client leaves is cleared by `DISCARD ALL` when it leaves, but a library it loaded
    /// stays in the server process: that connection is closed instead.
    pub(super) fn replace_if_loading(&mut self, head: Head<'_>) {
        if leftovers::loads_library(head) {
            self.server_conn().broken = true;
        }
    }

    /// The server connection now holds `kinds` of session state of this client's that the proxy does not follow.
    pub(super) fn note_leftovers(&mut self, kinds: Leftovers) {
        if kinds.is_empty() {
            return;
        }
        if kinds.contains(Leftovers::PREPARED) {
            // An SQL DEALLOCATE of a name, or one run inside DO or EXECUTE, may drop what a client name stands
            // for: the client's names are unsure until the next drop the session follows.
            self.statements.mark_unsure();
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

    /// A plain SET or RESET of an unreported parameter: its change applies when the statement succeeds
    /// (`Expect::QuerySet`, read at its ReadyForQuery; inside a transaction block, once that commits: see
    /// `settled`), and every later connection of the client is brought to it. The change, when followed.
    pub(super) fn follow_unreported(&self, body: &[u8]) -> Option<unreported::Change> {
        msg::query_text(body).and_then(unreported::change)
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
pub fn text_drops_all(head: Head<'_>) -> bool {
    drops_all_after(head.keyword(), head.body())
}

/// The change a query body (or a Parse's text part) makes when it is a plain SET or RESET the session follows
/// (`unreported::change`). The keyword first, as for `text_drops_all`.
pub fn text_set(head: Head<'_>) -> Option<unreported::Change> {
    (head.is(b"set") || head.is(b"reset")).then(|| msg::query_text(head.body()).and_then(unreported::change)).flatten()
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
    use crate::pg::session::leftovers::Head;

    #[test]
    fn statement_texts_that_drop_every_statement() {
        // Query bodies and the text part of Parse messages (text, NUL, parameter types).
        for body in [&b"DEALLOCATE ALL\0"[..], b"/* pool reset */ discard all\0", b"DEALLOCATE PREPARE ALL\0\0\0"] {
            assert!(text_drops_all(Head::of(body)), "{}", String::from_utf8_lossy(body));
        }
        for body in [&b"DEALLOCATE s1\0"[..], b"SELECT 'DISCARD ALL'\0", b"DISCARD TEMP\0\0\0", b""] {
            assert!(!text_drops_all(Head::of(body)), "{}", String::from_utf8_lossy(body));
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
