//! Statement texts with their literals replaced by a parameter, so that `SELECT … WHERE id = 1` and
//! `… id = 2` share one cached verdict: simple-protocol clients inline their values, and without this every
//! distinct value would cost a full parse.
//!
//! Follows PostgreSQL's lexer (with `standard_conforming_strings = on`, as the classifier's parser does) for
//! what it touches, and gives up on anything it does not fully understand (prefixed strings such as `E'…'`,
//! dollar quoting, a number running into letters): the caller then uses the text as it is. Comments are kept
//! (they may hold routing hints); quoted identifiers are kept.

use std::borrow::Cow;

use crate::pg::sqltext::{is_ident, skip_block_comment, skip_line_comment, skip_quoted};

/// What a literal becomes: a parameter reference, which the grammar accepts wherever a value may stand.
const PLACEHOLDER: &str = "$0";

/// `sql` with its plain string and numeric literals replaced by `$0`; borrowed when there is none or when the
/// text holds something this lexer does not handle.
pub fn literals(sql: &str) -> Cow<'_, str> {
    match normalize(sql.as_bytes()) {
        Some(out) => Cow::Owned(out),
        None => Cow::Borrowed(sql),
    }
}

fn normalize(b: &[u8]) -> Option<String> {
    let mut out: Option<String> = None;
    let mut copied = 0; // b[..copied] is in `out` (once it exists)
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        match c {
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = skip_line_comment(b, i);
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = skip_block_comment(b, i)?;
                continue;
            }
            b'"' => {
                i = skip_quoted(b, i, b'"')?;
                continue;
            }
            b'\'' => {
                // E'…', B'…', X'…', N'…', U&'…' have their own rules: leave the whole text alone.
                if i > 0 && (is_ident(b[i - 1]) || b[i - 1] == b'&') {
                    return None;
                }
                i = skip_quoted(b, i, b'\'')?;
            }
            b'$' => {
                // $1 is a parameter; anything else starting with $ here is dollar quoting.
                let digits = b[i + 1..].iter().take_while(|x| x.is_ascii_digit()).count();
                if digits == 0 {
                    return None;
                }
                i += 1 + digits;
                continue;
            }
            b'0'..=b'9' if i == 0 || !(is_ident(b[i - 1]) || b[i - 1] == b'.') => {
                i = skip_number(b, i)?;
            }
            _ => {
                i += if is_ident(c) { b[i..].iter().take_while(|x| is_ident(**x)).count() } else { 1 };
                continue;
            }
        }
        // b[start..i] is a literal.
        let o = out.get_or_insert_with(|| String::with_capacity(b.len()));
        o.push_str(std::str::from_utf8(&b[copied..start]).ok()?);
        o.push_str(PLACEHOLDER);
        copied = i;
    }
    let mut o = out?;
    o.push_str(std::str::from_utf8(&b[copied..]).ok()?);
    Some(o)
}

/// Past `123`, `1.5`, `1.`, `2e10`, `3.1E-4`; `None` when letters follow (PostgreSQL 15 reads `0x1F` as `0 x1F`,
/// `1abc` as `1 abc`: better not to guess).
fn skip_number(b: &[u8], mut i: usize) -> Option<usize> {
    let digits = |b: &[u8], i: usize| b[i..].iter().take_while(|x| x.is_ascii_digit()).count();
    i += digits(b, i);
    if b.get(i) == Some(&b'.') && b.get(i + 1) != Some(&b'.') {
        i += 1;
        i += digits(b, i);
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(b.get(i + 1), Some(b'+' | b'-')));
        let exp = digits(b, i + 1 + sign);
        if exp == 0 {
            return None;
        }
        i += 1 + sign + exp;
    }
    if b.get(i).is_some_and(|c| is_ident(*c) || *c == b'.') {
        return None;
    }
    Some(i)
}

#[cfg(test)]
mod tests {
    use super::literals;

    #[test]
    fn replaces_plain_literals() {
        for (sql, want) in [
            (
                "SELECT abalance FROM pgbench_accounts WHERE aid = 4711;",
                "SELECT abalance FROM pgbench_accounts WHERE aid = $0;",
            ),
            ("select * from t where a = 'x''y' and b > 1.5e-3", "select * from t where a = $0 and b > $0"),
            ("SELECT t1.c2 FROM t1 LIMIT 10 OFFSET 20", "SELECT t1.c2 FROM t1 LIMIT $0 OFFSET $0"),
            ("SELECT -1, 2., 3.25", "SELECT -$0, $0, $0"),
            ("SELECT nextval('seq')", "SELECT nextval($0)"),
            ("SELECT $1, 7", "SELECT $1, $0"),
            ("/* hapool:primary */ SELECT 1", "/* hapool:primary */ SELECT $0"),
            ("SELECT 1 -- it's 2\n", "SELECT $0 -- it's 2\n"),
            ("SELECT 1 --\r'x'", "SELECT $0 --\r$0"),
            ("SELECT \"a'b\" FROM \"x\"\"y\" WHERE v = 'z'", "SELECT \"a'b\" FROM \"x\"\"y\" WHERE v = $0"),
            ("/* a /* nested */ 'not a string' */ SELECT 'é'", "/* a /* nested */ 'not a string' */ SELECT $0"),
            ("SELECT 'a' || 'b' FROM t WHERE x IN (1,2,3)", "SELECT $0 || $0 FROM t WHERE x IN ($0,$0,$0)"),
        ] {
            assert_eq!(literals(sql), want, "{sql}");
        }
    }

    #[test]
    fn leaves_alone_what_it_does_not_handle() {
        for sql in [
            "SELECT 1abc",
            "SELECT 0x1F",
            "SELECT E'\\''",
            "SELECT U&'d\\0061t'",
            "SELECT X'1F'",
            "DO $$ BEGIN PERFORM 1; END $$",
            "SELECT $tag$ x $tag$",
            "SELECT 'unterminated",
            "SELECT /* unterminated",
            "SELECT \"unterminated",
            "SELECT 1e",
            "SELECT 1.2.3",
            "SELECT a FROM t",
            "",
        ] {
            assert_eq!(literals(sql), sql, "{sql}");
        }
    }
}
