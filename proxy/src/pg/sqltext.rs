//! Reading SQL text as PostgreSQL's lexer does (with `standard_conforming_strings = on`), as far as the proxy
//! needs it: where comments, quoted strings and quoted identifiers end, and where one statement of a query ends
//! and the next begins. What it does not fully follow (prefixed strings such as `E'…'`, dollar quoting, an
//! unterminated quote or comment) makes it give up (`None`): each caller then falls back to a coarser reading
//! that errs its own safe way.

use std::borrow::Cow;

/// Letters, digits, `_`, and any non-ASCII byte (PostgreSQL takes those as identifier characters).
pub fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

/// SQL's whitespace, as PostgreSQL's scanner has it (not Unicode's).
pub fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c')
}

/// Past a `-- …` comment starting at `i`: as PostgreSQL's lexer, it ends at a newline *or* a carriage return.
pub fn skip_line_comment(b: &[u8], i: usize) -> usize {
    b[i..].iter().position(|&x| x == b'\n' || x == b'\r').map_or(b.len(), |p| i + p)
}

/// Past a `/* … */` comment starting at `i`, which nests; `None` when it is not closed.
pub fn skip_block_comment(b: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    while i < b.len() {
        if b[i..].starts_with(b"/*") {
            depth += 1;
            i += 2;
        } else if b[i..].starts_with(b"*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return Some(i);
            }
        } else {
            i += 1;
        }
    }
    None
}

/// Past a quoted string or identifier starting at `i`, where a doubled quote stands for one; `None` when it is
/// not closed.
pub fn skip_quoted(b: &[u8], mut i: usize, quote: u8) -> Option<usize> {
    i += 1;
    loop {
        let end = i + b.get(i..)?.iter().position(|&x| x == quote)?;
        if b.get(end + 1) == Some(&quote) {
            i = end + 2;
        } else {
            return Some(end + 1);
        }
    }
}

/// The statements of a query: cut at each `;` outside quotes and comments, each with its own comments.
/// `None` when the text holds what this lexer does not follow.
pub fn statements(sql: &str) -> Option<Vec<&str>> {
    let b = sql.as_bytes();
    let (mut list, mut start, mut i) = (Vec::new(), 0, 0);
    while i < b.len() {
        i = match b[i] {
            b';' => {
                list.push(&sql[start..i]);
                start = i + 1;
                i + 1
            }
            b'-' if b.get(i + 1) == Some(&b'-') => skip_line_comment(b, i),
            b'/' if b.get(i + 1) == Some(&b'*') => skip_block_comment(b, i)?,
            b'"' => skip_quoted(b, i, b'"')?,
            // E'…', B'…', X'…', N'…', U&'…' have their own rules.
            b'\'' if i > 0 && (is_ident(b[i - 1]) || b[i - 1] == b'&') => return None,
            b'\'' => skip_quoted(b, i, b'\'')?,
            // $1 is a parameter; anything else starting with $ here is dollar quoting.
            b'$' if !b.get(i + 1).is_some_and(u8::is_ascii_digit) => return None,
            // An identifier or keyword (which may hold a `$` after its first character).
            c if is_ident(c) => i + b[i..].iter().take_while(|x| is_ident(**x) || **x == b'$').count(),
            _ => i + 1,
        };
    }
    list.push(&sql[start..]);
    Some(list)
}

/// `statement` past its leading whitespace and comments; empty when nothing else is left (or a comment is not
/// closed).
pub fn skip_leading_comments(statement: &str) -> &str {
    &statement[leading_comments_end(statement.as_bytes())..]
}

/// Where the leading whitespace and comments of `b` end (its length when a comment is not closed).
fn leading_comments_end(b: &[u8]) -> usize {
    let mut i = 0;
    loop {
        while b.get(i).is_some_and(|&c| is_space(c)) {
            i += 1;
        }
        i = match b.get(i..i + 2) {
            Some(b"--") => skip_line_comment(b, i),
            Some(b"/*") => match skip_block_comment(b, i) {
                Some(end) => end,
                None => return b.len(),
            },
            _ => return i,
        };
    }
}

/// The word a statement begins with, past whitespace and comments: its identifier characters, up to whatever
/// else comes, a comment included (PostgreSQL reads `SET/**/x` as `SET x`, and `set_x` as one word). Empty when
/// none comes first.
pub fn leading_keyword(b: &[u8]) -> &[u8] {
    // Most texts begin with their keyword: a letter begins neither whitespace nor a comment.
    let start = if b.first().is_some_and(u8::is_ascii_alphabetic) { 0 } else { leading_comments_end(b) };
    let rest = &b[start..];
    &rest[..rest.iter().position(|&c| !is_ident(c)).unwrap_or(rest.len())]
}

/// Whether the leading keyword of `b` is `word` (any case): at once false for a text that begins with another
/// letter, for a check that almost every query fails.
pub fn keyword_is(b: &[u8], word: &[u8]) -> bool {
    match b.first() {
        Some(c) if c.is_ascii_alphabetic() && !word.first().is_some_and(|w| c.eq_ignore_ascii_case(w)) => false,
        _ => leading_keyword(b).eq_ignore_ascii_case(word),
    }
}

/// `text` with each comment replaced by a space, for reading its words: a comment separates words as
/// whitespace does. Quotes are not looked at (a comment's marks inside a string blank the string's rest: its
/// words are not what callers read). An unclosed comment runs to the end. Borrowed when there is none.
pub fn blank_comments(text: &str) -> Cow<'_, str> {
    let b = text.as_bytes();
    let comment_at = |from: usize| {
        memchr::memchr2_iter(b'-', b'/', &b[from..])
            .map(|p| from + p)
            .find(|&p| matches!(b.get(p..p + 2), Some(b"--" | b"/*")))
    };
    let Some(first) = comment_at(0) else { return Cow::Borrowed(text) };
    let (mut out, mut copied, mut at) = (String::with_capacity(text.len()), 0, Some(first));
    while let Some(start) = at {
        let end = match b[start] {
            b'-' => skip_line_comment(b, start),
            _ => skip_block_comment(b, start).unwrap_or(b.len()),
        };
        out.push_str(&text[copied..start]);
        out.push(' ');
        copied = end;
        at = comment_at(end);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// Whether `text` starts with `word`, ignoring ASCII case.
pub fn starts_with_ci(text: &[u8], word: &[u8]) -> bool {
    text.get(..word.len()).is_some_and(|start| start.eq_ignore_ascii_case(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_cut_at_semicolons_outside_quotes_and_comments() {
        let cases: [(&str, &[&str]); 9] = [
            ("SELECT 1", &["SELECT 1"]),
            ("SELECT 1;", &["SELECT 1", ""]),
            ("SELECT 1; SET a = 1", &["SELECT 1", " SET a = 1"]),
            ("SELECT ';'; SET a = 1", &["SELECT ';'", " SET a = 1"]),
            ("SELECT \"a;b\" FROM t; SET a = 1", &["SELECT \"a;b\" FROM t", " SET a = 1"]),
            ("/* x; y */ SET a = 1", &["/* x; y */ SET a = 1"]),
            ("SELECT 1 -- ; not here\n; SET a = 1", &["SELECT 1 -- ; not here\n", " SET a = 1"]),
            ("/* a /* b; */ c; */ SET a = 1;RESET b", &["/* a /* b; */ c; */ SET a = 1", "RESET b"]),
            ("SELECT $1; SELECT a$b", &["SELECT $1", " SELECT a$b"]),
        ];
        for (sql, want) in cases {
            assert_eq!(statements(sql).as_deref(), Some(want), "{sql:?}");
        }
        for sql in ["SELECT E'\\';' ", "DO $$ BEGIN; END $$", "SELECT 'open", "/* open", "SELECT \"open"] {
            assert_eq!(statements(sql), None, "{sql:?}");
        }
    }

    #[test]
    fn leading_comments_are_skipped() {
        for (statement, want) in [
            ("SET a = 1", "SET a = 1"),
            ("  /* hapool:primary */ SET a = 1", "SET a = 1"),
            ("-- note\nSET a = 1", "SET a = 1"),
            ("--\r/* a /* b */ */\n\tSET a = 1 /* after */", "SET a = 1 /* after */"),
            ("/* open", ""),
            ("-- only", ""),
            ("", ""),
            ("/", "/"),
        ] {
            assert_eq!(skip_leading_comments(statement), want, "{statement:?}");
        }
    }

    #[test]
    fn a_keyword_ends_at_a_comment() {
        for (text, want) in [
            ("SET a = 1", "SET"),
            ("SET/**/a", "SET"),
            (" /* x /* y */ */ listen/*z*/c", "listen"),
            ("--\r\nreset all", "reset"),
            ("(SELECT 1)", ""),
            ("set_config", "set_config"),
            ("/* open", ""),
            ("", ""),
        ] {
            assert_eq!(leading_keyword(text.as_bytes()), want.as_bytes(), "{text:?}");
        }
        for (text, is) in [
            ("DEALLOCATE p", true),
            ("deallocate", true),
            (" -- x\n DeAllocate p", true),
            ("/**/deallocate p", true),
            ("discard all", false),
            ("SELECT 1", false),
            ("deallocated", false),
            ("", false),
        ] {
            assert_eq!(keyword_is(text.as_bytes(), b"deallocate"), is, "{text:?}");
            assert_eq!(keyword_is(text.as_bytes(), b"DEALLOCATE"), is, "{text:?}");
        }
    }

    #[test]
    fn comments_read_as_spaces() {
        for (text, want) in [
            ("SET a = 1", "SET a = 1"),
            ("SET/**/a", "SET a"),
            ("CREATE /* x /* y */ */ TEMP-- t\nTABLE", "CREATE   TEMP \nTABLE"),
            ("a - b / c", "a - b / c"),
            ("a /* open", "a  "),
            ("x--", "x "),
        ] {
            assert_eq!(blank_comments(text), want, "{text:?}");
        }
        assert!(matches!(blank_comments("SELECT 1"), Cow::Borrowed(_)));
    }
}
