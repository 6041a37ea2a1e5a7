//! SCRAM messages from a client, from a server (the proxy's login with a client's key), a configured secret, and
//! the certificate read for channel binding: any bytes give a result, never a panic.
#![no_main]

use hapool_proxy::pg::auth::end_point::tls_server_end_point;
use hapool_proxy::pg::auth::passthrough::KeyedScram;
use hapool_proxy::pg::auth::scram::{ScramExchange, ScramVerifier};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tls_server_end_point(data);
    let verifier = ScramVerifier::with_salt("pw", [7; 16], 2);
    let split = data.first().map_or(0, |b| *b as usize).min(data.len());
    let (first, last) = data.split_at(split);
    for (end_point, plus) in [(None, false), (Some(&b"certificate hash"[..]), true), (Some(b"h"), false)] {
        if let Ok(exchange) = ScramExchange::start(&verifier, first, end_point, plus) {
            let _ = exchange.finish(last);
        }
    }
    let _ = ScramVerifier::parse(&String::from_utf8_lossy(data));
    let mut keyed = KeyedScram::new(&verifier, [3; 32]);
    let _ = keyed.client_final(first);
    let _ = keyed.verify(last);
});
