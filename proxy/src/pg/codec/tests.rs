use bytes::{BufMut, BytesMut};

use super::*;

fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    v.extend_from_slice(body);
    v
}

#[test]
fn frames_split_exactly_and_wait_for_more() {
    let mut buf = BytesMut::new();
    let q = frame(b'Q', b"SELECT 1\0");
    buf.extend_from_slice(&q[..7]);
    assert_eq!(decode(&mut buf, 1 << 20), Ok(None));
    buf.extend_from_slice(&q[7..]);
    buf.extend_from_slice(&frame(b'S', b""));
    let f = decode(&mut buf, 1 << 20).unwrap().unwrap();
    assert_eq!(f.tag(), b'Q');
    assert_eq!(f.body(), b"SELECT 1\0");
    assert_eq!(decode(&mut buf, 1 << 20).unwrap().unwrap().tag(), b'S');
    assert!(buf.is_empty());
}

#[test]
fn messages_are_borrowed_in_place_and_wait_for_more() {
    let q = frame(b'Q', b"SELECT 1\0");
    assert_eq!(message_len(&q[..4], 1 << 20), Ok(None), "no header yet");
    assert_eq!(message_len(&q[..7], 1 << 20), Ok(Some(q.len())), "the length is known before the message is in");
    assert_eq!(next_message(&q[..7], 1 << 20), Ok(None));
    let mut two = q.clone();
    two.extend_from_slice(&frame(b'S', b""));
    let first = next_message(&two, 1 << 20).unwrap().unwrap();
    assert_eq!((first.tag(), first.body(), first.bytes().len()), (b'Q', &b"SELECT 1\0"[..], q.len()));
    assert_eq!(next_message(&two[q.len()..], 1 << 20).unwrap().unwrap().tag(), b'S');
    assert_eq!(next_message(&[b'Q', 0, 0, 0, 3], 100), Err(FrameError::BadLength { len: 3 }));
    assert!(matches!(next_message(&[b'Q', 0x7f, 0xff, 0xff, 0xff], 100), Err(FrameError::TooLarge { .. })));
}

#[test]
fn bad_and_huge_lengths_are_errors() {
    let mut buf = BytesMut::from(&[b'Q', 0, 0, 0, 3][..]);
    assert_eq!(decode(&mut buf, 100), Err(FrameError::BadLength { len: 3 }));
    let mut buf = BytesMut::from(&[b'Q', 0x7f, 0xff, 0xff, 0xff][..]);
    assert!(matches!(decode(&mut buf, 1 << 20), Err(FrameError::TooLarge { .. })));
    let mut buf = BytesMut::from(&[b'Q', 0xff, 0xff, 0xff, 0xff][..]);
    assert!(matches!(decode(&mut buf, 1 << 20), Err(FrameError::BadLength { .. })));
}

#[test]
fn startup_packets_decode() {
    let mut body = BytesMut::new();
    body.put_i32(PROTOCOL_V3);
    body.put_slice(b"user\0app\0database\0db\0\0");
    let mut buf = BytesMut::new();
    buf.put_i32(body.len() as i32 + 4);
    buf.put_slice(&body);
    let s = decode_startup(&mut buf).unwrap().unwrap();
    assert_eq!(s, Startup::Startup { params: vec![("user".into(), "app".into()), ("database".into(), "db".into())] });

    let mut buf = BytesMut::new();
    buf.put_i32(8);
    buf.put_i32(SSL_REQUEST);
    assert_eq!(decode_startup(&mut buf).unwrap(), Some(Startup::SslRequest));

    let mut buf = BytesMut::new();
    buf.put_i32(16);
    buf.put_i32(CANCEL_REQUEST);
    buf.put_i32(7);
    buf.put_i32(9);
    assert_eq!(decode_startup(&mut buf).unwrap(), Some(Startup::Cancel { pid: 7, secret: 9 }));
}

#[test]
fn garbage_startups_are_errors_not_panics() {
    for bytes in [
        &b"GET / HTTP/1.1\r\n"[..],
        &[0, 0, 0, 4],
        &[0x7f, 0, 0, 0],
        &[0, 0, 0, 12, 0, 3, 0, 0, b'u', b's', b'e', b'r'],
    ] {
        let mut buf = BytesMut::from(bytes);
        let _ = decode_startup(&mut buf);
    }
    let mut buf = BytesMut::new();
    buf.put_i32(13);
    buf.put_i32(PROTOCOL_V3);
    buf.put_slice(b"user\0");
    assert!(decode_startup(&mut buf).is_err(), "unterminated parameters");
}

/// A cheap stand-in for the fuzzers in CI: many pseudo-random buffers (fixed seed), decoded to the end.
#[test]
fn random_bytes_never_panic_the_decoders() {
    let mut next = crate::testutil::xorshift(0x9e37_79b9_7f4a_7c15u64);
    for _ in 0..20_000 {
        let len = (next() % 64) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let mut startup = BytesMut::from(&bytes[..]);
        let _ = decode_startup(&mut startup);
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(frame)) = decode(&mut buf, 1 << 16) {
            let _ = crate::pg::msg::bind_fields(frame.body());
            let _ = crate::pg::msg::target_fields(frame.body());
            let _ = crate::pg::msg::error_code(frame.body());
        }
        let mut at = 0;
        while let Ok(Some(frame)) = next_message(&bytes[at..], 1 << 16) {
            at += frame.bytes().len();
            let _ = crate::pg::msg::parameter_fields(frame.body());
        }
    }
}

#[test]
fn peek_sees_complete_frames_without_consuming_them() {
    let mut buf = frame(b'P', b"\0SELECT 1\0\0\0");
    buf.extend(frame(b'S', b""));
    buf.extend(&frame(b'Q', b"SELECT 2\0")[..6]);
    let seen: Vec<u8> = peek(&buf).map(|(tag, _)| tag).collect();
    assert_eq!(seen, b"PS");
    assert_eq!(peek(&buf).next().unwrap().1, b"\0SELECT 1\0\0\0");
    let bad = [b'Q', 0, 0, 0, 1, 0];
    assert_eq!(peek(&bad).count(), 0);
    assert_eq!(peek(&[b'Q', 0xff, 0xff, 0xff, 0xff]).count(), 0);
}
