//! Framing of the PostgreSQL v3 protocol: pure functions over a buffer, no I/O.
//!
//! A frame keeps its header: forwarding it is one slice, and its body is `frame[5..]`.

use bytes::{Buf, Bytes, BytesMut};

/// Protocol version 3.0.
pub const PROTOCOL_V3: i32 = 196_608;
pub const SSL_REQUEST: i32 = 80_877_103;
pub const GSSENC_REQUEST: i32 = 80_877_104;
pub const CANCEL_REQUEST: i32 = 80_877_102;

/// Framing errors: the peer sent something that is not the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("message length {len} is invalid")]
    BadLength { len: i64 },
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
}

/// One tagged message, header included: `[tag][len: i32][body]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame(pub Bytes);

impl Frame {
    pub fn tag(&self) -> u8 {
        self.0[0]
    }

    pub fn body(&self) -> &[u8] {
        &self.0[5..]
    }

    pub fn bytes(&self) -> &Bytes {
        &self.0
    }
}

/// A complete tagged message borrowed from the buffer it was read into, header included. The server's answers
/// are handled so: splitting each off its buffer as a `Frame` costs a shared handle and two atomic operations
/// per message, for messages that are only looked at and copied on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRef<'a>(&'a [u8]);

impl<'a> FrameRef<'a> {
    pub fn tag(&self) -> u8 {
        self.0[0]
    }

    pub fn body(&self) -> &'a [u8] {
        &self.0[5..]
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.0
    }
}

/// The length of the message at the front of `buf`, header included, once its header is in (the message itself
/// may not be); `Ok(None)` before that.
pub fn message_len(buf: &[u8], max: usize) -> Result<Option<usize>, FrameError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 {
        return Err(FrameError::BadLength { len: len.into() });
    }
    let total = len as usize + 1;
    if total > max {
        return Err(FrameError::TooLarge { len: total, max });
    }
    Ok(Some(total))
}

/// The complete message at the front of `buf`, borrowed; `Ok(None)` when more bytes are needed.
pub fn next_message(buf: &[u8], max: usize) -> Result<Option<FrameRef<'_>>, FrameError> {
    Ok(message_len(buf, max)?.filter(|total| buf.len() >= *total).map(|total| FrameRef(&buf[..total])))
}

/// Splits one complete tagged message off the front of `buf`; `Ok(None)` when more bytes are needed.
pub fn decode(buf: &mut BytesMut, max: usize) -> Result<Option<Frame>, FrameError> {
    let Some(total) = message_len(buf, max)? else { return Ok(None) };
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    Ok(Some(Frame(buf.split_to(total).freeze())))
}

/// The complete frames at the front of `buf` as (tag, body), without consuming them: a look ahead at what a
/// client has already sent. Stops at the first incomplete or malformed frame.
pub fn peek(buf: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.len() < 5 {
            return None;
        }
        let len = i32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]);
        let total = usize::try_from(len).ok().filter(|l| *l >= 4)? + 1;
        if rest.len() < total {
            return None;
        }
        let (frame, tail) = rest.split_at(total);
        rest = tail;
        Some((frame[0], &frame[5..]))
    })
}

/// The first message of a connection (no tag byte).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Startup {
    SslRequest,
    GssEncRequest,
    Cancel {
        pid: i32,
        secret: i32,
    },
    /// Protocol 3.0 startup with its parameters (user, database, options…).
    Startup {
        params: Vec<(String, String)>,
    },
    /// Any other protocol version.
    Unsupported {
        version: i32,
    },
}

/// The largest startup packet accepted (PostgreSQL allows 10000 bytes).
pub const MAX_STARTUP: usize = 10_000;

/// Splits the startup packet off `buf`; `Ok(None)` when more bytes are needed.
pub fn decode_startup(buf: &mut BytesMut) -> Result<Option<Startup>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if !(8..=MAX_STARTUP as i32).contains(&len) {
        return Err(FrameError::BadLength { len: len.into() });
    }
    let len = len as usize;
    if buf.len() < len {
        return Ok(None);
    }
    let mut packet = buf.split_to(len);
    packet.advance(4);
    let code = packet.get_i32();
    Ok(Some(match code {
        SSL_REQUEST => Startup::SslRequest,
        GSSENC_REQUEST => Startup::GssEncRequest,
        CANCEL_REQUEST if packet.len() == 8 => Startup::Cancel { pid: packet.get_i32(), secret: packet.get_i32() },
        CANCEL_REQUEST => return Err(FrameError::BadLength { len: len as i64 }),
        PROTOCOL_V3 => {
            Startup::Startup { params: parse_params(&packet).ok_or(FrameError::BadLength { len: len as i64 })? }
        }
        version => Startup::Unsupported { version },
    }))
}

/// `name\0value\0…\0`.
fn parse_params(mut body: &[u8]) -> Option<Vec<(String, String)>> {
    let mut params = Vec::new();
    loop {
        let (name, rest) = cstr(body)?;
        if name.is_empty() {
            return Some(params);
        }
        let (value, rest) = cstr(rest)?;
        params.push((name.to_string(), value.to_string()));
        body = rest;
    }
}

/// A NUL-terminated UTF-8 string at the front of `body`, and what follows it.
pub fn cstr(body: &[u8]) -> Option<(&str, &[u8])> {
    let end = body.iter().position(|&b| b == 0)?;
    let s = std::str::from_utf8(&body[..end]).ok()?;
    Some((s, &body[end + 1..]))
}

#[cfg(test)]
mod tests;
