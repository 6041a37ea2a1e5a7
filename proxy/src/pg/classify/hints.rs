//! Routing hints in SQL comments. Only real comments count: the text `hapool:replica` inside a string literal
//! is not a hint.

use pg_query::protobuf::Token;

use super::Hint;

/// The hint in `sql`'s comments, if any (`hapool:primary` wins over `hapool:replica`).
pub fn hint(sql: &str) -> Option<Hint> {
    if !sql.contains("hapool:") {
        return None; // the common case, without running the scanner
    }
    let tokens = pg_query::scan_tokens(sql).ok()?;
    let mut found = None;
    for t in tokens {
        if t.token != Token::CComment as i32 && t.token != Token::SqlComment as i32 {
            continue;
        }
        let text = sql.get(t.start as usize..t.end as usize).unwrap_or_default();
        if text.contains("hapool:primary") {
            return Some(Hint::Primary);
        }
        if text.contains("hapool:replica") {
            found = Some(Hint::Replica);
        }
    }
    found
}
