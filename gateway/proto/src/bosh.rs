//! XEP-0124 BOSH request bodies and the XEP-0206 stream events they carry, without I/O.
//!
//! The server's transport (sessions, rid windows, held requests) is in the server crate;
//! this is what it reads from each HTTP request before looking a session up.

use crate::element::{Element, Node};
use crate::error::{StreamError, StreamErrorCondition};
use crate::ns;
use crate::reader::{self, Limits, ReadEvent, StreamHeader};
use crate::stanza::Stanza;

pub const NS_HTTPBIND: &str = "http://jabber.org/protocol/httpbind";
pub const NS_XBOSH: &str = "urn:xmpp:xbosh";
/// XEP-0124 §14.1: a rid never exceeds 2^53 - 1, so that clients in any language can count.
pub const MAX_RID: u64 = (1 << 53) - 1;

/// A request's `<body/>` with its rid.
pub struct RequestBody {
    pub body: Element,
    pub rid: u64,
}

/// Reads an HTTP request's payload: one `<body/>` in the BOSH namespace with a `rid` of at
/// most [`MAX_RID`]. `None` is the XEP-0124 §17.2 `bad-request`.
pub fn parse_request(bytes: &[u8], limits: &Limits) -> Option<RequestBody> {
    let body = reader::parse_element(bytes, limits).ok()?;
    if !body.is("body", NS_HTTPBIND) {
        return None;
    }
    let rid = body.attr("rid").and_then(|r| r.parse::<u64>().ok()).filter(|&r| r <= MAX_RID)?;
    Some(RequestBody { body, rid })
}

/// Turns the children of a request `<body/>` into stream events.
pub fn body_events(body: &Element) -> Result<Vec<ReadEvent>, StreamError> {
    let mut events = Vec::new();
    if body.attr("xmpp:restart") == Some("true") {
        events.push(ReadEvent::StreamOpen(StreamHeader {
            content_ns: ns::CLIENT.to_owned(),
            to: body.attr("to").map(str::to_owned),
            version: Some("1.0".to_owned()),
            ..Default::default()
        }));
    }
    for node in body.nodes() {
        match node {
            Node::Element(child) => events.push(ReadEvent::Stanza(Stanza::from_element(child))),
            Node::Text(t) if t.trim().is_empty() => {}
            Node::Text(_) => return Err(StreamError::new(StreamErrorCondition::NotWellFormed)),
        }
    }
    if body.attr("type") == Some("terminate") {
        events.push(ReadEvent::StreamClose);
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(attrs: &str, content: &str) -> Option<RequestBody> {
        parse_request(format!("<body xmlns='{NS_HTTPBIND}' {attrs}>{content}</body>").as_bytes(), &Limits::default())
    }

    #[test]
    fn rids_stop_at_the_xep_limit() {
        assert_eq!(request(&format!("rid='{MAX_RID}'"), "").map(|r| r.rid), Some(MAX_RID));
        for rid in
            [(MAX_RID + 1).to_string(), u64::MAX.to_string(), "18446744073709551616".into(), "-1".into(), "".into()]
        {
            assert!(request(&format!("rid='{rid}'"), "").is_none(), "rid {rid}");
        }
        assert!(request("", "").is_none());
        assert!(parse_request(b"<body xmlns='urn:other' rid='1'/>", &Limits::default()).is_none());
    }

    #[test]
    fn children_become_stanzas_and_attributes_stream_events() {
        let req = request(
            "rid='7' sid='s' xmpp:restart='true' xmlns:xmpp='urn:xmpp:xbosh' to='example.com'",
            " <presence xmlns='jabber:client'/> ",
        )
        .unwrap();
        let events = body_events(&req.body).unwrap();
        assert!(matches!(&events[0], ReadEvent::StreamOpen(h) if h.to.as_deref() == Some("example.com")));
        assert!(matches!(&events[1], ReadEvent::Stanza(st) if st.is("presence", ns::CLIENT)));
        assert_eq!(events.len(), 2);
        let text = request("rid='8' sid='s'", "hello").unwrap();
        assert!(body_events(&text.body).is_err());
    }
}
