//! Building blocks for the stanzas the server writes itself, shared by the core and the
//! modules: replies and errors (RFC 6120 §8.3), XEP-0297 forwarding, XEP-0082 times and
//! random ids.

use jabberwock_proto::{escape, ns, Element, Stanza, StanzaError, StanzaKind};

/// A `type='result'` reply to `req`.
pub fn iq_result(req: &Stanza, payload: Option<Element>) -> Stanza {
    let mut el = Element::new("iq", req.ns())
        .with_attr("type", "result")
        .with_opt_attr("id", req.id())
        .with_opt_attr("to", req.from())
        .with_opt_attr("from", req.to());
    if let Some(p) = payload {
        el.push(p);
    }
    Stanza::from_element(&el)
}

/// A `type='error'` reply to `req` (RFC 6120 §8.3.1). A presence keeps its original
/// payload, so that the sender can tell what failed (a group chat join carries
/// `<x xmlns='http://jabber.org/protocol/muc'/>`); messages and iqs, which can be large,
/// go back without theirs.
pub fn error_reply(req: &Stanza, err: StanzaError) -> Stanza {
    let mut el = Element::new(req.name(), req.ns())
        .with_attr("type", "error")
        .with_opt_attr("id", req.id())
        .with_opt_attr("to", req.from())
        .with_opt_attr("from", req.to());
    if req.kind() == StanzaKind::Presence {
        if let Ok(original) = req.to_element() {
            for child in original.children() {
                el.push(child.clone());
            }
        }
    }
    el.push(err.to_element(req.ns()));
    Stanza::from_element(&el)
}

/// The error reply for an undeliverable stanza; errors themselves never bounce.
pub fn bounce_reply(st: &Stanza, err: StanzaError) -> Vec<Stanza> {
    if st.stanza_type() == Some("error") {
        return Vec::new();
    }
    vec![error_reply(st, err)]
}

/// `<forwarded/>` (XEP-0297) around a stanza's XML, with an optional delay stamp.
pub fn forwarded(original_xml: &str, stamp: Option<&str>) -> String {
    let mut out = Vec::from(&b"<forwarded"[..]);
    escape::namespace_declaration(&mut out, "", ns::FORWARD);
    out.push(b'>');
    if let Some(stamp) = stamp {
        out.extend_from_slice(b"<delay");
        escape::namespace_declaration(&mut out, "", ns::DELAY);
        escape::attribute(&mut out, "stamp", stamp);
        out.extend_from_slice(b"/>");
    }
    out.extend_from_slice(original_xml.as_bytes());
    out.extend_from_slice(b"</forwarded>");
    String::from_utf8(out).expect("UTF-8")
}

/// An XEP-0082 timestamp in UTC, with milliseconds.
pub fn xep0082(t: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    t.to_offset(time::UtcOffset::UTC).format(&f).expect("valid format")
}

/// Now, in microseconds since the Unix epoch: how archives stamp their items.
pub fn now_us() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64
}

/// A random identifier for stream ids, generated resources and stanza ids.
pub fn random_id() -> String {
    use rand::Rng;
    let bytes: [u8; 12] = rand::rng().random();
    base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
}
