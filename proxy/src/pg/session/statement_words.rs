//! What prepared-statement handling reads of a statement's words (pure): whether PostgreSQL parses it in a
//! failed transaction, and the name an SQL `DEALLOCATE` gives.

use crate::pg::sqltext;

/// Whether PostgreSQL parses a Parse's text (`rest`: the text, then the parameter types) in a failed
/// transaction: a statement that may end it (`COMMIT`, `END`, `ROLLBACK`, `ABORT`, `ROLLBACK TO`, `PREPARE
/// TRANSACTION`, but not `COMMIT PREPARED` or `ROLLBACK PREPARED`, nor a plain `PREPARE`), or no statement at all
/// (an empty or comment-only text). Read by its first two words.
pub fn ends_transaction(rest: &[u8]) -> bool {
    let Some((text, _)) = crate::pg::codec::cstr(rest) else { return false };
    let text = sqltext::blank_comments(text);
    let mut words = text.split(|c: char| c.is_whitespace() || c == ';').filter(|w| !w.is_empty());
    let Some(first) = words.next() else { return true };
    let second = words.next().unwrap_or_default();
    let is = |word: &str, keyword: &str| word.eq_ignore_ascii_case(keyword);
    if is(first, "commit") || is(first, "rollback") {
        !is(second, "prepared")
    } else {
        is(first, "end") || is(first, "abort") || (is(first, "prepare") && is(second, "transaction"))
    }
}

/// The name in `DEALLOCATE [PREPARE] name` alone (an optional `;`, comments): a quoted name as written, an
/// unquoted one with A–Z folded to lower case, as PostgreSQL reads them. Not `ALL`, which the session follows
/// otherwise. `None` for what this reading may get wrong (a comment left open, comment marks beside a quoted
/// name): the server answers that.
pub fn deallocated_name(sql: &str) -> Option<String> {
    if sql.contains("/*") && !sql.contains("*/") || sql.contains('"') && (sql.contains("/*") || sql.contains("--")) {
        return None;
    }
    fn space(c: char) -> bool {
        c.is_ascii_whitespace()
    }
    /// What follows `word` at the start of `text`, past the spaces after it (a quote may follow it directly).
    fn after<'a>(text: &'a str, word: &str) -> Option<&'a str> {
        let rest = text.get(word.len()..)?;
        let sized = text.get(..word.len()).is_some_and(|w| w.eq_ignore_ascii_case(word));
        (sized && rest.starts_with(|c: char| space(c) || c == '"')).then(|| rest.trim_start_matches(space))
    }
    let text = sqltext::blank_comments(sql);
    let text = text.trim_matches(space).trim_end_matches(|c: char| c == ';' || space(c));
    let rest = after(text, "deallocate")?;
    let rest = after(rest, "prepare").unwrap_or(rest);
    if let Some(quoted) = rest.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        let name = quoted.replace("\"\"", "\"");
        return (!name.is_empty() && !quoted.replace("\"\"", "").contains('"')).then_some(name);
    }
    let ident = !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    (ident && !rest.eq_ignore_ascii_case("all") && !rest.starts_with(|c: char| c.is_ascii_digit() || c == '$'))
        .then(|| rest.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_name_an_sql_deallocate_names() {
        let cases = [
            ("DEALLOCATE s1", Some("s1")),
            ("deallocate prepare S1;", Some("s1")),
            ("DEALLOCATE \"S1\"", Some("S1")),
            (" DEALLOCATE \"a\"\"b\" ; ", Some("a\"b")),
            ("/* c */ DEALLOCATE s1 -- d", Some("s1")),
            ("/* c */ DEALLOCATE \"a\"", None),
            ("DEALLOCATE PREPARE", Some("prepare")),
            ("DEALLOCATE ALL", None),
            ("DEALLOCATE PREPARE ALL", None),
            ("DEALLOCATE s1; SELECT 1", None),
            ("DEALLOCATE s1 s2", None),
            ("DEALLOCATEs1", None),
            ("SELECT 1", None),
            ("DEALLOCATE/**/s1", Some("s1")),
            ("DEALLOCATE\"S1\"", Some("S1")),
            ("DEALLOCATE s1 /*", None),
            ("DEALLOCATE \"a/*x*/b\"", None),
            ("DEALLOCATE É1", None),
            ("DEALLOCATE s1\u{3000}", None),
            ("DEALLOCATE PREPARE\u{a0}s1", None),
        ];
        for (sql, want) in cases {
            assert_eq!(super::deallocated_name(sql).as_deref(), want, "{sql}");
        }
    }

    #[test]
    fn what_postgresql_parses_in_a_failed_transaction() {
        let parses = |text: &str| super::ends_transaction(format!("{text}\0\0\0").as_bytes());
        for text in [
            "COMMIT",
            "commit;",
            "END",
            "ROLLBACK",
            "rollback to savepoint a",
            "ABORT",
            "PREPARE TRANSACTION 'x'",
            "/* c */ COMMIT",
            "",
            " ; ",
            "-- nothing",
        ] {
            assert!(parses(text), "{text:?}");
        }
        for text in ["SELECT 1", "COMMIT PREPARED 'x'", "ROLLBACK/**/PREPARED 'x'", "PREPARE p AS SELECT 1", "BEGIN"] {
            assert!(!parses(text), "{text:?}");
        }
    }
}
