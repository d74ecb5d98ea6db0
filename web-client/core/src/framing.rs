//! RFC 7395 framing: what goes into, and comes out of, one WebSocket text message.
//!
//! The connection state machine speaks in [`Frame`]s and [`Input`]s so that other
//! transports (BOSH, XEP-0206) can encode the same steps their own way.

use jabberwock_proto::{reader, Element, Limits};

use crate::ns;

/// Something the connection wants sent.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// Open a stream to `to`; `restart` after SASL success.
    Open { to: String, restart: bool },
    /// A stanza or a negotiation element.
    Element(Element),
    /// Close the stream.
    Close,
}

/// Something the transport received.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// The server opened (or reopened) its stream.
    Opened {
        id: Option<String>,
    },
    Element(Element),
    /// The server closed its stream; `see_other` is a redirection (RFC 7395 §3.6.1).
    Closed {
        see_other: Option<String>,
    },
}

/// Encodes a frame as one WebSocket text message.
pub fn ws_encode(frame: &Frame) -> String {
    match frame {
        Frame::Open { to, .. } => {
            Element::new("open", ns::FRAMING).with_attr("to", to.as_str()).with_attr("version", "1.0").to_xml_string()
        }
        Frame::Element(el) => el.to_xml_string(),
        Frame::Close => Element::new("close", ns::FRAMING).to_xml_string(),
    }
}

/// Decodes one WebSocket text message.
pub fn ws_decode(text: &str, limits: &Limits) -> Result<Input, jabberwock_proto::StreamError> {
    let el = reader::parse_element(text.as_bytes(), limits)?;
    if el.ns() == ns::FRAMING {
        match el.name() {
            "open" => return Ok(Input::Opened { id: el.attr("id").map(str::to_owned) }),
            "close" => return Ok(Input::Closed { see_other: el.attr("see-other-uri").map(str::to_owned) }),
            _ => {}
        }
    }
    Ok(Input::Element(el))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_encode_as_rfc7395_says() {
        let open = ws_encode(&Frame::Open { to: "localhost".into(), restart: false });
        assert_eq!(ws_decode(&open, &Limits::default()).unwrap(), Input::Opened { id: None });
        assert!(open.contains("urn:ietf:params:xml:ns:xmpp-framing") && open.contains("to=") && open.contains("version="));
        let close = ws_encode(&Frame::Close);
        assert_eq!(ws_decode(&close, &Limits::default()).unwrap(), Input::Closed { see_other: None });
    }

    #[test]
    fn server_frames_decode() {
        let l = Limits::default();
        let open = "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' from='localhost' id='abc' version='1.0' xml:lang='en'/>";
        assert_eq!(ws_decode(open, &l).unwrap(), Input::Opened { id: Some("abc".into()) });
        let features = "<stream:features xmlns:stream='http://etherx.jabber.org/streams'><mechanisms \
            xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1</mechanism></mechanisms></stream:features>";
        let Input::Element(f) = ws_decode(features, &l).unwrap() else { panic!() };
        assert!(f.is("features", ns::STREAM));
        let close = "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing' see-other-uri='wss://other/ws'/>";
        assert_eq!(ws_decode(close, &l).unwrap(), Input::Closed { see_other: Some("wss://other/ws".into()) });
        let msg = "<message xmlns='jabber:client' from='a@b/c' type='chat'><body>x</body></message>";
        assert!(matches!(ws_decode(msg, &l).unwrap(), Input::Element(e) if e.is("message", ns::CLIENT)));
        assert!(ws_decode("<open", &l).is_err());
        assert!(ws_decode("<a/><b/>", &l).is_err());
    }
}
