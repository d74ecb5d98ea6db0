//! RFC 7395 XMPP over WebSocket, without I/O: one complete element per text message,
//! `<open/>` and `<close/>` in the framing namespace instead of the stream tags.

use crate::error::{StreamError, StreamErrorCondition};
use crate::ns;
use crate::reader::{self, Limits, ReadEvent, StreamHeader};

/// One text message as a stream event: `<open/>`, `<close/>` or a stanza.
pub fn parse_message(text: &str, limits: &Limits) -> Result<ReadEvent, StreamError> {
    if text.len() > limits.max_stanza_bytes {
        return Err(StreamError::with_text(StreamErrorCondition::PolicyViolation, "stanza too large"));
    }
    let st = reader::parse_stanza(text.as_bytes(), limits)?;
    if st.ns() != ns::FRAMING {
        return Ok(ReadEvent::Stanza(st));
    }
    match st.name() {
        "open" => Ok(ReadEvent::StreamOpen(StreamHeader {
            // RFC 7395 §3.3.2: the framing carries the stream; content is jabber:client.
            content_ns: ns::CLIENT.to_owned(),
            to: st.to().map(str::to_owned),
            from: st.from().map(str::to_owned),
            id: st.id().map(str::to_owned),
            version: st.attr("version").map(str::to_owned),
            lang: st.attr("xml:lang").map(str::to_owned),
            prefixes: Vec::new(),
        })),
        "close" => Ok(ReadEvent::StreamClose),
        _ => Err(StreamError::new(StreamErrorCondition::UnsupportedStanzaType)),
    }
}
