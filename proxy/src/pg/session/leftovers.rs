//! What a client's statements leave on a server connection that the proxy does not follow: a session-level
//! `SET` or `RESET` of a parameter the server does not report (behind a comment; one the
//! session follows for its client, among other statements or through the extended protocol, still counts, so
//! that the connection is cleared for the next client), `set_config(…, false)`, a role, a `LISTEN`, a temporary table (`CREATE TEMP …`, `SELECT … INTO
//! TEMP`), an SQL-level `PREPARE`, a cursor `WITH HOLD`, a session-level advisory lock. In transaction pooling
//! such a connection is cleared of them (`Leftovers::reset_sql`) before another client gets it, so nothing of
//! one client's session reaches another. Pure: the session asks, the checkout resets.

use super::params;
use crate::pg::msg;
use crate::pg::sqltext::{self, is_ident, is_space, skip_quoted, starts_with_ci};

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
    /// Session-level advisory locks (`pg_advisory_lock`, `pg_try_advisory_lock`, their `_shared` forms).
    pub const ADVISORY: Self = Self(32);
    /// Every kind a reset clears (what `DISCARD ALL` would clear, short of plans and sequences).
    pub const ALL: Self = Self(63);
    /// What a call of a built-in function may leave, unread: every kind but SQL-level prepared statements,
    /// which no built-in function makes (those that run SQL, as `query_to_xml`, run it read-only). So a
    /// connection cleared of it keeps the statements the proxy shares between clients.
    pub const CALLED: Self = Self(63 & !8);
    /// A library loaded into the server process (`LOAD`): nothing unloads it, so the connection is replaced.
    pub const LIBRARY: Self = Self(64);

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
            (Self::ADVISORY, "SELECT pg_catalog.pg_advisory_unlock_all();"),
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

/// Statements that cannot hold a `SELECT … INTO` (nor, so, an `INTO TEMP`).
const DML: [&[u8]; 3] = [b"insert", b"update", b"delete"];

/// A Query body, or the text part of a Parse (text, NUL, parameter types), with what every reader of it looks at
/// first: its text (up to the NUL) and the text's leading keyword, past comments. Read once per query and handed
/// to each reader.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    body: &'a [u8],
    text: &'a [u8],
    keyword: &'a [u8],
}

impl<'a> Head<'a> {
    pub fn of(body: &'a [u8]) -> Self {
        let text = text_of(body);
        Self { body, text, keyword: sqltext::leading_keyword(text) }
    }

    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    pub fn keyword(&self) -> &'a [u8] {
        self.keyword
    }

    /// Whether the leading keyword is `word` (any case).
    pub fn is(&self, word: &[u8]) -> bool {
        self.keyword.eq_ignore_ascii_case(word)
    }
}

/// `leftovers` of a Query body, or of the text part of a Parse (`head_leftovers`).
pub fn query_leftovers(body: &[u8]) -> Leftovers {
    head_leftovers(Head::of(body))
}

/// `leftovers` of a query read as far as its head. Every query passes here: the text is read as statements only
/// when its keyword (past leading comments: routing hints, tracing tags) is one of the statements concerned, or
/// another statement follows a `;`; otherwise only scanned for the names `named_state` looks for. One statement
/// has one keyword, so a query of one statement behind comments costs what it costs without them.
pub fn head_leftovers(head: Head<'_>) -> Leftovers {
    let Head { body, text, keyword } = head;
    let maybe = [
        &b"set"[..],
        b"reset",
        b"listen",
        b"create",
        b"prepare",
        b"declare",
        b"deallocate",
        b"discard",
        b"load",
        b"do",
        b"execute",
        b"explain",
    ]
    .iter()
    .any(|w| keyword.eq_ignore_ascii_case(w))
        || holds_another_statement(text);
    if !maybe {
        // Most queries end here, their text not even checked as UTF-8. No NUL: not a message body. PostgreSQL
        // refuses `SELECT … INTO` inside an INSERT, UPDATE or DELETE ("not allowed here"): in those only the
        // names with a `_` are looked for (an INSERT's text is full of `i`s: `INTO`, `id`).
        let dml = matches!(keyword.first().map(u8::to_ascii_lowercase), Some(b'i' | b'u' | b'd'))
            && DML.iter().any(|w| keyword.eq_ignore_ascii_case(w));
        let into = !dml;
        return if text.len() < body.len() { named_state(text, into) } else { Leftovers::NONE };
    }
    msg::query_text(body).map_or(Leftovers::NONE, leftovers)
}

/// Whether a query loads a library (`LOAD`), read as `query_leftovers` reads it, without its scan for names: asked
/// of every query in session pooling, where nothing else a client leaves outlasts its `DISCARD ALL`.
pub fn loads_library(head: Head<'_>) -> bool {
    (head.is(b"load") || holds_another_statement(head.text))
        && msg::query_text(head.body).is_some_and(|sql| leftovers(sql).contains(Leftovers::LIBRARY))
}

/// Whether a query body (or a Parse's text part) holds one statement only.
pub fn one_statement(body: &[u8]) -> bool {
    !holds_another_statement(text_of(body))
}

/// The text of a query body: up to its NUL (a Parse's parameter types follow it).
fn text_of(body: &[u8]) -> &[u8] {
    &body[..memchr::memchr(0, body).unwrap_or(body.len())]
}

/// Whether something other than whitespace follows a `;` in the text. pgbench and many drivers end a single
/// statement with `;`: that alone must not make every query's text be read.
fn holds_another_statement(text: &[u8]) -> bool {
    let Some(at) = memchr::memchr(b';', text) else { return false };
    text[at + 1..].iter().any(|&b| b != b';' && !is_space(b))
}

/// What the statements of a simple query (or of a Parse) leave behind for the rest of the session. Errs
/// towards more: a needless reset costs the next client one round trip, a missed one hands it a stranger's
/// state. Two cuts into statements are read, and what either finds counts: at every `;`, quoted or not (a false
/// cut can only find something that is not there), and the lexer's (`sqltext::statements`: a `;` inside a
/// comment does not cut). When the lexer cannot read the text, a `;` inside a comment may have cut a
/// statement's head off: what follows each piece's last `*/` or line break is read as a statement too. Each
/// statement is read past its leading comments.
pub fn leftovers(sql: &str) -> Leftovers {
    let exact = sqltext::statements(sql);
    let unread = exact.is_none();
    let tails = sql
        .split(';')
        .filter(|_| unread)
        .flat_map(|piece| [piece.rsplit("*/").next(), piece.rsplit(['\n', '\r']).next()])
        .flatten();
    sql.split(';')
        .chain(exact.unwrap_or_default())
        .chain(tails)
        .map(sqltext::skip_leading_comments)
        .filter(|s| !s.is_empty())
        .fold(named_state(sql.as_bytes(), true), |all, s| all.with(statement_leftovers(s)))
}

/// What a query leaves through a call or a clause anywhere in it: `set_config(…)` unless plainly
/// transaction-local, a session-level advisory lock, `INTO [LOCAL | GLOBAL] TEMP[ORARY]`, an object named in the
/// session's temporary schema (`pg_temp.…`). It runs on every
/// query: a scan of the bytes that looks further only at a `_` or (with `into`) an `i` (found by `memchr`).
/// Names in a string or a comment count too (a needless reset, never a missed one).
fn named_state(text: &[u8], into: bool) -> Leftovers {
    if into {
        memchr::memchr3_iter(b'_', b'i', b'I', text).fold(Leftovers::NONE, |left, i| left.with(named_at(text, i)))
    } else {
        memchr::memchr_iter(b'_', text).fold(Leftovers::NONE, |left, i| left.with(named_at(text, i)))
    }
}

/// What the name or clause at `text[i]` (a `_`, `i` or `I`) leaves.
#[inline]
fn named_at(text: &[u8], i: usize) -> Leftovers {
    let rest = &text[i..];
    // A `_` is compared with the one name its next letter could begin (most `_` are in table and column names).
    let next = rest.get(1).map_or(0, u8::to_ascii_lowercase);
    match (rest[0], next) {
        (b'_', b'a') if starts_with_ci(rest, b"_advisory_lock") => Leftovers::ADVISORY,
        (b'_', b'c')
            if starts_with_ci(rest, b"_config")
                && i >= 3
                && text[i - 3..i].eq_ignore_ascii_case(b"set")
                && !local_set_config(&rest[b"_config".len()..]) =>
        {
            Leftovers::SETTINGS
        }
        (b'i' | b'I', _) if (i == 0 || !(is_ident(text[i - 1]) || text[i - 1] == b'.')) && into_temp(rest) => {
            Leftovers::TEMP
        }
        // The session's temporary schema named outright (`CREATE TABLE pg_temp.t`, `pg_temp.f()`): whatever is
        // created there is temporary without the word TEMP.
        (b'_', b't')
            if starts_with_ci(rest, b"_temp")
                && i >= 2
                && text[i - 2..i].eq_ignore_ascii_case(b"pg")
                && (i == 2 || !is_ident(text[i - 3]))
                && temp_schema_ends(&rest[b"_temp".len()..]) =>
        {
            Leftovers::TEMP
        }
        _ => Leftovers::NONE,
    }
}

/// Whether the text after `pg_temp` ends the schema's name: `pg_temp` itself, or `pg_temp_<n>`.
fn temp_schema_ends(after: &[u8]) -> bool {
    match after {
        [b'_', digit, ..] => digit.is_ascii_digit(),
        [c, ..] => !is_ident(*c),
        [] => true,
    }
}

/// Whether the call whose text follows `set_config` is plainly transaction-local: three arguments, the last
/// `true`. Anything else, or a call not read to its end, is taken for a session change.
fn local_set_config(call: &[u8]) -> bool {
    let b = &call[call.iter().take_while(|c| is_space(**c)).count()..];
    if b.first() != Some(&b'(') {
        return false;
    }
    let (mut depth, mut commas, mut arg, mut i) = (0, 0, 1, 0);
    while i < b.len() {
        match b[i] {
            quote @ (b'\'' | b'"') => match skip_quoted(b, i, quote) {
                Some(end) => {
                    i = end;
                    continue;
                }
                None => return false,
            },
            b'(' => depth += 1,
            b')' if depth == 1 => {
                let last = std::str::from_utf8(&b[arg..i]).unwrap_or_default().trim_matches(sql_space);
                return commas == 2 && ["true", "'true'", "'t'", "'on'"].iter().any(|t| last.eq_ignore_ascii_case(t));
            }
            b')' => depth -= 1,
            b',' if depth == 1 => {
                commas += 1;
                arg = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    false
}

/// Whether `rest` starts with `INTO [LOCAL | GLOBAL] TEMP[ORARY]` (a temporary table made by SELECT … INTO).
fn into_temp(rest: &[u8]) -> bool {
    let Some(mut rest) = after_word(rest, b"into") else { return false };
    if let Some(after) = after_word(rest, b"local").or_else(|| after_word(rest, b"global")) {
        rest = after;
    }
    [&b"temp"[..], b"temporary"]
        .iter()
        .any(|w| starts_with_ci(rest, w) && !rest.get(w.len()).is_some_and(|c| is_ident(*c)))
}

/// `text` past `word` and the whitespace after it, when it starts with that word (any case) and whitespace.
fn after_word<'a>(text: &'a [u8], word: &[u8]) -> Option<&'a [u8]> {
    let rest = text.get(word.len()..).filter(|_| starts_with_ci(text, word))?;
    let spaces = rest.iter().take_while(|c| is_space(**c)).count();
    (spaces > 0).then(|| &rest[spaces..])
}

/// What a fast-path function call (`F`, its body starting with the function's OID) may leave. A built-in
/// function (an OID below PostgreSQL's first one for user objects: libpq's large-object calls, `set_config`…):
/// `CALLED`. Any other may PREPARE through SPI: everything.
pub fn fast_path_leftovers(body: &[u8]) -> Leftovers {
    const FIRST_NORMAL_OBJECT_ID: u32 = 16384;
    match body.first_chunk::<4>() {
        Some(oid) if u32::from_be_bytes(*oid) < FIRST_NORMAL_OBJECT_ID => Leftovers::CALLED,
        _ => Leftovers::ALL,
    }
}

/// One statement. A plain SET the session follows alone in a simple query (`unreported`) is not noted by the
/// session, but counts here: among other statements or in a Parse, the connection is still cleared before
/// another client gets it.
fn statement_leftovers(statement: &str) -> Leftovers {
    // Words are separated by comments too (`CREATE /* x */ TEMP TABLE`, `SET/**/name`).
    let statement = &*sqltext::blank_comments(statement);
    // The verb ends where an identifier cannot go on (`EXECUTE"p"`, `LISTEN"ch"`, `explain(analyze)` are read
    // as PostgreSQL reads them).
    let verb_end = statement.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(statement.len());
    let (verb, rest) = statement.split_at(verb_end);
    let mut words = rest.split(|c: char| sql_space(c) || c == '=').filter(|w| !w.is_empty());
    let is = |word: &str, expected: &str| word.eq_ignore_ascii_case(expected);
    let set = is(verb, "set");
    // `EXPLAIN ANALYZE EXECUTE p`, `CREATE TABLE t AS EXECUTE p`: they run the statement, as EXECUTE does.
    let runs_prepared = (is(verb, "explain") || is(verb, "create"))
        && rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).any(|w| is(w, "execute"));
    let left = if runs_prepared {
        Some(Leftovers::ALL)
    } else if set || is(verb, "reset") {
        setting_left(&mut words, set).then_some(Leftovers::SETTINGS)
    } else if is(verb, "listen") {
        Some(Leftovers::LISTEN)
    } else if is(verb, "prepare") {
        (!words.next().is_some_and(|w| is(w, "transaction"))).then_some(Leftovers::PREPARED)
    } else if is(verb, "create") {
        creates_temp(words).then_some(Leftovers::TEMP)
    } else if is(verb, "declare") {
        contains_words(statement, "with", "hold").then_some(Leftovers::CURSORS)
    } else if is(verb, "load") {
        Some(Leftovers::LIBRARY)
    } else if is(verb, "do") || is(verb, "execute") {
        // An anonymous code block can leave anything (a temporary table, LISTEN, a SET…, a PREPARE made through
        // SPI): all of it is cleared. So can an SQL EXECUTE: of a statement prepared by SQL, or of one the proxy
        // prepared for some client through the protocol (they share one namespace on the server), and of any
        // function either calls.
        Some(Leftovers::ALL)
    } else if is(verb, "discard") || is(verb, "deallocate") {
        // What the proxy knows of the connection may be wrong after it (a simple query of DISCARD or DEALLOCATE
        // ALL alone is followed by the session instead, which drops this mark): DEALLOCATE, of all or of one by
        // name, may drop statements the proxy shares between clients; DISCARD ALL does that and resets every
        // setting. Another client gets the connection cleared, its statements prepared again and its settings
        // set again.
        let all = is(verb, "deallocate") || words.next().is_some_and(|w| is(w, "all"));
        let settings = if is(verb, "discard") { Leftovers::SETTINGS } else { Leftovers::NONE };
        all.then_some(Leftovers::PREPARED.with(settings))
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
    c.is_ascii() && is_space(c as u8)
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
        let (n, s, l, t, p, c, a) = (
            Leftovers::NONE,
            Leftovers::SETTINGS,
            Leftovers::LISTEN,
            Leftovers::TEMP,
            Leftovers::PREPARED,
            Leftovers::CURSORS,
            Leftovers::ADVISORY,
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
            // Behind comments, and a `;` inside a comment.
            ("/* hapool:primary */ SET work_mem = '1GB'", s),
            ("-- note\nSET work_mem = 1", s),
            ("/* a /* nested */ */LISTEN x", l),
            ("SELECT 1; /* a; b */ SET work_mem = 1", s),
            ("SELECT 1; -- a; b\nSET work_mem = 1", s),
            ("/* x */ SELECT 1", n),
            // The same where the lexer gives up (E'…', dollar quotes).
            ("/* x; y */ SET work_mem = E'1MB'", s),
            ("-- x; y\nLISTEN a; SELECT $$ x $$", l),
            ("/* SET work_mem = 1 */ SELECT 1", n),
            // Calls and clauses inside any statement.
            ("SELECT set_config('work_mem', '1GB', false)", s),
            ("select SET_CONFIG('app.user', '42', true)", n),
            ("SELECT set_config ( 'a', 'x,(y)', 'on' ), 1", n),
            ("SELECT set_config('a', 'b', is_local)", s),
            ("SELECT set_config('a', 'b')", s),
            ("SELECT set_config('a', 'b', true", s),
            ("SELECT set_config('a', 'b', true), set_config('c', 'd', false)", s),
            ("SELECT pg_advisory_lock(1)", a),
            ("SELECT pg_try_advisory_lock_shared(1, 2)", a),
            ("SELECT pg_advisory_xact_lock(1)", n),
            ("SELECT pg_advisory_unlock(1)", n),
            ("SELECT * INTO TEMP t FROM x", t),
            ("select 1 into\ttemporary table t", t),
            ("SELECT * INTO LOCAL TEMP t FROM x", t),
            ("WITH q AS (SELECT 1) SELECT * INTO TEMPORARY t FROM q", t),
            ("INSERT INTO temp_log VALUES (1)", n),
            ("SELECT * INTO t FROM x", n),
            ("SELECT a.into temp FROM a", n),
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
        // Read past the first word only for the names it scans for.
        assert_eq!(query_leftovers(b"SELECT pg_advisory_lock(7)\0"), Leftovers::ADVISORY);
        assert_eq!(query_leftovers(b"SELECT 1 INTO TEMP t\0"), Leftovers::TEMP);
        assert_eq!(query_leftovers(b"/*x*/SET work_mem = 1\0"), Leftovers::SETTINGS);
        // A keyword ends where a comment begins: PostgreSQL reads `SET/**/x` as `SET x`.
        assert_eq!(query_leftovers(b"SET/**/work_mem = 1\0"), Leftovers::SETTINGS);
        assert_eq!(query_leftovers(b"listen/*a*/chan\0"), Leftovers::LISTEN);
        assert_eq!(query_leftovers(b"/* a /* nested */ b */ create/**/temp table t (i int)\0"), Leftovers::TEMP);
        assert_eq!(query_leftovers(b"-- note\r\n  PREPARE p AS SELECT 1\0"), Leftovers::PREPARED);
        // Behind a comment, a plain statement is scanned as one without: nothing, or what its names leave.
        assert!(query_leftovers(b"/* app:checkout */ SELECT abalance FROM t WHERE aid = 7;\0").is_empty());
        assert_eq!(query_leftovers(b"-- x\nSELECT pg_advisory_lock(7)\0"), Leftovers::ADVISORY);
        // A comment that a statement's keyword seems to follow, inside a comment that nests: still read.
        assert_eq!(query_leftovers(b"/* a /* b */ SELECT */ SET work_mem = 1\0"), Leftovers::SETTINGS);
        // Comments between a statement's words.
        assert_eq!(query_leftovers(b"CREATE /* x */ TEMP TABLE t (i int)\0"), Leftovers::TEMP);
        assert_eq!(query_leftovers(b"DECLARE c CURSOR with/**/hold FOR SELECT 1\0"), Leftovers::CURSORS);
        assert!(query_leftovers(b"SET LOCAL/**/work_mem = 1\0").is_empty());
        assert_eq!(query_leftovers(b"SELECT 1; DEALLOCATE ALL\0"), Leftovers::PREPARED);
        // One statement by name may be one the proxy shares (pg_prepared_statements shows their names).
        assert_eq!(query_leftovers(b"DEALLOCATE hapool_3\0"), Leftovers::PREPARED);
        let discard_all = Leftovers::PREPARED.with(Leftovers::SETTINGS);
        assert_eq!(query_leftovers(b"/* a Parse's text, or followed by the session */ DISCARD ALL\0"), discard_all);
        assert!(query_leftovers(b"DISCARD PLANS\0").is_empty());
        assert_eq!(query_leftovers(b"LOAD 'auto_explain'\0"), Leftovers::LIBRARY);
        for (body, loads) in [
            (&b"LOAD 'auto_explain'\0"[..], true),
            (b"/* c */ load 'x'\0", true),
            (b"SELECT 1; LOAD 'x'\0", true),
            (b"SELECT 'LOAD'\0", false),
            (b"CREATE TEMP TABLE t (x int)\0", false),
        ] {
            assert_eq!(loads_library(Head::of(body)), loads, "{body:?}");
        }
        assert_eq!(query_leftovers(b"DO $$ BEGIN CREATE TEMP TABLE t (x int); END $$\0"), Leftovers::ALL);
        assert_eq!(query_leftovers(b"EXECUTE hapool_7('s1')\0"), Leftovers::ALL);
        assert_eq!(query_leftovers(b"explain (analyze) execute p\0"), Leftovers::ALL);
        assert_eq!(query_leftovers(b"CREATE TABLE t AS EXECUTE p\0"), Leftovers::ALL);
        assert_eq!(query_leftovers(b"EXPLAIN SELECT 1\0"), Leftovers::NONE);
        // Fast-path calls: lo_open (952), set_config (2078), a user's function, a body too short.
        for (oid, want) in [(952u32, Leftovers::CALLED), (2078, Leftovers::CALLED), (16384, Leftovers::ALL)] {
            assert_eq!(fast_path_leftovers(&oid.to_be_bytes()), want, "{oid}");
        }
        assert_eq!(fast_path_leftovers(b"\0\0"), Leftovers::ALL);
        for glued in
            [&b"EXECUTE\"hapool_7\"\0"[..], b"explain(analyze)execute p\0", b"CREATE TABLE t AS EXECUTE\"p\"\0"]
        {
            assert_eq!(query_leftovers(glued), Leftovers::ALL, "{}", String::from_utf8_lossy(glued));
        }
        assert_eq!(query_leftovers(b"LISTEN\"ch\"\0"), Leftovers::LISTEN);
        // Created in the temporary schema by name.
        assert_eq!(query_leftovers(b"CREATE TABLE pg_temp.t (x int)\0"), Leftovers::TEMP);
        assert_eq!(
            query_leftovers(b"CREATE FUNCTION \"PG_TEMP\".f() RETURNS int AS 'SELECT 1' LANGUAGE sql\0"),
            Leftovers::TEMP
        );
        assert!(query_leftovers(b"SELECT mypg_temperature, pg_temperature, pg_temp_x FROM t\0").is_empty());
        assert_eq!(query_leftovers(b"INSERT INTO pg_temp_3.t VALUES (1)\0"), Leftovers::TEMP);
        let history = b"INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 2, 3, 4, now());\0";
        assert!(query_leftovers(history).is_empty());
        // INSERT, UPDATE and DELETE are read for their `_` names only (they cannot hold a SELECT … INTO).
        assert_eq!(query_leftovers(b"UPDATE t SET x = pg_advisory_lock(1)\0"), Leftovers::ADVISORY);
        assert_eq!(query_leftovers(b"insert into t select set_config('a', 'b', false)\0"), Leftovers::SETTINGS);
        assert_eq!(query_leftovers(b"DELETE FROM pg_temp.t\0"), Leftovers::TEMP);
        assert!(query_leftovers(b"INSERT INTO t SELECT 1 INTO TEMP x\0").is_empty(), "PostgreSQL refuses it");
        assert_eq!(query_leftovers(b"WITH q AS (SELECT 1) SELECT * INTO TEMP x FROM q\0"), Leftovers::TEMP);
        // A single statement's closing ';' does not make its text be read; a second statement does.
        assert!(!holds_another_statement(b"SELECT abalance FROM pgbench_accounts WHERE aid = 7;"));
        assert!(!holds_another_statement(b"SELECT 1; ;\n"));
        assert!(holds_another_statement(b"SELECT 1; RESET ALL"));
        assert!(query_leftovers(b"SELECT $1;\0\0\x01\0\0\0\x3b").is_empty(), "the parameter types are not text");
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
            "INTO",
            "set_config('a',';',true)",
            "set_config('a','b',false)",
            "pg_advisory_lock(1)",
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
            "CLOSE ALL;UNLISTEN *;DISCARD TEMP;DEALLOCATE ALL;SELECT pg_catalog.pg_advisory_unlock_all();\
             RESET ROLE;RESET SESSION AUTHORIZATION;RESET ALL;"
        );
        assert!(Leftovers::ALL.contains(Leftovers::PREPARED) && !Leftovers::TEMP.contains(Leftovers::ALL));
    }
}
