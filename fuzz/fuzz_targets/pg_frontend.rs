//! Whatever a client (or server) sends, the PostgreSQL decoders return a frame, "need more" or an error: never a panic.
#![no_main]

use bytes::BytesMut;
use hapool_proxy::pg::{codec, msg, session, sqltext};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut startup = BytesMut::from(data);
    if let Ok(Some(codec::Startup::Startup { params })) = codec::decode_startup(&mut startup) {
        let _ = session::startup_params::followed(&params, &[]);
    }
    // The text as an `options` value, as a client could send it.
    let text = String::from_utf8_lossy(data).into_owned();
    let _ = session::startup_params::followed(&[("options".to_string(), text)], &[]);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = codec::decode(&mut buf, 1 << 20) {
        let body = frame.body();
        let _ = msg::parse_fields(body);
        let _ = msg::bind_fields(body);
        let _ = msg::target_fields(body);
        let _ = msg::query_text(body);
        let _ = msg::first_word(body);
        let _ = session::leftovers::query_leftovers(body);
        // The quick test at the first letter agrees with reading the keyword.
        assert_eq!(
            sqltext::keyword_is(body, b"deallocate"),
            sqltext::leading_keyword(body).eq_ignore_ascii_case(b"deallocate")
        );
        let _ = session::statement_words::ends_transaction(body);
        let _ = msg::query_text(body).map(session::statement_words::deallocated_name);
        let _ = session::text_drops_all(session::leftovers::Head::of(body));
        let _ = msg::query_text(body).map(session::unreported::change);
        let _ = msg::query_text(body).map(session::unreported::several);
        let _ = msg::parameter_fields(body);
        let _ = msg::error_code(body);
        let _ = msg::first_column(body);
        let _ = codec::peek(&buf).count();
    }
    // The server's answers are read in place.
    let mut at = 0;
    while let Ok(Some(frame)) = codec::next_message(&data[at..], 1 << 20) {
        at += frame.bytes().len();
        let _ = msg::parameter_fields(frame.body());
        let _ = session::unreported::transaction_tag(frame.body());
    }
});
