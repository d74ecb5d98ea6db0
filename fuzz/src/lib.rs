//! Checks shared by the fuzz targets: what the server relies on for every event a parser
//! lets through.

use jabberwock_proto::{reader, Limits, ReadEvent, Stanza};

/// Limits small enough that the fuzzer reaches them, and the checks behind them, quickly.
pub fn small_limits() -> Limits {
    Limits { max_stanza_bytes: 2048, max_depth: 8, max_attrs: 8 }
}

/// A stanza the reader accepted must parse whole (modules call `to_element` on it), and
/// what the server writes for it must read back as the same element.
pub fn check_stanza(st: &Stanza) {
    let el = st.to_element().expect("an accepted stanza parses as an element");
    let written = st.to_bytes();
    let again = reader::parse_stanza(&written, &Limits::unlimited()).expect("a written stanza reads back");
    assert_eq!(again.to_element().expect("re-read stanza parses"), el, "{}", String::from_utf8_lossy(&written));
}

pub fn check_event(ev: &ReadEvent) {
    if let ReadEvent::Stanza(st) = ev {
        check_stanza(st);
    }
}
