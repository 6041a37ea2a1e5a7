//! Settings a client's statements leave on a server connection that the proxy does not follow: a session-level
//! `SET` or `RESET` of a parameter the server does not report (`statement_timeout`, `work_mem`, a role…).
//! In transaction pooling such a connection is reset before another client gets it (`RESET_SQL`), so one
//! client's settings never reach another. Pure: the session asks, the checkout resets.

use super::params;
use crate::pg::msg;

/// Brings a connection's session settings back to those it had when it was opened. `RESET ALL` leaves the role
/// and the session authorization alone, so they come first (both are allowed to any user).
pub const RESET_SQL: &str = "RESET ROLE;RESET SESSION AUTHORIZATION;RESET ALL;";

/// The owner of a connection whose state is unknown (a reset or a sync of it failed): reset for anyone. No
/// client has the cancel pid 0 (`CancelRegistry::register`).
pub const NOBODY: (i32, i32) = (0, 0);

/// `leaves_settings` for a Query body, or the text part of a Parse (text, NUL, parameter types). The text is
/// read only when the first word is SET or RESET or a `;` is in the bytes: every query passes here.
pub fn query_leaves_settings(body: &[u8]) -> bool {
    let word = msg::first_word(body);
    let maybe = word.eq_ignore_ascii_case(b"set") || word.eq_ignore_ascii_case(b"reset") || body.contains(&b';');
    maybe && msg::query_text(body).is_some_and(leaves_settings)
}

/// Whether any statement of a simple query (or of a Parse) sets or resets, for the rest of the session, a
/// setting the proxy does not follow. Errs towards yes: a needless reset costs one round trip to the next
/// client, a missed one hands it a stranger's settings. Statements are cut at every `;`, quoted or not: a
/// false cut can only find a SET that is not there. A comment before the SET hides it (as from PgBouncer).
pub fn leaves_settings(sql: &str) -> bool {
    let mut statements = sql.split(';').map(str::trim).filter(|s| !s.is_empty());
    let Some(first) = statements.next() else { return false };
    let single = statements.clone().next().is_none();
    std::iter::once(first).chain(statements).any(|statement| statement_leaves(statement, single))
}

/// One statement. `single`: it is the whole query (only then does the session follow a `SET search_path`).
fn statement_leaves(statement: &str, single: bool) -> bool {
    let mut words = statement.split(|c: char| c.is_whitespace() || c == '=').filter(|w| !w.is_empty());
    let Some(verb) = words.next() else { return false };
    let set = verb.eq_ignore_ascii_case("set");
    if !set && !verb.eq_ignore_ascii_case("reset") {
        return false;
    }
    let mut name = words.next().unwrap_or_default().trim_matches('"');
    if set && name.eq_ignore_ascii_case("session") {
        // SET SESSION name …; SET SESSION AUTHORIZATION / CHARACTERISTICS fall through as names of their own.
        name = words.next().unwrap_or_default().trim_matches('"');
    }
    let is = |word: &str| name.eq_ignore_ascii_case(word);
    if set && (is("local") || is("transaction") || is("constraints")) {
        return false; // ends with the transaction
    }
    if set && (is("names") || is("time")) {
        return false; // client_encoding, TimeZone: reported, followed like any reported parameter
    }
    if is("search_path") {
        // A plain single SET is followed by the session (params::search_path_set); anything else is not.
        return !(set && single && params::search_path_set(statement).is_some());
    }
    !params::is_tracked(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_leaves_settings_behind() {
        let cases = [
            ("SELECT 1", false),
            ("", false),
            (";", false),
            ("SET statement_timeout = '5s'", true),
            ("set statement_timeout to 5000", true),
            ("SET statement_timeout=5000", true),
            ("SET SESSION work_mem = '64MB'", true),
            ("SET ROLE reporting", true),
            ("SET SESSION AUTHORIZATION app", true),
            ("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE", true),
            ("RESET statement_timeout", true),
            ("RESET ALL", true),
            ("RESET ROLE", true),
            ("SET LOCAL statement_timeout = '1s'", false),
            ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", false),
            ("SET CONSTRAINTS ALL DEFERRED", false),
            ("SET application_name = 'x'", false),
            ("SET \"TimeZone\" = 'UTC'", false),
            ("SET TIME ZONE 'UTC'", false),
            ("SET NAMES 'UTF8'", false),
            ("RESET DateStyle", false),
            ("SET search_path = s1, public", false),
            ("SET search_path = s1; SELECT 1", true),
            ("RESET search_path", true),
            ("SET search_path TO", true),
            ("SELECT 1; SET statement_timeout = 0", true),
            ("BEGIN; SET work_mem = '1GB'; COMMIT", true),
            ("BEGIN; SET LOCAL work_mem = '1GB'; COMMIT;", false),
            ("SELECT 'a;set x=1'", true), // a false cut: a needless reset, never a missed one
            ("  \n SET\tstatement_timeout = 1", true),
        ];
        for (sql, want) in cases {
            assert_eq!(leaves_settings(sql), want, "{sql:?}");
        }
    }

    #[test]
    fn query_bodies_and_parse_texts() {
        assert!(query_leaves_settings(b"SET work_mem = '1GB'\0"));
        assert!(query_leaves_settings(b"SELECT 1; RESET ALL\0"));
        assert!(!query_leaves_settings(b"SELECT abalance FROM pgbench_accounts WHERE aid = $1\0\0\x01\0\0\0\x17"));
        assert!(!query_leaves_settings(b"SET LOCAL work_mem = '1GB'\0"));
        // A parameter type's bytes may hold a ';' (OID 59): the text decides.
        assert!(!query_leaves_settings(b"SELECT $1\0\0\x01\0\0\0\x3b"));
        assert!(!query_leaves_settings(b"SET work_mem = '1GB'"), "no NUL: not a message body");
    }
}
