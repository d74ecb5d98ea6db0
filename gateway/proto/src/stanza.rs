//! A top-level stream element kept as its start tag plus the raw bytes of its content.
//!
//! Routing reads and rewrites only the start tag (`to`, `from`, `type`, `id`) and forwards
//! the content bytes untouched. A module that needs the payload asks for
//! [`Stanza::to_element`], which parses on demand.

use std::sync::Arc;

use crate::element::{self, Element};
use crate::error::StreamError;
use crate::escape;
use crate::ns;
use crate::reader::{self, Limits};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StanzaKind {
    Message,
    Presence,
    Iq,
    /// Any other top-level element: stream negotiation (`<starttls/>`, `<auth/>`), stream
    /// management (`<r/>`, `<enable/>`), a peer's `<stream:error/>`…
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stanza {
    name: Box<str>,
    ns: Box<str>,
    /// Attributes of the top element, unescaped, without namespace declarations.
    /// Prefixed attributes keep their qualified name (`xml:lang`).
    attrs: Vec<(String, String)>,
    /// Prefix bindings declared on or above the top element that the element uses.
    /// Re-declared on the start tag when the stanza is written, so the content stays valid
    /// wherever it goes. Empty for ordinary stanzas.
    prefixes: Vec<(String, String)>,
    /// The raw, already validated content between the start and end tags.
    inner: Arc<str>,
}

impl Stanza {
    /// Builds a stanza from parts the reader has already validated.
    pub fn from_parts(
        name: impl Into<Box<str>>,
        ns: impl Into<Box<str>>,
        attrs: Vec<(String, String)>,
        prefixes: Vec<(String, String)>,
        inner: Arc<str>,
    ) -> Self {
        Stanza { name: name.into(), ns: ns.into(), attrs, prefixes, inner }
    }

    /// Serializes an element built by the server.
    pub fn from_element(el: &Element) -> Self {
        let mut inner = Vec::new();
        el.write_content(&mut inner);
        let inner = String::from_utf8(inner).expect("serializer writes UTF-8");
        Stanza {
            name: el.name().into(),
            ns: el.ns().into(),
            attrs: el.attrs().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
            prefixes: Vec::new(),
            inner: inner.into(),
        }
    }

    pub fn kind(&self) -> StanzaKind {
        if !ns::is_content_ns(&self.ns) {
            return StanzaKind::Other;
        }
        match &*self.name {
            "message" => StanzaKind::Message,
            "presence" => StanzaKind::Presence,
            "iq" => StanzaKind::Iq,
            _ => StanzaKind::Other,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// Moves a stanza from one content namespace to the other, as it crosses from a
    /// server stream to a client stream (and into storage, which keeps client stanzas).
    pub fn set_content_ns(&mut self, content_ns: &str) {
        debug_assert!(ns::is_content_ns(content_ns));
        if ns::is_content_ns(&self.ns) {
            self.ns = content_ns.into();
        }
    }

    pub fn is(&self, name: &str, ns: &str) -> bool {
        &*self.name == name && &*self.ns == ns
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn set_attr(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self.attrs.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value,
            None => self.attrs.push((name.to_owned(), value)),
        }
    }

    pub fn remove_attr(&mut self, name: &str) -> Option<String> {
        let pos = self.attrs.iter().position(|(k, _)| k == name)?;
        Some(self.attrs.remove(pos).1)
    }

    pub fn to(&self) -> Option<&str> {
        self.attr("to")
    }

    pub fn from(&self) -> Option<&str> {
        self.attr("from")
    }

    pub fn id(&self) -> Option<&str> {
        self.attr("id")
    }

    pub fn stanza_type(&self) -> Option<&str> {
        self.attr("type")
    }

    /// The raw content between the tags.
    pub fn inner(&self) -> &str {
        &self.inner
    }

    /// Appends a child given as XML the server wrote (so it is known to be well formed),
    /// without parsing the rest of the content.
    pub fn append_raw_child(&mut self, xml: &str) {
        let mut inner = String::with_capacity(self.inner.len() + xml.len());
        inner.push_str(&self.inner);
        inner.push_str(xml);
        self.inner = inner.into();
    }

    /// Writes the stanza into a stream whose content namespace is `stream_ns`
    /// (`jabber:client`, `jabber:server`, or `""` where nothing is inherited, as in
    /// RFC 7395 framing). A stanza in either content namespace takes the stream's.
    pub fn write_to(&self, out: &mut Vec<u8>, stream_ns: &str) {
        let ns = if ns::is_content_ns(&self.ns) && ns::is_content_ns(stream_ns) { stream_ns } else { &*self.ns };
        let ns = if ns.is_empty() { ns::CLIENT } else { ns };
        out.push(b'<');
        element::write_name(out, &self.name, ns);
        if element::needs_declaration(ns, stream_ns) {
            escape::namespace_declaration(out, "", ns);
        }
        for (prefix, uri) in &self.prefixes {
            escape::namespace_declaration(out, prefix, uri);
        }
        for (k, v) in &self.attrs {
            escape::attribute(out, k, v);
        }
        if self.inner.is_empty() {
            out.extend_from_slice(b"/>");
        } else {
            out.push(b'>');
            out.extend_from_slice(self.inner.as_bytes());
            out.extend_from_slice(b"</");
            element::write_name(out, &self.name, ns);
            out.push(b'>');
        }
    }

    /// About how many bytes [`Stanza::write_to`] writes (escaping and the namespace
    /// declaration aside), counted without writing: what holding it for a peer costs.
    pub fn serialized_len(&self) -> usize {
        let tags = 2 * self.name.len() + 5;
        let attrs: usize = self.attrs.iter().chain(&self.prefixes).map(|(k, v)| k.len() + v.len() + 4).sum();
        tags + attrs + self.inner.len()
    }

    /// Standalone serialization with the namespace declared.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.inner.len() + 64);
        self.write_to(&mut out, "");
        out
    }

    /// Parses the whole stanza into an [`Element`]. The content was validated when it was
    /// read, so this fails only for a stanza built from unchecked parts.
    pub fn to_element(&self) -> Result<Element, StreamError> {
        reader::parse_element(&self.to_bytes(), &Limits::unlimited())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_content_namespace_of_the_target_stream() {
        let el = Element::new("message", ns::CLIENT)
            .with_attr("to", "b@x")
            .with_child(Element::new("body", ns::CLIENT).with_text("hi & bye"));
        let st = Stanza::from_element(&el);
        assert_eq!(st.kind(), StanzaKind::Message);
        let mut c2s = Vec::new();
        st.write_to(&mut c2s, ns::CLIENT);
        assert_eq!(c2s, b"<message to='b@x'><body>hi &amp; bye</body></message>");
        let mut framed = Vec::new();
        st.write_to(&mut framed, "");
        assert_eq!(framed, b"<message xmlns='jabber:client' to='b@x'><body>hi &amp; bye</body></message>");
        let mut s2s = Vec::new();
        st.write_to(&mut s2s, ns::SERVER);
        assert!(s2s.starts_with(b"<message to="));
    }

    #[test]
    fn serialized_len_is_close_to_the_written_length() {
        let el = Element::new("message", ns::CLIENT)
            .with_attr("to", "b@x")
            .with_attr("id", "m1")
            .with_child(Element::new("body", ns::CLIENT).with_text("x".repeat(1000)));
        let st = Stanza::from_element(&el);
        let mut written = Vec::new();
        st.write_to(&mut written, ns::CLIENT);
        assert!(st.serialized_len().abs_diff(written.len()) <= 8, "{} vs {}", st.serialized_len(), written.len());
    }

    #[test]
    fn non_content_namespace_is_declared() {
        let st = Stanza::from_element(&Element::new("r", "urn:xmpp:sm:3"));
        assert_eq!(st.kind(), StanzaKind::Other);
        let mut out = Vec::new();
        st.write_to(&mut out, ns::CLIENT);
        assert_eq!(out, b"<r xmlns='urn:xmpp:sm:3'/>");
    }

    #[test]
    fn a_stanza_in_the_xml_namespace_is_written_with_its_prefix() {
        // Found by fuzzing: written as `<lang xmlns='http://www.w3.org/XML/1998/namespace'/>`,
        // which no parser accepts, so `to_element` failed on a stanza the reader had let in.
        let st = reader::parse_stanza(b"<xml:lang a='1'><x/></xml:lang>", &Limits::default()).unwrap();
        assert!(st.is("lang", ns::XML));
        assert_eq!(st.to_bytes(), b"<xml:lang a='1'><x/></xml:lang>");
        assert!(st.to_element().unwrap().child("x", "").is_some());
    }
}
