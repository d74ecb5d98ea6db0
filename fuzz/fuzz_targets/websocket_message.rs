//! RFC 7395 framing: each WebSocket text message is one `<open/>`, `<close/>` or stanza.
#![no_main]

use jabberwock_fuzz::{check_event, small_limits};
use jabberwock_proto::websocket::parse_message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A text message is UTF-8 by the time it reaches the parser (RFC 6455 §5.6).
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(ev) = parse_message(text, &small_limits()) {
        check_event(&ev);
    }
});
