//! What the session core hands to a transport: frames to write and what to do next.
//!
//! Each transport encodes frames its own way. TCP writes a stream header and
//! `</stream:stream>`; RFC 7395 WebSocket writes `<open/>` and `<close/>` and declares the
//! content namespace on every stanza.

use jabberwock_proto::writer::{self, HeaderOut};
use jabberwock_proto::{ns, Element, Stanza, StreamError};

#[derive(Debug)]
pub enum Frame {
    /// Our stream header: the answer to a peer's (with an `id`), or the opening of an
    /// outbound server-to-server stream (without).
    Header { from: String, to: Option<String>, id: Option<String> },
    /// `<stream:features>` or another element of the streams namespace.
    StreamElement(Element),
    /// A negotiation element such as `<proceed/>` or `<success/>`.
    Element(Element),
    Stanza(Stanza),
    /// `<stream:error>`; the transport closes after it.
    Error(StreamError),
    /// The end of the stream.
    Close,
}

/// What the transport does after the session handled an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Flow {
    Continue,
    /// Write the pending frames, then negotiate TLS and start a new stream.
    StartTls,
    /// SASL succeeded: the client opens a new stream on the same connection.
    Restart,
    /// Write the pending frames, then close the connection.
    Close,
    /// The client asked to resume a parked session (XEP-0198).
    Resume,
    /// Another connection resumed this session: drop this connection, keep the session.
    Detach,
}

/// Encodes frames for a plain XML stream (TCP, TLS) whose content namespace is
/// `content_ns`: `jabber:client`, or `jabber:server` with the dialback prefix declared.
pub fn encode_stream(frames: &[Frame], out: &mut Vec<u8>, content_ns: &str) {
    let extra_ns: &[(&str, &str)] = if content_ns == ns::SERVER { &[("db", ns::DIALBACK)] } else { &[] };
    for f in frames {
        match f {
            Frame::Header { from, to, id } => writer::stream_header(
                out,
                &HeaderOut { content_ns, from: Some(from), to: to.as_deref(), id: id.as_deref(), extra_ns, ..Default::default() },
            ),
            Frame::StreamElement(el) => writer::stream_element(out, el),
            Frame::Element(el) => el.write_to(out, content_ns),
            Frame::Stanza(st) => st.write_to(out, content_ns),
            Frame::Error(e) => writer::stream_error(out, e),
            Frame::Close => out.extend_from_slice(writer::STREAM_CLOSE),
        }
    }
}
