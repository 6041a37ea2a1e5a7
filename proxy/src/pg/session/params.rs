//! Session parameters that must follow a client from one server connection to the next.

/// Parameters the server reports (ParameterStatus) that a client may change and expects to keep.
/// `default_transaction_read_only` is reported since PostgreSQL 14; following it lets a read-only client's
/// transactions go to replicas, and keeps the setting on every server the client uses.
pub const TRACKED: [&str; 7] = [
    "client_encoding",
    "DateStyle",
    "TimeZone",
    "IntervalStyle",
    "application_name",
    "standard_conforming_strings",
    "default_transaction_read_only",
];

pub fn is_tracked(name: &str) -> bool {
    TRACKED.iter().any(|t| t.eq_ignore_ascii_case(name))
}

/// What the client expects: the pool's defaults, overridden by what the client asked for at startup.
pub fn desired(server: &[(String, String)], startup: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> =
        server.iter().filter(|(k, _)| is_tracked(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    for (k, v) in startup {
        if let Some(name) = TRACKED.iter().find(|t| t.eq_ignore_ascii_case(k)) {
            match out.iter_mut().find(|(n, _)| n == name) {
                Some(entry) => entry.1 = v.clone(),
                None => out.push((name.to_string(), v.clone())),
            }
        }
    }
    out
}

/// Records a value the server reported while serving the client (the client changed it); returns whether a
/// tracked parameter changed.
pub fn record(desired: &mut Vec<(String, String)>, name: &str, value: &str) -> bool {
    if !is_tracked(name) {
        return false;
    }
    match desired.iter_mut().find(|(n, _)| n == name) {
        Some(entry) if entry.1 != value => entry.1 = value.to_string(),
        Some(_) => return false,
        None => desired.push((name.to_string(), value.to_string())),
    }
    true
}

/// A fingerprint of the parameters a client wants: a server last synced to the same fingerprint needs no SET.
pub fn fingerprint(desired: &[(String, String)]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    desired.hash(&mut h);
    h.finish()
}

/// The SETs that bring a server to the client's values, or `None` when it already has them.
pub fn sync_sql(desired: &[(String, String)], server: &std::collections::HashMap<String, String>) -> Option<String> {
    let mut sql = String::new();
    for (name, value) in desired {
        if server.get(name) != Some(value) {
            sql.push_str(&format!("SET {} = '{}';", quote_ident(name), value.replace('\'', "''")));
        }
    }
    (!sql.is_empty()).then_some(sql)
}

/// A client's search_path: the one in force (`None`: the server's default), and one being set by the statement
/// now running (it applies if that statement succeeds).
#[derive(Debug, Default)]
pub struct SearchPath {
    pub current: Option<String>,
    pub pending: Option<String>,
}

/// The value of a plain `SET [SESSION] search_path {TO|=} value` (PostgreSQL does not report search_path, so
/// the proxy reads it from the statement); `None` for anything else, `SET LOCAL` included.
pub fn search_path_set(sql: &str) -> Option<String> {
    let sql = sql.trim().trim_end_matches(';').trim();
    let mut words = sql.splitn(2, char::is_whitespace);
    if !words.next()?.eq_ignore_ascii_case("set") {
        return None;
    }
    let mut rest = words.next()?.trim_start();
    if let Some(after) = strip_word(rest, "session") {
        rest = after;
    }
    rest = strip_word(rest, "search_path").or_else(|| strip_prefix_ci(rest, "search_path"))?.trim_start();
    let value = match rest.strip_prefix('=') {
        Some(v) => v,
        None => strip_word(rest, "to")?,
    };
    let value = value.trim();
    // One statement only: a `;` inside would end it (quoted names keep theirs).
    let unquoted_semicolon = value.split('\'').step_by(2).any(|part| part.contains(';'));
    (!value.is_empty() && !unquoted_semicolon).then(|| value.to_string())
}

/// Whether `sql` is a plain `RESET search_path` or `RESET ALL`: the client's search_path goes back to the
/// default (followed as `SET search_path = DEFAULT`, which is what RESET means).
pub fn search_path_reset(sql: &str) -> bool {
    let sql = sql.trim().trim_end_matches(';').trim();
    let mut words = sql.split_whitespace();
    let reset = words.next().is_some_and(|w| w.eq_ignore_ascii_case("reset"));
    let what = words.next().is_some_and(|w| w.eq_ignore_ascii_case("search_path") || w.eq_ignore_ascii_case("all"));
    reset && what && words.next().is_none()
}

/// `text` without its leading `word` (case-insensitive) and the whitespace after it.
fn strip_word<'a>(text: &'a str, word: &str) -> Option<&'a str> {
    let rest = strip_prefix_ci(text, word)?;
    rest.starts_with(char::is_whitespace).then(|| rest.trim_start())
}

fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &text[prefix.len()..])
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn startup_values_override_server_defaults() {
        let server = pairs(&[("TimeZone", "UTC"), ("server_version", "15"), ("application_name", "hapool")]);
        let startup = pairs(&[("application_name", "psql"), ("datestyle", "ISO, DMY"), ("user", "app")]);
        let d = desired(&server, &startup);
        assert_eq!(d, pairs(&[("TimeZone", "UTC"), ("application_name", "psql"), ("DateStyle", "ISO, DMY")]));
    }

    #[test]
    fn only_differences_are_set_and_quoted() {
        let d = pairs(&[("TimeZone", "Europe/Paris"), ("application_name", "it's")]);
        let server: HashMap<String, String> = [("TimeZone".to_string(), "Europe/Paris".to_string())].into();
        assert_eq!(sync_sql(&d, &server).unwrap(), "SET \"application_name\" = 'it''s';");
        let same: HashMap<String, String> = d.iter().cloned().collect();
        assert_eq!(sync_sql(&d, &same), None);
    }

    #[test]
    fn search_path_statements_are_recognised() {
        for (sql, want) in [
            ("SET search_path = s1", Some("s1")),
            ("set SEARCH_PATH to s1, public;", Some("s1, public")),
            ("SET SESSION search_path TO \"My Schema\", public", Some("\"My Schema\", public")),
            ("SET search_path='a;b'", Some("'a;b'")),
            ("SET LOCAL search_path = s1", None),
            ("SET search_path = s1; DROP TABLE x", None),
            ("SET search_paths = x", None),
            ("SELECT 'SET search_path = x'", None),
            ("SET TimeZone = 'UTC'", None),
            ("SET search_path", None),
        ] {
            assert_eq!(search_path_set(sql).as_deref(), want, "{sql}");
        }
    }

    #[test]
    fn resets_of_search_path_are_recognised() {
        for (sql, want) in [
            ("RESET search_path", true),
            ("reset ALL;", true),
            ("RESET  SEARCH_PATH ", true),
            ("RESET search_path; SELECT 1", false),
            ("RESET work_mem", false),
            ("RESET", false),
            ("SET search_path = DEFAULT", false),
        ] {
            assert_eq!(search_path_reset(sql), want, "{sql}");
        }
    }

    #[test]
    fn reported_changes_are_recorded() {
        let mut d = pairs(&[("TimeZone", "UTC")]);
        let before = fingerprint(&d);
        assert!(record(&mut d, "TimeZone", "Asia/Tokyo"));
        assert!(!record(&mut d, "server_version", "16"));
        assert!(!record(&mut d, "TimeZone", "Asia/Tokyo"));
        assert_ne!(fingerprint(&d), before);
        assert_eq!(d, pairs(&[("TimeZone", "Asia/Tokyo")]));
    }
}
