//! The stream reader (TCP and TLS streams): bytes arrive in arbitrary pieces, and how they
//! are cut must not change what is read.
#![no_main]

use jabberwock_fuzz::{check_event, small_limits};
use jabberwock_proto::{ns, ReadEvent, StreamErrorCondition, StreamReader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the size of the pieces.
    let Some((&piece, input)) = data.split_first() else { return };
    let whole = read(&[input]);
    let pieces: Vec<&[u8]> = input.chunks(usize::from(piece % 64) + 1).collect();
    assert_eq!(read(&pieces), whole, "read whole, then in pieces of {}", piece % 64 + 1);
});

/// Every event, then the condition of the stream error that ended the input, if any.
fn read(pieces: &[&[u8]]) -> (Vec<ReadEvent>, Option<StreamErrorCondition>) {
    let mut reader = StreamReader::new(small_limits());
    let mut events = Vec::new();
    for piece in pieces {
        reader.feed(piece);
        loop {
            match reader.next_event() {
                Ok(Some(ev)) => {
                    check_event(&ev);
                    // As after SASL success: the stream restarts with the bytes already read.
                    if matches!(&ev, ReadEvent::Stanza(st) if st.is("auth", ns::SASL)) {
                        reader.restart();
                    }
                    events.push(ev);
                }
                Ok(None) => break,
                Err(e) => return (events, Some(e.condition)),
            }
        }
        if reader.is_idle() {
            reader.release_buffer();
        }
    }
    (events, None)
}
