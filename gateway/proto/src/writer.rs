//! The server's side of the stream: headers, stream-level elements and the close tag.

use crate::element::Element;
use crate::error::StreamError;
use crate::escape;
use crate::ns;

/// Attributes of a stream header the server sends.
#[derive(Clone, Debug, Default)]
pub struct HeaderOut<'a> {
    pub content_ns: &'a str,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub id: Option<&'a str>,
    pub lang: Option<&'a str>,
    /// Extra namespace declarations, for example `xmlns:db` for dialback.
    pub extra_ns: &'a [(&'a str, &'a str)],
}

/// Writes `<?xml?><stream:stream …>` with version 1.0.
pub fn stream_header(out: &mut Vec<u8>, h: &HeaderOut<'_>) {
    out.extend_from_slice(b"<?xml version='1.0'?><stream:stream");
    escape::namespace_declaration(out, "", h.content_ns);
    escape::namespace_declaration(out, "stream", ns::STREAM);
    for (prefix, uri) in h.extra_ns {
        escape::namespace_declaration(out, prefix, uri);
    }
    for (name, value) in [("from", h.from), ("to", h.to), ("id", h.id), ("xml:lang", h.lang)] {
        if let Some(v) = value {
            escape::attribute(out, name, v);
        }
    }
    out.extend_from_slice(b" version='1.0'>");
}

/// Writes an element of the streams namespace (`features`, `error`) with the `stream:`
/// prefix that the header declared, as every client expects.
pub fn stream_element(out: &mut Vec<u8>, el: &Element) {
    debug_assert_eq!(el.ns(), ns::STREAM);
    out.extend_from_slice(b"<stream:");
    out.extend_from_slice(el.name().as_bytes());
    for (k, v) in el.attrs() {
        escape::attribute(out, k, v);
    }
    if el.nodes().is_empty() {
        out.extend_from_slice(b"/>");
        return;
    }
    out.push(b'>');
    for child in el.children() {
        child.write_to(out, "");
    }
    out.extend_from_slice(b"</stream:");
    out.extend_from_slice(el.name().as_bytes());
    out.push(b'>');
}

pub fn stream_error(out: &mut Vec<u8>, err: &StreamError) {
    stream_element(out, &err.to_element());
}

pub const STREAM_CLOSE: &[u8] = b"</stream:stream>";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::StreamErrorCondition;

    #[test]
    fn header_and_error() {
        let mut out = Vec::new();
        stream_header(&mut out, &HeaderOut { content_ns: ns::CLIENT, from: Some("localhost"), id: Some("abc"), ..Default::default() });
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
             from='localhost' id='abc' version='1.0'>"
        );
        out.clear();
        stream_error(&mut out, &StreamError::new(StreamErrorCondition::HostUnknown));
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
        );
    }
}
