//! Building the messages the proxy itself sends, and reading the few fields it must look at.

use bytes::{BufMut, Bytes, BytesMut};

use super::codec::cstr;

/// Appends a tagged message whose body `fill` writes, fixing up the length afterwards.
pub fn put(buf: &mut BytesMut, tag: u8, fill: impl FnOnce(&mut BytesMut)) {
    buf.put_u8(tag);
    let at = buf.len();
    buf.put_i32(0);
    fill(buf);
    let len = (buf.len() - at) as i32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

fn put_cstr(buf: &mut BytesMut, s: &str) {
    buf.put_slice(s.as_bytes());
    buf.put_u8(0);
}

/// Severity of an error we raise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Fatal,
}

/// ErrorResponse with SQLSTATE `code`, message and optional hint.
pub fn error(buf: &mut BytesMut, severity: Severity, code: &str, message: &str, hint: Option<&str>) {
    let sev = match severity {
        Severity::Error => "ERROR",
        Severity::Fatal => "FATAL",
    };
    put(buf, b'E', |b| {
        for (field, value) in [(b'S', sev), (b'V', sev), (b'C', code), (b'M', message)] {
            b.put_u8(field);
            put_cstr(b, value);
        }
        if let Some(hint) = hint {
            b.put_u8(b'H');
            put_cstr(b, hint);
        }
        b.put_u8(0);
    });
}

pub fn auth_ok(buf: &mut BytesMut) {
    put(buf, b'R', |b| b.put_i32(0));
}

pub fn auth_md5(buf: &mut BytesMut, salt: [u8; 4]) {
    put(buf, b'R', |b| {
        b.put_i32(5);
        b.put_slice(&salt);
    });
}

/// AuthenticationSASL: SCRAM-SHA-256, after SCRAM-SHA-256-PLUS when `plus` (a TLS connection whose channel
/// binding data is known), as PostgreSQL lists them.
pub fn auth_sasl(buf: &mut BytesMut, plus: bool) {
    put(buf, b'R', |b| {
        b.put_i32(10);
        if plus {
            put_cstr(b, "SCRAM-SHA-256-PLUS");
        }
        put_cstr(b, "SCRAM-SHA-256");
        b.put_u8(0);
    });
}

pub fn auth_sasl_continue(buf: &mut BytesMut, data: &[u8]) {
    put(buf, b'R', |b| {
        b.put_i32(11);
        b.put_slice(data);
    });
}

pub fn auth_sasl_final(buf: &mut BytesMut, data: &[u8]) {
    put(buf, b'R', |b| {
        b.put_i32(12);
        b.put_slice(data);
    });
}

pub fn parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    put(buf, b'S', |b| {
        put_cstr(b, name);
        put_cstr(b, value);
    });
}

pub fn backend_key_data(buf: &mut BytesMut, pid: i32, secret: i32) {
    put(buf, b'K', |b| {
        b.put_i32(pid);
        b.put_i32(secret);
    });
}

pub fn ready_for_query(buf: &mut BytesMut, status: u8) {
    put(buf, b'Z', |b| b.put_u8(status));
}

/// A message with an empty body (ParseComplete `1`, CloseComplete `3`, Sync `S`, Terminate `X`…).
pub fn empty(tag: u8) -> Bytes {
    Bytes::copy_from_slice(&[tag, 0, 0, 0, 4])
}

/// A result set of text columns answered by the proxy itself: RowDescription, DataRows, CommandComplete.
pub fn text_rows(buf: &mut BytesMut, columns: &[&str], rows: &[Vec<String>]) {
    put(buf, b'T', |b| {
        b.put_i16(columns.len() as i16);
        for c in columns {
            put_cstr(b, c);
            b.put_i32(0); // table oid
            b.put_i16(0); // column number
            b.put_i32(25); // text
            b.put_i16(-1); // variable length
            b.put_i32(-1); // no modifier
            b.put_i16(0); // text format
        }
    });
    for row in rows {
        put(buf, b'D', |b| {
            b.put_i16(row.len() as i16);
            for value in row {
                b.put_i32(value.len() as i32);
                b.put_slice(value.as_bytes());
            }
        });
    }
    put(buf, b'C', |b| put_cstr(b, &format!("SHOW {}", rows.len())));
}

/// CommandComplete with `tag`.
pub fn command_complete(buf: &mut BytesMut, tag: &str) {
    put(buf, b'C', |b| put_cstr(b, tag));
}

pub fn query(buf: &mut BytesMut, sql: &str) {
    put(buf, b'Q', |b| put_cstr(b, sql));
}

/// Close of a prepared statement (`C` `S` name).
pub fn close_statement(buf: &mut BytesMut, name: &str) {
    put(buf, b'C', |b| {
        b.put_u8(b'S');
        put_cstr(b, name);
    });
}

pub fn cancel_request(pid: i32, secret: i32) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&16i32.to_be_bytes());
    out[4..8].copy_from_slice(&super::codec::CANCEL_REQUEST.to_be_bytes());
    out[8..12].copy_from_slice(&pid.to_be_bytes());
    out[12..].copy_from_slice(&secret.to_be_bytes());
    out
}

/// The fields of a Parse body: statement name, and the rest (query and parameter types) verbatim.
pub fn parse_fields(body: &[u8]) -> Option<(&str, &[u8])> {
    cstr(body)
}

/// Rebuilds a Parse with another statement name, keeping query and types.
pub fn parse_renamed(name: &str, rest: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(rest.len() + name.len() + 6);
    put(&mut buf, b'P', |b| {
        put_cstr(b, name);
        b.put_slice(rest);
    });
    buf.freeze()
}

/// Bind: portal name, statement name, and the rest verbatim.
pub fn bind_fields(body: &[u8]) -> Option<(&str, &str, &[u8])> {
    let (portal, rest) = cstr(body)?;
    let (statement, rest) = cstr(rest)?;
    Some((portal, statement, rest))
}

pub fn bind_renamed(buf: &mut BytesMut, portal: &str, statement: &str, rest: &[u8]) {
    put(buf, b'B', |b| {
        put_cstr(b, portal);
        put_cstr(b, statement);
        b.put_slice(rest);
    });
}

/// Describe or Close: the kind byte (`S` statement, `P` portal) and the name.
pub fn target_fields(body: &[u8]) -> Option<(u8, &str)> {
    let (&kind, rest) = body.split_first()?;
    let (name, _) = cstr(rest)?;
    Some((kind, name))
}

pub fn describe_statement(buf: &mut BytesMut, name: &str) {
    put(buf, b'D', |b| {
        b.put_u8(b'S');
        put_cstr(b, name);
    });
}

/// The SQL text of a simple Query body.
pub fn query_text(body: &[u8]) -> Option<&str> {
    cstr(body).map(|(s, _)| s)
}

/// Whether a CommandComplete body is the tag of `DISCARD ALL` (`Some(true)`) or `DEALLOCATE ALL`
/// (`Some(false)`): the statements that drop every prepared statement of the connection.
pub fn drops_every_statement(command_complete: &[u8]) -> Option<bool> {
    match command_complete {
        b"DISCARD ALL\0" => Some(true),
        b"DEALLOCATE ALL\0" => Some(false),
        _ => None,
    }
}

/// The first word of a simple Query body, as bytes. The few statements the proxy follows each start with a
/// keyword of their own: looking at this first saves reading (and UTF-8 checking) every query's whole text.
pub fn first_word(body: &[u8]) -> &[u8] {
    // SQL's whitespace (PostgreSQL's scanner; \v too, as str::trim, which the statement parsers use).
    let space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c');
    let start = body.iter().position(|b| !space(b)).unwrap_or(body.len());
    let rest = &body[start..];
    let end = rest.iter().position(|b| space(b) || matches!(b, b';' | 0)).unwrap_or(rest.len());
    &rest[..end]
}

/// The name and value of a ParameterStatus body.
pub fn parameter_fields(body: &[u8]) -> Option<(&str, &str)> {
    let (name, rest) = cstr(body)?;
    let (value, _) = cstr(rest)?;
    Some((name, value))
}

/// The first column of a DataRow body as text (`None` for NULL, no column, or a malformed row).
pub fn first_column(body: &[u8]) -> Option<String> {
    let columns = i16::from_be_bytes(body.get(..2)?.try_into().ok()?);
    if columns < 1 {
        return None;
    }
    let len = i32::from_be_bytes(body.get(2..6)?.try_into().ok()?);
    let len = usize::try_from(len).ok()?;
    let value = body.get(6..6 + len)?;
    std::str::from_utf8(value).ok().map(str::to_string)
}

/// The SQLSTATE of an ErrorResponse body.
pub fn error_code(body: &[u8]) -> Option<&str> {
    error_field(body, b'C')
}

/// One field of an ErrorResponse or NoticeResponse body (`M`: the message).
pub fn error_field(body: &[u8], wanted: u8) -> Option<&str> {
    let mut rest = body;
    while let Some((&field, tail)) = rest.split_first() {
        if field == 0 {
            return None;
        }
        let (value, tail) = cstr(tail)?;
        if field == wanted {
            return Some(value);
        }
        rest = tail;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::codec::decode;

    #[test]
    fn command_tags_that_drop_every_statement() {
        assert_eq!(drops_every_statement(b"DISCARD ALL\0"), Some(true));
        assert_eq!(drops_every_statement(b"DEALLOCATE ALL\0"), Some(false));
        for other in [&b"DEALLOCATE\0"[..], b"DISCARD PLANS\0", b"DELETE 1\0", b"DISCARD ALL", b""] {
            assert_eq!(drops_every_statement(other), None, "{other:?}");
        }
    }

    #[test]
    fn built_messages_frame_correctly() {
        let mut buf = BytesMut::new();
        error(&mut buf, Severity::Fatal, "28P01", "password authentication failed", Some("check it"));
        parameter_status(&mut buf, "TimeZone", "UTC");
        ready_for_query(&mut buf, b'I');
        let e = decode(&mut buf, 1 << 20).unwrap().unwrap();
        assert_eq!(e.tag(), b'E');
        assert_eq!(error_code(e.body()), Some("28P01"));
        let s = decode(&mut buf, 1 << 20).unwrap().unwrap();
        assert_eq!(parameter_fields(s.body()), Some(("TimeZone", "UTC")));
        assert_eq!(decode(&mut buf, 1 << 20).unwrap().unwrap().body(), b"I");
        assert!(buf.is_empty());
    }

    #[test]
    fn renaming_keeps_the_rest() {
        let body = b"S_1\0SELECT $1\0\0\x01\0\0\0\x17";
        let (name, rest) = parse_fields(body).unwrap();
        assert_eq!(name, "S_1");
        let renamed = parse_renamed("hp_7", rest);
        assert_eq!(&renamed[5..], b"hp_7\0SELECT $1\0\0\x01\0\0\0\x17");
        let bind = b"\0S_1\0\0\0\0\0\0\0";
        let (portal, stmt, rest) = bind_fields(bind).unwrap();
        assert_eq!((portal, stmt), ("", "S_1"));
        let mut buf = BytesMut::new();
        bind_renamed(&mut buf, portal, "hp_7", rest);
        assert_eq!(&buf[5..], b"\0hp_7\0\0\0\0\0\0\0");
    }

    #[test]
    fn the_first_word_of_a_query() {
        let cases: [(&[u8], &[u8]); 7] = [
            (b"SET search_path = x\0", b"SET"),
            (b" \t\n\x0bdiscard all;\0", b"discard"),
            (b"DEALLOCATE;\0", b"DEALLOCATE"),
            (b"show\0", b"show"),
            (b"\0", b""),
            (b"   ", b""),
            (b"/* c */ SET x = 1\0", b"/*"),
        ];
        for (body, word) in cases {
            assert_eq!(first_word(body), word, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn malformed_bodies_give_none() {
        assert_eq!(bind_fields(b"no-nul"), None);
        assert_eq!(target_fields(b""), None);
        assert_eq!(error_code(b"Cunterminated"), None);
        assert_eq!(first_column(b"\0\x01\0\0\0\x10truncated"), None);
        assert_eq!(first_column(b"\0\x01\xff\xff\xff\xff"), None, "NULL");
        assert_eq!(first_column(b"\0"), None);
    }

    #[test]
    fn reads_the_first_column_of_a_row() {
        let mut buf = BytesMut::new();
        text_rows(&mut buf, &["lsn", "x"], &[vec!["0/1A".into(), "y".into()]]);
        let _ = decode(&mut buf, 1 << 20).unwrap().unwrap();
        let row = decode(&mut buf, 1 << 20).unwrap().unwrap();
        assert_eq!(first_column(row.body()).as_deref(), Some("0/1A"));
    }
}
