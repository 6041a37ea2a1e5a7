//! SCRAM messages from a client: any bytes give a result, never a panic.
#![no_main]

use hapool_proxy::pg::auth::scram::{ScramExchange, ScramVerifier};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let verifier = ScramVerifier::with_salt("pw", [7; 16], 2);
    let split = data.first().map_or(0, |b| *b as usize).min(data.len());
    let (first, last) = data.split_at(split);
    if let Ok(exchange) = ScramExchange::start(&verifier, first) {
        let _ = exchange.finish(last);
    }
});
