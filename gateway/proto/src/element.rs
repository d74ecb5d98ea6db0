//! A small owned XML tree with resolved namespaces.
//!
//! Names are local names; every element carries its namespace URI. Prefixes are not kept:
//! the serializer writes default-namespace declarations only where the namespace changes.
//! Prefixed attributes are stored under their qualified name (`xml:lang`, `p:x`); the
//! parser adds the declaration of a prefix other than `xml` as an `xmlns:p` attribute.

use crate::escape;
use crate::ns;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element {
    name: String,
    ns: String,
    attrs: Vec<(String, String)>,
    children: Vec<Node>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
}

impl Element {
    pub fn new(name: impl Into<String>, ns: impl Into<String>) -> Self {
        Element { name: name.into(), ns: ns.into(), attrs: Vec::new(), children: Vec::new() }
    }

    /// Builder: sets an attribute.
    pub fn with_attr(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.set_attr(name, value);
        self
    }

    /// Builder: sets an attribute when `value` is `Some`.
    pub fn with_opt_attr(mut self, name: impl Into<String>, value: Option<impl Into<String>>) -> Self {
        if let Some(v) = value {
            self.set_attr(name, v);
        }
        self
    }

    /// Builder: appends a child element.
    pub fn with_child(mut self, child: Element) -> Self {
        self.children.push(Node::Element(child));
        self
    }

    /// Builder: appends a text node.
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.children.push(Node::Text(text.into()));
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn ns(&self) -> &str {
        &self.ns
    }

    pub fn is(&self, name: &str, ns: &str) -> bool {
        self.name == name && self.ns == ns
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn attrs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.attrs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn set_attr(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.attrs.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.attrs.push((name, value)),
        }
    }

    pub fn remove_attr(&mut self, name: &str) -> Option<String> {
        let pos = self.attrs.iter().position(|(k, _)| k == name)?;
        Some(self.attrs.remove(pos).1)
    }

    pub fn nodes(&self) -> &[Node] {
        &self.children
    }

    pub fn push(&mut self, child: Element) {
        self.children.push(Node::Element(child));
    }

    pub fn push_text(&mut self, text: impl Into<String>) {
        self.children.push(Node::Text(text.into()));
    }

    /// Child elements, skipping text.
    pub fn children(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    pub fn children_mut(&mut self) -> impl Iterator<Item = &mut Element> {
        self.children.iter_mut().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    pub fn child(&self, name: &str, ns: &str) -> Option<&Element> {
        self.children().find(|e| e.is(name, ns))
    }

    pub fn child_mut(&mut self, name: &str, ns: &str) -> Option<&mut Element> {
        self.children_mut().find(|e| e.is(name, ns))
    }

    /// The first child element, ignoring text: the payload of an iq.
    pub fn first_child(&self) -> Option<&Element> {
        self.children().next()
    }

    /// Removes every child element with this name and namespace.
    pub fn remove_children(&mut self, name: &str, ns: &str) {
        self.retain_children(|e| !e.is(name, ns));
    }

    /// Keeps the child elements for which `keep` is true (text is kept).
    pub fn retain_children(&mut self, mut keep: impl FnMut(&Element) -> bool) {
        self.children.retain(|n| match n {
            Node::Element(e) => keep(e),
            Node::Text(_) => true,
        });
    }

    /// Concatenated text of the direct text children.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for n in &self.children {
            if let Node::Text(t) = n {
                s.push_str(t);
            }
        }
        s
    }

    /// Text of the child `name` in `ns`, if that child exists.
    pub fn child_text(&self, name: &str, ns: &str) -> Option<String> {
        self.child(name, ns).map(Element::text)
    }

    /// Serializes this element. `parent_ns` is the default namespace in scope where the
    /// element is written; `xmlns` is declared only when it differs.
    pub fn write_to(&self, out: &mut Vec<u8>, parent_ns: &str) {
        self.write_start(out, parent_ns);
        if self.children.is_empty() {
            out.extend_from_slice(b"/>");
            return;
        }
        out.push(b'>');
        self.write_content(out);
        self.write_end(out);
    }

    /// Writes `<name attrs…` without closing the tag.
    pub(crate) fn write_start(&self, out: &mut Vec<u8>, parent_ns: &str) {
        out.push(b'<');
        write_name(out, &self.name, &self.ns);
        if needs_declaration(&self.ns, parent_ns) {
            escape::namespace_declaration(out, "", &self.ns);
        }
        for (k, v) in &self.attrs {
            escape::attribute(out, k, v);
        }
    }

    /// Writes the children, in this element's namespace scope.
    pub fn write_content(&self, out: &mut Vec<u8>) {
        for n in &self.children {
            match n {
                Node::Element(e) => e.write_to(out, &self.ns),
                Node::Text(t) => escape::text(out, t),
            }
        }
    }

    pub(crate) fn write_end(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"</");
        write_name(out, &self.name, &self.ns);
        out.push(b'>');
    }

    /// Serializes with an explicit namespace declaration, as a standalone document fragment.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out, "");
        out
    }

    pub fn to_xml_string(&self) -> String {
        String::from_utf8(self.to_bytes()).expect("serializer writes UTF-8")
    }
}

/// Writes the name of an element in `ns`. The XML namespace cannot be declared as the
/// default (Namespaces in XML 1.0 §3), so an element in it keeps its fixed `xml:` prefix.
pub(crate) fn write_name(out: &mut Vec<u8>, name: &str, ns: &str) {
    if ns == ns::XML {
        out.extend_from_slice(b"xml:");
    }
    out.extend_from_slice(name.as_bytes());
}

/// Whether an element in `ns` declares it, where `parent_ns` is the default namespace.
pub(crate) fn needs_declaration(ns: &str, parent_ns: &str) -> bool {
    ns != parent_ns && ns != ns::XML
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_namespace_only_where_it_changes() {
        let el = Element::new("iq", "jabber:client")
            .with_attr("type", "result")
            .with_attr("id", "a'1")
            .with_child(Element::new("query", "jabber:iq:roster").with_child(
                Element::new("item", "jabber:iq:roster").with_attr("jid", "a@b").with_text("x<y"),
            ));
        assert_eq!(
            el.to_xml_string(),
            "<iq xmlns='jabber:client' type='result' id='a&apos;1'><query xmlns='jabber:iq:roster'>\
             <item jid='a@b'>x&lt;y</item></query></iq>"
        );
        let mut out = Vec::new();
        el.write_to(&mut out, "jabber:client");
        assert!(out.starts_with(b"<iq type="));
    }

    #[test]
    fn elements_in_the_xml_namespace_keep_their_prefix() {
        // `<xml:b>` is in the XML namespace, which must never be declared as a default.
        let text = "<a xmlns='urn:a'><xml:b xml:lang='en'><c/><xml:d/></xml:b></a>";
        let el = crate::reader::parse_element(text.as_bytes(), &crate::Limits::default()).unwrap();
        let b = el.child("b", ns::XML).unwrap();
        assert!(b.child("c", "urn:a").is_some() && b.child("d", ns::XML).is_some());
        let written = el.to_xml_string();
        assert_eq!(written, "<a xmlns='urn:a'><xml:b xml:lang='en'><c xmlns='urn:a'/><xml:d/></xml:b></a>");
        assert_eq!(crate::reader::parse_element(written.as_bytes(), &crate::Limits::default()).unwrap(), el);
    }

    #[test]
    fn child_lookup_respects_namespace() {
        let el = Element::new("message", "jabber:client")
            .with_child(Element::new("body", "jabber:client").with_text("hi"))
            .with_child(Element::new("body", "urn:other"));
        assert_eq!(el.child_text("body", "jabber:client").as_deref(), Some("hi"));
        assert_eq!(el.children().count(), 2);
    }
}
