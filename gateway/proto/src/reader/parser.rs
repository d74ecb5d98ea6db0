//! Element-level parsing shared by the stream reader and the standalone parsers.
//!
//! [`Core`] walks one top-level element token by token, keeping the namespace scope and the
//! stack of open element names itself, so that it can stop at any token boundary and
//! resume when more bytes arrive. Complete tokens are parsed by quick-xml; namespaces,
//! limits and the restricted-XML rules are applied here.

use std::ops::Range;
use std::sync::Arc;

use quick_xml::events::Event;
use quick_xml::Reader;

use super::lex::{self, not_well_formed, policy, restricted, utf8, Lexer, Markup};
use super::Limits;
use crate::element::Element;
use crate::error::StreamError;
use crate::ns;
use crate::stanza::Stanza;

const XMLNS_NS: &[u8] = b"http://www.w3.org/2000/xmlns/";

/// A resolved namespace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum NsRef {
    /// No namespace: an unprefixed name with no default namespace in scope.
    #[default]
    None,
    /// The `xml` prefix, bound by definition.
    Xml,
    /// An entry of [`Scope`].
    Bound(usize),
}

#[derive(Debug)]
struct Binding {
    /// `bytes[start..split]` is the prefix (empty for the default namespace),
    /// `bytes[split..end]` the URI.
    start: usize,
    split: usize,
    end: usize,
    /// Depth of the declaring element: 0 for the stream header, 1 for a top-level element.
    depth: usize,
}

/// Namespace declarations in scope, innermost last, stored back to back in one buffer.
#[derive(Debug, Default)]
pub(crate) struct Scope {
    bytes: Vec<u8>,
    bindings: Vec<Binding>,
}

impl Scope {
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.bindings.clear();
    }

    /// Adds `prefix` (empty for `xmlns='…'`) bound to the escaped value `raw_uri`.
    fn declare(&mut self, prefix: &[u8], raw_uri: &[u8], depth: usize) -> Result<(), StreamError> {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(prefix);
        let split = self.bytes.len();
        lex::unescape(raw_uri, &mut self.bytes)?;
        let uri = &self.bytes[split..];
        // Namespaces in XML 1.0 §3: `xml` is bound to its namespace and nothing else is;
        // `xmlns` is never declared; a prefix cannot be undeclared.
        let is_xml = prefix == b"xml";
        if prefix == b"xmlns" || uri == XMLNS_NS || is_xml != (uri == ns::XML.as_bytes()) {
            return Err(not_well_formed("reserved namespace prefix or name"));
        }
        if !prefix.is_empty() && uri.is_empty() {
            return Err(not_well_formed("a namespace prefix cannot be undeclared"));
        }
        if is_xml {
            self.bytes.truncate(start);
        } else {
            self.bindings.push(Binding { start, split, end: self.bytes.len(), depth });
        }
        Ok(())
    }

    /// Drops the declarations made at `depth` and deeper.
    pub fn pop(&mut self, depth: usize) {
        while self.bindings.last().is_some_and(|b| b.depth >= depth) {
            let b = self.bindings.pop().expect("checked above");
            self.bytes.truncate(b.start);
        }
    }

    /// The namespace `prefix` (empty for the default namespace) is bound to.
    fn resolve(&self, prefix: &[u8]) -> Option<NsRef> {
        if prefix == b"xml" {
            return Some(NsRef::Xml);
        }
        match self.bindings.iter().rposition(|b| &self.bytes[b.start..b.split] == prefix) {
            Some(i) => Some(NsRef::Bound(i)),
            None if prefix.is_empty() => Some(NsRef::None),
            None => None,
        }
    }

    pub fn uri(&self, ns: NsRef) -> &[u8] {
        match ns {
            NsRef::None => b"",
            NsRef::Xml => ns::XML.as_bytes(),
            NsRef::Bound(i) => &self.bytes[self.bindings[i].split..self.bindings[i].end],
        }
    }

    fn prefix(&self, i: usize) -> &[u8] {
        &self.bytes[self.bindings[i].start..self.bindings[i].split]
    }

    /// `(prefix, uri)` of the declarations made at `depth`.
    pub fn declared_at(&self, depth: usize) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.bindings
            .iter()
            .enumerate()
            .filter(move |(_, b)| b.depth == depth)
            .map(|(i, _)| (self.prefix(i), self.uri(NsRef::Bound(i))))
    }
}

/// An attribute of the last start tag, as ranges into that tag.
#[derive(Clone, Debug)]
pub(crate) struct Attr {
    pub key: Range<usize>,
    /// The raw (escaped) value.
    pub value: Range<usize>,
    /// A namespace declaration (`xmlns`, `xmlns:p`).
    pub decl: bool,
    /// The namespace of a prefixed attribute; `None` for unprefixed ones and declarations.
    ns: NsRef,
}

/// A parsed start tag; ranges are into the tag.
#[derive(Debug)]
pub(crate) struct Open {
    pub name: Range<usize>,
    pub local: Range<usize>,
    pub ns: NsRef,
    pub empty: bool,
}

/// What [`Core::walk`] stopped at.
pub(crate) enum Walk {
    /// The input ends inside the element.
    NeedMore,
    /// The top-level element's end tag starts at `end_tag`; the position is after it.
    Done { end_tag: usize },
}

/// The start tag of the current top-level element, kept until its end.
#[derive(Debug, Default)]
struct Top {
    /// Its length: the content starts there.
    len: usize,
    local: Range<usize>,
    ns: NsRef,
    attrs: Vec<Attr>,
}

#[derive(Debug)]
pub(crate) struct Core {
    pub limits: Limits,
    pub lexer: Lexer,
    pub scope: Scope,
    /// Qualified names of the open elements of the current top-level element, outermost
    /// first, back to back; their number is the depth.
    names: Vec<u8>,
    name_starts: Vec<usize>,
    /// Attributes of the last start tag.
    pub attrs: Vec<Attr>,
    /// Scratch for the duplicate-attribute checks.
    order: Vec<usize>,
    /// Where the current top-level element starts in the caller's buffer.
    pub elem_start: usize,
    top: Top,
    /// Declarations on the stream header or the top-level element that its content or
    /// attributes use, as indices into `scope`; they become [`Stanza`] prefixes.
    used: Vec<usize>,
}

impl Core {
    pub fn new(limits: Limits) -> Self {
        Core {
            limits,
            lexer: Lexer::default(),
            scope: Scope::default(),
            names: Vec::new(),
            name_starts: Vec::new(),
            attrs: Vec::new(),
            order: Vec::new(),
            elem_start: 0,
            top: Top::default(),
            used: Vec::new(),
        }
    }

    /// Forgets everything about the current stream.
    pub fn reset(&mut self) {
        self.lexer.reset();
        self.scope.clear();
        self.end_top();
    }

    /// Open elements inside the current top-level element, itself included.
    pub fn depth(&self) -> usize {
        self.name_starts.len()
    }

    /// Frees the scratch space of the last element; only between top-level elements,
    /// where none of it is in use.
    pub fn release_scratch(&mut self) {
        debug_assert_eq!(self.depth(), 0);
        for v in [&mut self.attrs, &mut self.top.attrs] {
            *v = Vec::new();
        }
        self.order = Vec::new();
        self.names = Vec::new();
        self.name_starts = Vec::new();
        self.used = Vec::new();
    }

    /// Parses a start tag at `depth` (0 for the stream header, 1 for a top-level element):
    /// declares its namespaces, checks its attributes into `self.attrs` and resolves names.
    pub fn open(&mut self, tok: &[u8], depth: usize) -> Result<Open, StreamError> {
        let (start, empty) = match token_event(tok)? {
            Event::Start(start) => (start, false),
            Event::Empty(start) => (start, true),
            _ => return Err(not_well_formed("malformed start tag")),
        };
        let name = range_in(tok, start.name().as_ref())?;
        let (prefix, local) =
            lex::split_qname(&tok[name.clone()]).ok_or_else(|| not_well_formed("invalid element name"))?;
        let local = name.end - local.len()..name.end;
        let prefix = name.start..name.start + prefix.len();

        self.attrs.clear();
        for attr in start.attributes().with_checks(false) {
            let attr = attr.map_err(|e| not_well_formed(format!("malformed attribute: {e}")))?;
            if self.attrs.len() >= self.limits.max_attrs {
                return Err(policy("too many attributes"));
            }
            let key = range_in(tok, attr.key.as_ref())?;
            let value = range_in(tok, &attr.value)?;
            // quick-xml accepts `a='1'b='2'`; XML wants white space between attributes.
            if !lex::is_ws(tok[key.start - 1]) {
                return Err(not_well_formed("attributes must be separated by white space"));
            }
            let (k, v) = (&tok[key.clone()], &tok[value.clone()]);
            if v.contains(&b'<') {
                return Err(not_well_formed("'<' is not allowed in attribute values"));
            }
            let decl = if k == b"xmlns" { Some(&k[..0]) } else { k.strip_prefix(b"xmlns:") };
            match decl {
                Some(p) if p.is_empty() || lex::is_ncname(p) => self.scope.declare(p, v, depth)?,
                Some(_) => return Err(not_well_formed("invalid namespace prefix")),
                None if lex::split_qname(k).is_some() => lex::check_escaped(v)?,
                None => return Err(not_well_formed("invalid attribute name")),
            }
            self.attrs.push(Attr { key, value, decl: decl.is_some(), ns: NsRef::None });
        }
        if self.attrs.len() > 1 && self.duplicate_names(tok) {
            return Err(not_well_formed("duplicate attribute"));
        }

        // Resolve names now that the tag's own declarations are in scope.
        let ns = self.resolve(&tok[prefix.clone()])?;
        // The top element's own prefix is not needed by its content: a stanza is written
        // with its namespace as the default one.
        if depth >= 2 && !prefix.is_empty() {
            self.note_use(ns);
        }
        let mut prefixed = 0;
        for i in 0..self.attrs.len() {
            if self.attrs[i].decl {
                continue;
            }
            let key = &tok[self.attrs[i].key.clone()];
            if let Some(colon) = key.iter().position(|&b| b == b':') {
                let ns = self.resolve(&key[..colon])?;
                if depth >= 1 {
                    self.note_use(ns);
                }
                self.attrs[i].ns = ns;
                prefixed += 1;
            }
        }
        if prefixed > 1 && self.duplicate_expanded_names(tok) {
            return Err(not_well_formed("duplicate attribute"));
        }
        Ok(Open { name, local, ns, empty })
    }

    fn resolve(&self, prefix: &[u8]) -> Result<NsRef, StreamError> {
        if prefix == b"xmlns" {
            return Err(not_well_formed("the xmlns prefix is reserved"));
        }
        self.scope.resolve(prefix).ok_or_else(|| {
            not_well_formed(format!("undeclared namespace prefix '{}'", String::from_utf8_lossy(prefix)))
        })
    }

    /// Records a prefix used inside a top-level element if it was declared on the element
    /// or the stream header, so that the stanza can be written out on its own.
    fn note_use(&mut self, ns: NsRef) {
        if let NsRef::Bound(i) = ns {
            if self.scope.bindings[i].depth <= 1 && !self.used.contains(&i) {
                self.used.push(i);
            }
        }
    }

    /// Two attributes with the same qualified name.
    fn duplicate_names(&mut self, tok: &[u8]) -> bool {
        let attrs = &self.attrs;
        let key = |i: usize| &tok[attrs[i].key.clone()];
        self.order.clear();
        self.order.extend(0..attrs.len());
        self.order.sort_unstable_by(|&a, &b| key(a).cmp(key(b)));
        self.order.windows(2).any(|w| key(w[0]) == key(w[1]))
    }

    /// Two prefixed attributes with the same namespace and local name (`a:x`, `b:x` with `a`
    /// and `b` bound to one URI).
    fn duplicate_expanded_names(&mut self, tok: &[u8]) -> bool {
        let (attrs, scope) = (&self.attrs, &self.scope);
        let key = |i: usize| {
            let a = &attrs[i];
            let name = &tok[a.key.clone()];
            let local = &name[name.iter().position(|&b| b == b':').map_or(0, |c| c + 1)..];
            (scope.uri(a.ns), local)
        };
        self.order.clear();
        self.order.extend((0..attrs.len()).filter(|&i| attrs[i].ns != NsRef::None));
        self.order.sort_unstable_by(|&a, &b| key(a).cmp(&key(b)));
        self.order.windows(2).any(|w| key(w[0]) == key(w[1]))
    }

    fn push_name(&mut self, name: &[u8]) {
        self.name_starts.push(self.names.len());
        self.names.extend_from_slice(name);
    }

    /// Closes the innermost open element below the top-level one.
    fn pop(&mut self) {
        self.scope.pop(self.depth());
        let start = self.name_starts.pop().expect("an element is open");
        self.names.truncate(start);
    }

    /// Starts a top-level element with its start tag `tok`, at `self.elem_start`.
    pub fn begin(&mut self, tok: &[u8]) -> Result<Open, StreamError> {
        if self.limits.max_depth == 0 {
            return Err(policy("elements nested too deeply"));
        }
        self.used.clear();
        let open = self.open(tok, 1)?;
        self.top.len = tok.len();
        self.top.local = open.local.clone();
        self.top.ns = open.ns;
        self.top.attrs.clone_from(&self.attrs);
        if !open.empty {
            self.push_name(&tok[open.name.clone()]);
        }
        Ok(open)
    }

    /// Reads tokens of the current top-level element from `*pos` until it ends or `buf`
    /// does. The caller cuts `buf` at the size limit. `tree`, if given, receives the content.
    pub fn walk(&mut self, buf: &[u8], pos: &mut usize, mut tree: Option<&mut Tree>) -> Result<Walk, StreamError> {
        loop {
            let Some(&first) = buf.get(*pos) else { return Ok(Walk::NeedMore) };
            if first != b'<' {
                let end = self.lexer.text(buf, *pos)?;
                if end == *pos {
                    return Ok(Walk::NeedMore);
                }
                if let Some(tree) = tree.as_deref_mut() {
                    tree.text(&buf[*pos..end])?;
                }
                *pos = end;
                continue;
            }
            let Some((kind, end)) = self.lexer.markup(buf, *pos)? else { return Ok(Walk::NeedMore) };
            let tok = &buf[*pos..end];
            match kind {
                Markup::Start => {
                    let depth = self.depth() + 1;
                    if depth > self.limits.max_depth {
                        return Err(policy("elements nested too deeply"));
                    }
                    let open = self.open(tok, depth)?;
                    if let Some(tree) = tree.as_deref_mut() {
                        tree.start(tok, &open, &self.attrs, &self.scope)?;
                    }
                    if open.empty {
                        self.scope.pop(depth);
                        if let Some(tree) = tree.as_deref_mut() {
                            tree.end()?;
                        }
                    } else {
                        self.push_name(&tok[open.name]);
                    }
                }
                Markup::End => {
                    let open = &self.names[*self.name_starts.last().expect("inside an element")..];
                    if end_tag_name(tok)? != open {
                        return Err(not_well_formed("mismatched end tag"));
                    }
                    if let Some(tree) = tree.as_deref_mut() {
                        tree.end()?;
                    }
                    if self.depth() == 1 {
                        // The caller still needs the top element's scope to finish it.
                        let end_tag = *pos;
                        *pos = end;
                        return Ok(Walk::Done { end_tag });
                    }
                    self.pop();
                }
                Markup::CData => {
                    if let Some(tree) = tree.as_deref_mut() {
                        tree.cdata(&tok[9..tok.len() - 3]);
                    }
                }
                Markup::Decl => return Err(restricted("processing instructions are not allowed")),
            }
            *pos = end;
        }
    }

    /// Builds the stanza for the complete top-level element `el`, whose end tag starts at
    /// `end_tag` (`el.len()` for an empty element). This is where the element's bytes are
    /// checked for UTF-8 and forbidden characters, once.
    pub fn stanza(&self, el: &[u8], end_tag: usize) -> Result<Stanza, StreamError> {
        let text = lex::check_chars(el)?;
        let attrs = self
            .top
            .attrs
            .iter()
            .filter(|a| !a.decl)
            .map(|a| Ok((text[a.key.clone()].to_owned(), lex::unescape_string(&el[a.value.clone()])?)))
            .collect::<Result<Vec<_>, StreamError>>()?;
        let prefixes = self
            .used
            .iter()
            .map(|&i| Ok((utf8(self.scope.prefix(i))?.to_owned(), utf8(self.scope.uri(NsRef::Bound(i)))?.to_owned())))
            .collect::<Result<Vec<_>, StreamError>>()?;
        let inner = if self.top.len < end_tag { Arc::from(&text[self.top.len..end_tag]) } else { Arc::from("") };
        Ok(Stanza::from_parts(
            &text[self.top.local.clone()],
            utf8(self.scope.uri(self.top.ns))?,
            attrs,
            prefixes,
            inner,
        ))
    }

    /// Leaves the current top-level element.
    pub fn end_top(&mut self) {
        self.scope.pop(1);
        self.names.clear();
        self.name_starts.clear();
        self.used.clear();
    }
}

/// Parses one complete token with quick-xml.
pub(crate) fn token_event(tok: &[u8]) -> Result<Event<'_>, StreamError> {
    let mut reader = Reader::from_reader(tok);
    // We match end tags ourselves, across tokens.
    reader.config_mut().check_end_names = false;
    reader.config_mut().allow_unmatched_ends = true;
    let event = reader.read_event().map_err(|e| not_well_formed(format!("malformed markup: {e}")))?;
    if !reader.get_ref().is_empty() {
        return Err(not_well_formed("malformed markup"));
    }
    Ok(event)
}

/// The name in an end tag.
pub(crate) fn end_tag_name(tok: &[u8]) -> Result<&[u8], StreamError> {
    match token_event(tok)? {
        Event::End(end) => {
            let name = range_in(tok, end.name().as_ref())?;
            Ok(&tok[name])
        }
        _ => Err(not_well_formed("malformed end tag")),
    }
}

/// Where `part`, a slice quick-xml returned, lies in `whole`, its input: ranges let us keep
/// it without borrowing the buffer.
fn range_in(whole: &[u8], part: &[u8]) -> Result<Range<usize>, StreamError> {
    let start = (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize);
    if start > whole.len() || part.len() > whole.len() - start {
        return Err(not_well_formed("malformed markup"));
    }
    Ok(start..start + part.len())
}

/// Builds an [`Element`] tree from the events of [`Core::walk`]; iterative, so the
/// nesting depth costs heap, not stack.
#[derive(Debug, Default)]
pub(crate) struct Tree {
    /// Open elements, each with the character data not yet added to it.
    stack: Vec<(Element, Vec<u8>)>,
    root: Option<Element>,
}

impl Tree {
    /// Opens an element. The caller has checked the input for UTF-8 already.
    pub fn start(&mut self, tok: &[u8], open: &Open, attrs: &[Attr], scope: &Scope) -> Result<(), StreamError> {
        self.flush_text()?;
        let mut el = Element::new(utf8(&tok[open.local.clone()])?, utf8(scope.uri(open.ns))?);
        for a in attrs.iter().filter(|a| !a.decl) {
            el.set_attr(utf8(&tok[a.key.clone()])?, lex::unescape_string(&tok[a.value.clone()])?);
        }
        // An element has no attribute namespaces: each prefix its attributes use is kept as
        // an `xmlns:p` attribute, so that the element still declares it when written.
        for a in attrs {
            if let NsRef::Bound(i) = a.ns {
                let decl = format!("xmlns:{}", utf8(scope.prefix(i))?);
                if el.attr(&decl).is_none() {
                    el.set_attr(decl, utf8(scope.uri(a.ns))?);
                }
            }
        }
        self.stack.push((el, Vec::new()));
        Ok(())
    }

    /// Escaped character data.
    pub fn text(&mut self, raw: &[u8]) -> Result<(), StreamError> {
        match self.stack.last_mut() {
            Some((_, text)) => lex::unescape(raw, text),
            None => Ok(()),
        }
    }

    pub fn cdata(&mut self, raw: &[u8]) {
        if let Some((_, text)) = self.stack.last_mut() {
            text.extend_from_slice(raw);
        }
    }

    pub fn end(&mut self) -> Result<(), StreamError> {
        self.flush_text()?;
        let (el, _) = self.stack.pop().expect("an element is open");
        match self.stack.last_mut() {
            Some((parent, _)) => parent.push(el),
            None => self.root = Some(el),
        }
        Ok(())
    }

    /// Adds the pending character data of the innermost element as one text node, so that
    /// text split by CDATA sections or references reads back as a single node.
    fn flush_text(&mut self) -> Result<(), StreamError> {
        if let Some((el, text)) = self.stack.last_mut() {
            if !text.is_empty() {
                let text = String::from_utf8(std::mem::take(text)).map_err(|_| not_well_formed("invalid UTF-8"))?;
                el.push_text(text);
            }
        }
        Ok(())
    }

    pub fn into_root(self) -> Option<Element> {
        self.root
    }
}
