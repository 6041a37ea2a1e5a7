//! What a client's statements leave on a server connection that the proxy does not follow: a session-level
//! `SET` or `RESET` of a parameter the server does not report that the session does not follow itself (see
//! `unreported`: inside a transaction, in a multi-statement query, through the extended protocol), a role, a
//! `LISTEN`, a temporary table, an SQL-level `PREPARE`, a cursor `WITH HOLD`. In transaction pooling such a
//! connection is cleared of them (`Leftovers::reset_sql`) before another client gets it, so nothing of one
//! client's session reaches another. Pure: the session asks, the checkout resets.

use super::params;
use crate::pg::msg;

/// Kinds of session state left on a server connection (a set of bits).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Leftovers(u8);

impl Leftovers {
    pub const NONE: Self = Self(0);
    pub const SETTINGS: Self = Self(1);
    pub const LISTEN: Self = Self(2);
    pub const TEMP: Self = Self(4);
    /// SQL-level prepared statements. Clearing them (`DEALLOCATE ALL`) drops the proxy's protocol-level
    /// statements on that connection too.
    pub const PREPARED: Self = Self(8);
    pub const CURSORS: Self = Self(16);
    /// Every kind (what `DISCARD ALL` would clear, short of plans, sequences and advisory locks).
    pub const ALL: Self = Self(31);

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn with(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// The statements that clear these, for one simple query. `RESET ALL` leaves the role and the session
    /// authorization alone, so they come first (any user may reset both).
    pub fn reset_sql(self, sql: &mut String) {
        let parts = [
            (Self::CURSORS, "CLOSE ALL;"),
            (Self::LISTEN, "UNLISTEN *;"),
            (Self::TEMP, "DISCARD TEMP;"),
            (Self::PREPARED, "DEALLOCATE ALL;"),
            (Self::SETTINGS, "RESET ROLE;RESET SESSION AUTHORIZATION;RESET ALL;"),
        ];
        for (kind, statements) in parts {
            if self.contains(kind) {
                sql.push_str(statements);
            }
        }
    }
}

/// Who left what on a server connection: the client (by its cancel key) and the kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owned {
    pub owner: (i32, i32),
    pub kinds: Leftovers,
}

/// `leftovers` of a Query body, or of the text part of a Parse (text, NUL, parameter types). The text is read
/// only when the first word is one of the statements concerned or another statement follows a `;`: every query
/// passes here.
pub fn query_leftovers(body: &[u8]) -> Leftovers {
    query_leftovers_after(msg::first_word(body), body)
}

/// `query_leftovers` when the caller has the body's first word already.
pub fn query_leftovers_after(word: &[u8], body: &[u8]) -> Leftovers {
    let maybe = [&b"set"[..], b"reset", b"listen", b"create", b"prepare", b"declare"]
        .iter()
        .any(|w| word.eq_ignore_ascii_case(w))
        || holds_another_statement(body);
    match msg::query_text(body) {
        Some(sql) if maybe => leftovers(sql),
        _ => Leftovers::NONE,
    }
}

/// Whether something other than whitespace follows a `;` in the text (up to its NUL). pgbench and many
/// drivers end a single statement with `;`: that alone must not make every query's text be read.
fn holds_another_statement(body: &[u8]) -> bool {
    let text = body.split(|&b| b == 0).next().unwrap_or_default();
    let Some(at) = text.iter().position(|&b| b == b';') else { return false };
    text[at + 1..].iter().any(|&b| !matches!(b, b';' | b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c'))
}

/// What the statements of a simple query (or of a Parse) leave behind for the rest of the session. Errs
/// towards more: a needless reset costs the next client one round trip, a missed one hands it a stranger's
/// state. Statements are cut at every `;`, quoted or not: a false cut can only find something that is not
/// there. A comment before the statement hides it (as it does from PgBouncer).
pub fn leftovers(sql: &str) -> Leftovers {
    sql.split(';')
        .map(|s| s.trim_matches(sql_space))
        .filter(|s| !s.is_empty())
        .fold(Leftovers::NONE, |all, s| all.with(statement_leftovers(s)))
}

/// One statement. A plain autocommit SET the session follows (`unreported`) is not noted by the session, but
/// counts here: the same text inside a transaction, or in a Parse, is not followed.
fn statement_leftovers(statement: &str) -> Leftovers {
    // The verb ends where `msg::first_word` ends it (at whitespace only), so both see the same statement.
    let (verb, rest) = statement.split_once(sql_space).unwrap_or((statement, ""));
    let mut words = rest.split(|c: char| sql_space(c) || c == '=').filter(|w| !w.is_empty());
    let is = |word: &str, expected: &str| word.eq_ignore_ascii_case(expected);
    let set = is(verb, "set");
    let left = if set || is(verb, "reset") {
        setting_left(&mut words, set).then_some(Leftovers::SETTINGS)
    } else if is(verb, "listen") {
        Some(Leftovers::LISTEN)
    } else if is(verb, "prepare") {
        (!words.next().is_some_and(|w| is(w, "transaction"))).then_some(Leftovers::PREPARED)
    } else if is(verb, "create") {
        creates_temp(words).then_some(Leftovers::TEMP)
    } else if is(verb, "declare") {
        contains_words(statement, "with", "hold").then_some(Leftovers::CURSORS)
    } else {
        None
    };
    left.unwrap_or(Leftovers::NONE)
}

/// Whether a SET or RESET (its words after the verb in `words`) changes, for the session, something the
/// proxy does not follow.
fn setting_left<'a>(words: &mut impl Iterator<Item = &'a str>, set: bool) -> bool {
    let mut name = words.next().unwrap_or_default().trim_matches('"');
    if set && name.eq_ignore_ascii_case("session") {
        // SET SESSION name …; SET SESSION AUTHORIZATION / CHARACTERISTICS fall through as names of their own.
        name = words.next().unwrap_or_default().trim_matches('"');
    }
    // A reported parameter is followed from the server's reports, whatever the form.
    !(params::is_tracked(name) || set && params::set_leaves_only_reported(name))
}

/// Whether the words after CREATE make a temporary object: `[OR REPLACE] [GLOBAL | LOCAL] {TEMP | TEMPORARY}`.
fn creates_temp<'a>(words: impl Iterator<Item = &'a str>) -> bool {
    for word in words {
        let is = |expected: &str| word.eq_ignore_ascii_case(expected);
        if is("temp") || is("temporary") {
            return true;
        }
        if !(is("or") || is("replace") || is("global") || is("local")) {
            return false;
        }
    }
    false
}

/// SQL's whitespace, as PostgreSQL's scanner and `msg::first_word` have it (not Unicode's).
fn sql_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// Whether `first` is followed by `second` somewhere in `text`, as words (case-insensitive).
fn contains_words(text: &str, first: &str, second: &str) -> bool {
    let mut words = text.split(sql_space).filter(|w| !w.is_empty()).peekable();
    while let Some(word) = words.next() {
        if word.eq_ignore_ascii_case(first) && words.peek().is_some_and(|w| w.eq_ignore_ascii_case(second)) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_each_statement_leaves_behind() {
        let (n, s, l, t, p, c) = (
            Leftovers::NONE,
            Leftovers::SETTINGS,
            Leftovers::LISTEN,
            Leftovers::TEMP,
            Leftovers::PREPARED,
            Leftovers::CURSORS,
        );
        let cases = [
            ("SELECT 1", n),
            ("", n),
            (";", n),
            ("SET statement_timeout = '5s'", s),
            ("set statement_timeout to 5000", s),
            ("SET statement_timeout=5000", s),
            ("SET SESSION work_mem = '64MB'", s),
            ("SET ROLE reporting", s),
            ("SET SESSION AUTHORIZATION app", s),
            ("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE", s),
            ("RESET statement_timeout", s),
            ("RESET ALL", s),
            ("RESET ROLE", s),
            ("SET LOCAL statement_timeout = '1s'", n),
            ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", n),
            ("SET CONSTRAINTS ALL DEFERRED", n),
            ("SET application_name = 'x'", n),
            ("SET \"TimeZone\" = 'UTC'", n),
            ("SET TIME ZONE 'UTC'", n),
            ("SET NAMES 'UTF8'", n),
            ("RESET DateStyle", n),
            ("SET search_path = s1, public", s),
            ("SET search_path = s1; SELECT 1", s),
            ("RESET search_path", s),
            ("SET search_path TO", s),
            ("SELECT 1; SET statement_timeout = 0", s),
            ("BEGIN; SET work_mem = '1GB'; COMMIT", s),
            ("BEGIN; SET LOCAL work_mem = '1GB'; COMMIT;", n),
            ("SELECT 'a;set x=1'", s), // a false cut: a needless reset, never a missed one
            ("  \n SET\tstatement_timeout = 1", s),
            ("LISTEN jobs", l),
            ("UNLISTEN *", n),
            ("CREATE TEMP TABLE t (x int)", t),
            ("create temporary view v as select 1", t),
            ("CREATE LOCAL TEMP TABLE t (x int)", t),
            ("CREATE OR REPLACE TEMP VIEW v AS SELECT 1", t),
            ("CREATE TABLE temp (x int)", n),
            ("CREATE TABLE t (temp int)", n),
            ("PREPARE q (int) AS SELECT $1", p),
            ("PREPARE TRANSACTION 'x'", n),
            ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", c),
            ("DECLARE c CURSOR FOR SELECT 1", n),
            ("LISTEN a; CREATE TEMP TABLE t (x int); SET work_mem = '1GB'", l.with(t).with(s)),
        ];
        for (sql, want) in cases {
            assert_eq!(leftovers(sql), want, "{sql:?}");
        }
    }

    #[test]
    fn query_bodies_and_parse_texts() {
        assert_eq!(query_leftovers(b"SET work_mem = '1GB'\0"), Leftovers::SETTINGS);
        assert_eq!(query_leftovers(b"SELECT 1; RESET ALL\0"), Leftovers::SETTINGS);
        let select = b"SELECT abalance FROM pgbench_accounts WHERE aid = $1\0\0\x01\0\0\0\x17";
        assert!(query_leftovers(select).is_empty());
        assert!(query_leftovers(b"SET LOCAL work_mem = '1GB'\0").is_empty());
        // A parameter type's bytes may hold a ';' (OID 59): the text decides.
        assert!(query_leftovers(b"SELECT $1\0\0\x01\0\0\0\x3b").is_empty());
        assert!(query_leftovers(b"SET work_mem = '1GB'").is_empty(), "no NUL: not a message body");
        // A single statement's closing ';' does not make its text be read; a second statement does.
        assert!(!holds_another_statement(b"SELECT abalance FROM pgbench_accounts WHERE aid = 7;\0"));
        assert!(!holds_another_statement(b"SELECT 1; ;\n\0"));
        assert!(holds_another_statement(b"SELECT 1; RESET ALL\0"));
        assert!(!holds_another_statement(b"SELECT $1;\0\0\x01\0\0\0\x17"), "the parameter types are not text");
    }

    /// Random statements from the words that matter (fixed seed): never a panic, and a statement keeps what it
    /// leaves whatever comes before it in the same query.
    #[test]
    fn random_statements_never_panic_and_what_they_leave_adds_up() {
        let vocabulary = [
            "SET",
            "RESET",
            "set",
            "LOCAL",
            "SESSION",
            "search_path",
            "TimeZone",
            "work_mem",
            "=",
            "TO",
            "'x;y'",
            "\"q\"",
            "ALL",
            "ROLE",
            "LISTEN",
            "CREATE",
            "TEMP",
            "TABLE",
            "PREPARE",
            "DECLARE",
            "WITH",
            "HOLD",
            ";",
            " ",
            "\t",
            "\u{a0}",
            "\x0b",
            "é",
            "",
        ];
        let mut next = crate::testutil::xorshift(0x51_7cc1_b727_220au64);
        let mut statement = || {
            let words = next() % 7;
            (0..words).map(|_| vocabulary[next() as usize % vocabulary.len()]).collect::<Vec<_>>().join(" ")
        };
        for _ in 0..20_000 {
            let (a, b) = (statement(), statement());
            let both = leftovers(&format!("{a};{b}"));
            let _ = super::super::unreported::change(&a); // never a panic either
            assert!(both.contains(leftovers(&b)) && both.contains(leftovers(&a)), "{a:?} ; {b:?}");
            let mut body = b.clone().into_bytes();
            body.push(0);
            assert_eq!(query_leftovers(&body), leftovers(&b), "{b:?}");
        }
    }

    #[test]
    fn resets_clear_what_was_left_in_an_order_that_works() {
        let mut sql = String::new();
        Leftovers::SETTINGS.with(Leftovers::LISTEN).reset_sql(&mut sql);
        assert_eq!(sql, "UNLISTEN *;RESET ROLE;RESET SESSION AUTHORIZATION;RESET ALL;");
        sql.clear();
        Leftovers::ALL.reset_sql(&mut sql);
        assert_eq!(
            sql,
            "CLOSE ALL;UNLISTEN *;DISCARD TEMP;DEALLOCATE ALL;RESET ROLE;RESET SESSION AUTHORIZATION;RESET ALL;"
        );
        assert!(Leftovers::ALL.contains(Leftovers::PREPARED) && !Leftovers::TEMP.contains(Leftovers::ALL));
    }
}
