//! A client written out by hand, for the tests that need messages no driver sends (pipelines split at a
//! chosen place, errors in the middle of a batch, malformed input): it logs in as `trusted` (trust auth).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::proxy::TestProxy;

/// A protocol 3.0 StartupMessage for `user` and database `app`.
pub fn startup(user: &str) -> Vec<u8> {
    let mut body = 196_608i32.to_be_bytes().to_vec();
    body.extend_from_slice(format!("user\0{user}\0database\0app\0\0").as_bytes());
    let mut packet = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    packet.extend_from_slice(&body);
    packet
}

/// A raw connection logged in as `trusted`, past its first ReadyForQuery.
pub fn raw_login(proxy: &TestProxy, read_timeout: Duration) -> TcpStream {
    let mut s = TcpStream::connect(proxy.addr).unwrap();
    s.set_read_timeout(Some(read_timeout)).unwrap();
    s.write_all(&startup("trusted")).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(6).any(|w| w == [b'Z', 0, 0, 0, 5, b'I']) {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed during login");
        got.extend_from_slice(&buf[..n]);
    }
    s
}

/// One protocol message: its tag, its length, its body.
pub fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// The messages a raw connection reads up to and including its next ReadyForQuery, as (tag, body).
pub fn read_to_ready(s: &mut TcpStream) -> Vec<(u8, Vec<u8>)> {
    read_to_readies(s, 1)
}

/// The messages a raw connection reads up to and including its `n`th next ReadyForQuery (one read may bring
/// the answers to several Syncs: nothing is read past the last one asked for, as the proxy sends nothing more).
pub fn read_to_readies(s: &mut TcpStream, n: usize) -> Vec<(u8, Vec<u8>)> {
    read_to_nth(s, b'Z', n)
}

/// The messages a raw connection reads up to and including the `n`th next one with `tag`, as (tag, body);
/// nothing may come after it.
pub fn read_to_nth(s: &mut TcpStream, tag: u8, mut n: usize) -> Vec<(u8, Vec<u8>)> {
    let (mut got, mut messages, mut buf) = (Vec::new(), Vec::new(), [0u8; 4096]);
    loop {
        while got.len() >= 5 {
            let len = u32::from_be_bytes(got[1..5].try_into().unwrap()) as usize;
            if got.len() < len + 1 {
                break;
            }
            let frame: Vec<u8> = got.drain(..len + 1).collect();
            messages.push((frame[0], frame[5..].to_vec()));
            if frame[0] == tag {
                n -= 1;
                if n == 0 {
                    assert!(got.is_empty(), "more came than the answers asked for: {got:?}");
                    return messages;
                }
            }
        }
        let n = s.read(&mut buf).expect("answers within the read timeout");
        assert!(n > 0, "the proxy closed the connection");
        got.extend_from_slice(&buf[..n]);
    }
}
