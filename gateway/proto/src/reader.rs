//! The incremental stream reader.
//!
//! Bytes arrive in arbitrary pieces ([`StreamReader::feed`]); [`StreamReader::next_event`]
//! returns each complete top-level event once all its bytes are there. The reader never
//! expands entities beyond the five predefined ones and character references, and refuses
//! DTDs, comments, processing instructions and undeclared prefixes (RFC 6120 §11.1).
//! Every input limit is enforced while reading, before memory is committed.
//!
//! How it works: a lexer (`lex`) finds where the next token ends, resuming an incomplete
//! token where it stopped; each complete token is parsed with quick-xml and checked
//! against the namespace scope and limits by `parser`. The buffer only keeps the unparsed
//! input plus the element being read, whose raw bytes become the stanza content. UTF-8 and
//! XML characters are checked once per complete top-level element (and stream header).
//!
//! Stream error conditions:
//! * `restricted-xml`: DTDs and markup declarations (`<!DOCTYPE`, `<!ENTITY`…), comments,
//!   processing instructions (an XML declaration anywhere but before the stream header
//!   included), entity references other than `lt gt amp quot apos`.
//! * `not-well-formed`: everything else that is not namespace-well-formed XML: mismatched
//!   tags, duplicate attributes, invalid UTF-8, control characters (NUL included),
//!   character references to non-XML characters, undeclared prefixes (on elements and
//!   attributes), text between stanzas, a stream header inside the stream, a root element
//!   other than `stream`, data after the stream's end.
//! * `invalid-namespace`: a root element `stream` outside `http://etherx.jabber.org/streams`.
//! * `unsupported-encoding`: an XML declaration naming an encoding other than UTF-8.
//! * `policy-violation`: a [`Limits`] bound exceeded.
//!
//! Details worth knowing:
//! * White space may precede the XML declaration, which is allowed once per stream.
//! * Namespace declarations count as attributes for [`Limits::max_attrs`].
//! * [`parse_element`] keeps prefixed attributes under their qualified name (`xml:lang`,
//!   `p:x`), like [`Stanza`] attributes: [`Element`] has no attribute namespaces. An
//!   element whose attributes use a prefix other than `xml` also gets that prefix's
//!   declaration as an attribute (`xmlns:p`), so that it stays valid when written.
//! * [`StreamHeader::prefixes`] leaves out every prefix bound to the streams namespace.
//! * [`Stanza`] prefixes are those the content or the top element's attributes use; the
//!   top element's own prefix is not one, as a stanza is written with its namespace as
//!   the default. So a prefixed top element (`<db:result>`) whose content has unprefixed
//!   elements relying on the header's default namespace cannot be written out faithfully.
//!
//! Not done: attribute-value and line-end normalization (values and text are kept as
//! sent, which keeps stanza round trips exact), and the exact Unicode ranges of XML name
//! characters (any non-ASCII character is accepted in names).

mod lex;
mod parser;

use self::lex::{not_well_formed, policy, restricted, Markup};
use self::parser::{end_tag_name, token_event, Core, Tree, Walk};
use crate::element::Element;
use crate::error::{StreamError, StreamErrorCondition};
use crate::ns;
use crate::stanza::Stanza;
use quick_xml::events::Event;

/// Input limits. Every one is configurable; the defaults suit a public server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest top-level element, in bytes of its serialized form.
    pub max_stanza_bytes: usize,
    /// Deepest element nesting inside a stanza (the stanza itself is depth 1).
    pub max_depth: usize,
    /// Most attributes on one element.
    pub max_attrs: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_stanza_bytes: 256 * 1024, max_depth: 64, max_attrs: 64 }
    }
}

impl Limits {
    /// For re-parsing data that was already checked.
    pub fn unlimited() -> Self {
        Limits { max_stanza_bytes: usize::MAX, max_depth: usize::MAX, max_attrs: usize::MAX }
    }
}

/// The attributes of a received `<stream:stream>`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamHeader {
    /// The default namespace the header declares (the content namespace), `""` if none.
    pub content_ns: String,
    pub to: Option<String>,
    pub from: Option<String>,
    pub id: Option<String>,
    pub version: Option<String>,
    pub lang: Option<String>,
    /// Prefixed namespace declarations other than `stream` (for example `db` on s2s).
    pub prefixes: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadEvent {
    StreamOpen(StreamHeader),
    Stanza(Stanza),
    StreamClose,
}

pub struct StreamReader {
    core: Core,
    /// Unparsed input, preceded by the already parsed part of the current top-level
    /// element (from `core.elem_start`).
    buf: Vec<u8>,
    /// Parse position in `buf`.
    pos: usize,
    phase: Phase,
    /// Set on the first error; the reader then refuses everything.
    error: Option<StreamError>,
    /// Qualified name of the open stream header, to match `</stream:stream>`.
    header_name: Vec<u8>,
    /// Bytes consumed while waiting for the stream header (XML declaration, white space),
    /// counted against the size limit.
    pre_header: usize,
    seen_decl: bool,
    /// The header was `<stream:stream …/>`: the stream closes right after opening.
    pending_close: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for `<stream:stream>`.
    Header,
    Stream,
    /// After `</stream:stream>`.
    Closed,
}

impl StreamReader {
    pub fn new(limits: Limits) -> Self {
        StreamReader {
            core: Core::new(limits),
            buf: Vec::new(),
            pos: 0,
            phase: Phase::Header,
            error: None,
            header_name: Vec::new(),
            pre_header: 0,
            seen_decl: false,
            pending_close: false,
        }
    }

    /// Appends received bytes.
    pub fn feed(&mut self, data: &[u8]) {
        if self.error.is_some() {
            return;
        }
        self.compact();
        self.buf.extend_from_slice(data);
    }

    /// The next complete event, `Ok(None)` when more bytes are needed.
    pub fn next_event(&mut self) -> Result<Option<ReadEvent>, StreamError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let result = self.read();
        if let Err(e) = &result {
            self.error = Some(e.clone());
            // Nothing will be parsed any more.
            self.buf = Vec::new();
            self.pos = 0;
        }
        result
    }

    /// Expects a new stream header (after SASL success), keeping bytes already buffered.
    pub fn restart(&mut self) {
        if self.core.depth() > 0 {
            // Called inside an element: its bytes are re-read as the new stream's.
            self.pos = self.core.elem_start;
        }
        self.core.reset();
        self.phase = Phase::Header;
        self.header_name.clear();
        self.pre_header = 0;
        self.seen_decl = false;
        self.pending_close = false;
    }

    /// True when no partial event is buffered.
    pub fn is_idle(&self) -> bool {
        self.pos == self.buf.len() && self.core.depth() == 0
    }

    /// Frees the buffer's memory and the parser's scratch space; call when idle.
    pub fn release_buffer(&mut self) {
        self.compact();
        self.buf.shrink_to_fit();
        if self.core.depth() == 0 {
            self.core.release_scratch();
        }
    }

    /// Drops the bytes nobody needs any more: everything before the current top-level
    /// element, or before the parse position between elements.
    fn compact(&mut self) {
        let keep = if self.core.depth() > 0 { self.core.elem_start } else { self.pos };
        if keep == 0 {
            return;
        }
        self.buf.drain(..keep);
        self.pos -= keep;
        if self.core.depth() > 0 {
            self.core.elem_start -= keep;
        }
    }

    fn read(&mut self) -> Result<Option<ReadEvent>, StreamError> {
        if self.pending_close {
            self.pending_close = false;
            return Ok(Some(ReadEvent::StreamClose));
        }
        match self.phase {
            Phase::Header => Ok(self.read_header()?.map(ReadEvent::StreamOpen)),
            Phase::Stream if self.core.depth() > 0 => self.read_element(),
            Phase::Stream => self.read_stream_level(),
            Phase::Closed => {
                self.pos += lex::ws_len(&self.buf[self.pos..]);
                if self.pos < self.buf.len() {
                    return Err(not_well_formed("data after the end of the stream"));
                }
                Ok(None)
            }
        }
    }

    /// `Ok(None)`, unless `buf` goes past `view_end`, where the limit cut the input the
    /// lexer saw: then what is being read is too large.
    fn need_more<T>(&self, view_end: usize, what: &str) -> Result<Option<T>, StreamError> {
        if self.buf.len() > view_end {
            return Err(policy(what));
        }
        Ok(None)
    }

    /// Skips white space and an XML declaration up to the stream header.
    fn read_header(&mut self) -> Result<Option<StreamHeader>, StreamError> {
        let max = self.core.limits.max_stanza_bytes;
        loop {
            let ws = lex::ws_len(&self.buf[self.pos..]);
            self.pos += ws;
            self.pre_header += ws;
            if self.pre_header > max {
                return Err(policy("too much data before the stream header"));
            }
            let Some(&first) = self.buf.get(self.pos) else { return Ok(None) };
            if first != b'<' {
                return Err(not_well_formed("expected a stream header"));
            }
            let view_end = self.buf.len().min(self.pos.saturating_add(max - self.pre_header));
            let Some((kind, end)) = self.core.lexer.markup(&self.buf[..view_end], self.pos)? else {
                return self.need_more(view_end, "stream header too large");
            };
            let tok = &self.buf[self.pos..end];
            match kind {
                Markup::Decl if !self.seen_decl => {
                    check_decl(tok)?;
                    self.seen_decl = true;
                    self.pre_header += tok.len();
                    self.pos = end;
                }
                Markup::Decl => return Err(restricted("processing instructions are not allowed")),
                Markup::Start => {
                    let header = self.open_stream(self.pos, end)?;
                    self.pos = end;
                    return Ok(Some(header));
                }
                Markup::End | Markup::CData => return Err(not_well_formed("expected a stream header")),
            }
        }
    }

    /// Opens the stream with the header start tag `buf[start..end]`.
    fn open_stream(&mut self, start: usize, end: usize) -> Result<StreamHeader, StreamError> {
        let tok = &self.buf[start..end];
        let text = lex::check_chars(tok)?;
        self.core.reset();
        let open = self.core.open(tok, 0)?;
        if &tok[open.local.clone()] != b"stream" {
            return Err(not_well_formed("expected a <stream:stream> header"));
        }
        if self.core.scope.uri(open.ns) != ns::STREAM.as_bytes() {
            return Err(StreamError::with_text(
                StreamErrorCondition::InvalidNamespace,
                "the stream element must be in the http://etherx.jabber.org/streams namespace",
            ));
        }
        let mut header = StreamHeader::default();
        for a in self.core.attrs.iter().filter(|a| !a.decl) {
            let slot = match &text[a.key.clone()] {
                "to" => &mut header.to,
                "from" => &mut header.from,
                "id" => &mut header.id,
                "version" => &mut header.version,
                "xml:lang" => &mut header.lang,
                _ => continue,
            };
            *slot = Some(lex::unescape_string(&tok[a.value.clone()])?);
        }
        for (prefix, uri) in self.core.scope.declared_at(0) {
            let uri = lex::utf8(uri)?;
            if prefix.is_empty() {
                header.content_ns = uri.to_owned();
            } else if uri != ns::STREAM {
                header.prefixes.push((lex::utf8(prefix)?.to_owned(), uri.to_owned()));
            }
        }
        self.header_name.clear();
        self.header_name.extend_from_slice(&tok[open.name]);
        self.pre_header = 0;
        self.seen_decl = false;
        if open.empty {
            self.phase = Phase::Closed;
            self.pending_close = true;
        } else {
            self.phase = Phase::Stream;
        }
        Ok(header)
    }

    /// Between top-level elements: white space, then a stanza or the stream's end.
    fn read_stream_level(&mut self) -> Result<Option<ReadEvent>, StreamError> {
        self.pos += lex::ws_len(&self.buf[self.pos..]);
        let Some(&first) = self.buf.get(self.pos) else { return Ok(None) };
        if first != b'<' {
            return Err(not_well_formed("text is not allowed between stanzas"));
        }
        let view_end = self.buf.len().min(self.pos.saturating_add(self.core.limits.max_stanza_bytes));
        let Some((kind, end)) = self.core.lexer.markup(&self.buf[..view_end], self.pos)? else {
            return self.need_more(view_end, "stanza too large");
        };
        let tok = &self.buf[self.pos..end];
        match kind {
            Markup::Start => {
                self.core.elem_start = self.pos;
                let open = self.core.begin(tok)?;
                if &tok[open.local.clone()] == b"stream" && self.core.scope.uri(open.ns) == ns::STREAM.as_bytes() {
                    return Err(not_well_formed("stream header inside the stream: the stream was not restarted"));
                }
                self.pos = end;
                if open.empty {
                    return self.finish_element(end).map(Some);
                }
                self.read_element()
            }
            Markup::End => {
                if end_tag_name(tok)? != self.header_name {
                    return Err(not_well_formed("mismatched end tag"));
                }
                self.pos = end;
                self.phase = Phase::Closed;
                self.core.reset();
                Ok(Some(ReadEvent::StreamClose))
            }
            Markup::CData => Err(not_well_formed("text is not allowed between stanzas")),
            Markup::Decl => Err(restricted("processing instructions are not allowed")),
        }
    }

    /// Continues the current top-level element.
    fn read_element(&mut self) -> Result<Option<ReadEvent>, StreamError> {
        let view_end = self.buf.len().min(self.core.elem_start.saturating_add(self.core.limits.max_stanza_bytes));
        match self.core.walk(&self.buf[..view_end], &mut self.pos, None)? {
            Walk::NeedMore => self.need_more(view_end, "stanza too large"),
            Walk::Done { end_tag } => self.finish_element(end_tag).map(Some),
        }
    }

    /// Emits the top-level element ending at `self.pos`.
    fn finish_element(&mut self, end_tag: usize) -> Result<ReadEvent, StreamError> {
        let start = self.core.elem_start;
        let stanza = self.core.stanza(&self.buf[start..self.pos], end_tag - start)?;
        self.core.end_top();
        Ok(ReadEvent::Stanza(stanza))
    }
}

/// Checks an XML declaration: version 1.0, UTF-8 if an encoding is named.
fn check_decl(tok: &[u8]) -> Result<(), StreamError> {
    lex::check_chars(tok)?;
    let Event::Decl(decl) = token_event(tok)? else {
        return Err(not_well_formed("malformed XML declaration"));
    };
    let version = decl.version().map_err(|_| not_well_formed("malformed XML declaration"))?;
    if *version != *b"1.0" {
        return Err(not_well_formed("only XML 1.0 is supported"));
    }
    if let Some(encoding) = decl.encoding() {
        let encoding = encoding.map_err(|_| not_well_formed("malformed XML declaration"))?;
        if !encoding.eq_ignore_ascii_case(b"UTF-8") {
            return Err(StreamError::with_text(StreamErrorCondition::UnsupportedEncoding, "only UTF-8 is supported"));
        }
    }
    Ok(())
}

/// Parses one complete, standalone element (nothing inherited from a stream header) into
/// a tree, as used for RFC 7395 WebSocket messages and on-demand payload parsing.
pub fn parse_element(bytes: &[u8], limits: &Limits) -> Result<Element, StreamError> {
    let mut tree = Tree::default();
    standalone(bytes, limits, Some(&mut tree), |_, _, _| Ok(()))?;
    tree.into_root().ok_or_else(|| not_well_formed("expected an element"))
}

/// Parses one complete, standalone element as a [`Stanza`].
pub fn parse_stanza(bytes: &[u8], limits: &Limits) -> Result<Stanza, StreamError> {
    standalone(bytes, limits, None, |core, el, end_tag| core.stanza(el, end_tag))
}

/// Reads the single element in `bytes` (white space around it allowed), feeding `tree` if
/// given, then calls `finish` with the element's bytes and the offset of its end tag.
fn standalone<T>(
    bytes: &[u8],
    limits: &Limits,
    mut tree: Option<&mut Tree>,
    finish: impl FnOnce(&Core, &[u8], usize) -> Result<T, StreamError>,
) -> Result<T, StreamError> {
    // Checked up front so the tree builder can take the bytes as text.
    lex::check_chars(bytes)?;
    let start = lex::ws_len(bytes);
    if bytes.get(start) != Some(&b'<') {
        return Err(not_well_formed("expected an element"));
    }
    let view = &bytes[..bytes.len().min(start.saturating_add(limits.max_stanza_bytes))];
    let cut_short = || {
        if view.len() < bytes.len() {
            policy("element too large")
        } else {
            not_well_formed("unexpected end of input")
        }
    };
    let mut core = Core::new(limits.clone());
    let (kind, mut pos) = core.lexer.markup(view, start)?.ok_or_else(cut_short)?;
    match kind {
        Markup::Start => {}
        Markup::Decl => return Err(restricted("processing instructions are not allowed")),
        Markup::End | Markup::CData => return Err(not_well_formed("expected an element")),
    }
    let tok = &view[start..pos];
    let open = core.begin(tok)?;
    if let Some(tree) = tree.as_deref_mut() {
        tree.start(tok, &open, &core.attrs, &core.scope)?;
    }
    let end_tag = if open.empty {
        if let Some(tree) = tree.as_deref_mut() {
            tree.end()?;
        }
        pos
    } else {
        match core.walk(view, &mut pos, tree)? {
            Walk::NeedMore => return Err(cut_short()),
            Walk::Done { end_tag } => end_tag,
        }
    };
    if lex::ws_len(&bytes[pos..]) != bytes.len() - pos {
        return Err(not_well_formed("data after the element"));
    }
    finish(&core, &bytes[start..pos], end_tag - start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::StreamErrorCondition as C;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0' xml:lang='en'>";
    const S2S_HEADER: &str = "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' \
        xmlns:db='jabber:server:dialback' from='a.example' to='b.example' version='1.0'>";
    const DIALBACK: &str = "jabber:server:dialback";

    /// Drains every available event.
    fn drain(r: &mut StreamReader, out: &mut Vec<ReadEvent>) -> Result<(), StreamError> {
        while let Some(ev) = r.next_event()? {
            out.push(ev);
        }
        Ok(())
    }

    /// Feeds `chunks` one by one, draining after each.
    fn read_chunks(limits: Limits, chunks: &[&[u8]]) -> Result<Vec<ReadEvent>, StreamError> {
        let mut r = StreamReader::new(limits);
        let mut out = Vec::new();
        for chunk in chunks {
            r.feed(chunk);
            drain(&mut r, &mut out)?;
        }
        Ok(out)
    }

    fn read(input: &[u8]) -> Result<Vec<ReadEvent>, StreamError> {
        read_chunks(Limits::default(), &[input])
    }

    fn stanzas(input: &str) -> Vec<Stanza> {
        read(input.as_bytes())
            .unwrap()
            .into_iter()
            .filter_map(|ev| match ev {
                ReadEvent::Stanza(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    fn one_stanza(header: &str, stanza: &str) -> Stanza {
        let mut all = stanzas(&format!("{header}{stanza}"));
        assert_eq!(all.len(), 1, "{stanza}");
        all.pop().unwrap()
    }

    /// The error condition the input ends in, fed whole and byte by byte.
    fn error(input: &[u8]) -> C {
        let whole = read(input).expect_err("input accepted");
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        let trickled = read_chunks(Limits::default(), &bytes).expect_err("input accepted byte by byte");
        assert_eq!(whole.condition, trickled.condition, "{whole} / {trickled}");
        assert!(whole.text.is_some());
        whole.condition
    }

    fn stream_error(stanza: &str) -> C {
        error(format!("{HEADER}{stanza}").as_bytes())
    }

    fn element(text: &str) -> Element {
        parse_element(text.as_bytes(), &Limits::default()).unwrap()
    }

    #[test]
    fn full_client_stream() {
        let input = format!(
            "{HEADER}\n  <message to='juliet@example.com' type='chat' id='m1'><body>Hi &amp; bye</body></message> \n\
             <presence/>\t<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>  </stream:stream>\n"
        );
        let events = read(input.as_bytes()).unwrap();
        assert_eq!(events.len(), 5);
        assert_eq!(
            events[0],
            ReadEvent::StreamOpen(StreamHeader {
                content_ns: ns::CLIENT.into(),
                to: Some("example.com".into()),
                from: None,
                id: None,
                version: Some("1.0".into()),
                lang: Some("en".into()),
                prefixes: vec![],
            })
        );
        let ReadEvent::Stanza(msg) = &events[1] else { panic!("{:?}", events[1]) };
        assert!(msg.is("message", ns::CLIENT));
        assert_eq!((msg.to(), msg.stanza_type(), msg.id()), (Some("juliet@example.com"), Some("chat"), Some("m1")));
        assert_eq!(msg.inner(), "<body>Hi &amp; bye</body>");
        let ReadEvent::Stanza(presence) = &events[2] else { panic!() };
        assert!(presence.is("presence", ns::CLIENT));
        assert_eq!(presence.inner(), "");
        let ReadEvent::Stanza(iq) = &events[3] else { panic!() };
        assert_eq!(iq.inner(), "<query xmlns='jabber:iq:roster'/>");
        assert_eq!(events[4], ReadEvent::StreamClose);
    }

    const SAMPLE: &str = "<?xml version='1.0' encoding='utf-8'?>\n<stream:stream xmlns='jabber:server' \
        xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' to='b' from='a' id='x&amp;y'>\
        <db:result to='b' from='a'>k3y</db:result> \r\n\
        <message to='j\u{e9}@b' from='r@a/\u{1F600}' a=\"'>\" b='\"&lt;&#x1F600;&#233;'>\
        <body>caf\u{e9} ]] ] &gt; &#65;&#x42;<![CDATA[<raw> & ]] ]]]></body>\
        <x xmlns='urn:x' xmlns:p='urn:p'><p:y p:z='1'/><db:verify/></x><empty/></message>\
        <presence/>   <iq type='result' id='1'/>\n</stream:stream>";

    #[test]
    fn every_split_position_gives_the_same_events() {
        let input = SAMPLE.as_bytes();
        let whole = read(input).unwrap();
        assert_eq!(whole.len(), 6);
        assert_eq!(whole.last(), Some(&ReadEvent::StreamClose));
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(read_chunks(Limits::default(), &bytes).unwrap(), whole);
        for i in 0..=input.len() {
            let (a, b) = input.split_at(i);
            assert_eq!(read_chunks(Limits::default(), &[a, b]).unwrap(), whole, "split at {i}");
        }
    }

    #[test]
    fn sample_stanzas_read_back() {
        let events = read(SAMPLE.as_bytes()).unwrap();
        let ReadEvent::StreamOpen(h) = &events[0] else { panic!() };
        assert_eq!(h.content_ns, ns::SERVER);
        assert_eq!(h.id.as_deref(), Some("x&y"));
        assert_eq!(h.prefixes, vec![("db".to_owned(), DIALBACK.to_owned())]);
        let ReadEvent::Stanza(msg) = &events[2] else { panic!() };
        assert_eq!(msg.attr("a"), Some("'>"));
        assert_eq!(msg.attr("b"), Some("\"<\u{1F600}\u{e9}"));
        let el = msg.to_element().unwrap();
        assert_eq!(el.child("body", ns::SERVER).unwrap().text(), "caf\u{e9} ]] ] > AB<raw> & ]] ]");
        let y = el.child("x", "urn:x").unwrap().child("y", "urn:p").unwrap();
        assert_eq!(y.attr("p:z"), Some("1"));
        assert!(el.child("x", "urn:x").unwrap().child("verify", DIALBACK).is_some());
    }

    #[test]
    fn restart_reads_the_new_header_from_buffered_bytes() {
        let auth = "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGE=</auth>";
        let input = format!("{HEADER}{auth}{HEADER}<iq type='set' id='b'/>");
        let mut r = StreamReader::new(Limits::default());
        r.feed(input.as_bytes());
        assert!(matches!(r.next_event(), Ok(Some(ReadEvent::StreamOpen(_)))));
        let Ok(Some(ReadEvent::Stanza(st))) = r.next_event() else { panic!() };
        assert!(st.is("auth", ns::SASL));
        r.restart();
        let Ok(Some(ReadEvent::StreamOpen(h))) = r.next_event() else { panic!() };
        assert_eq!(h.content_ns, ns::CLIENT);
        let Ok(Some(ReadEvent::Stanza(iq))) = r.next_event() else { panic!() };
        assert!(iq.is("iq", ns::CLIENT));
        assert_eq!(r.next_event(), Ok(None));
        assert!(r.is_idle());
    }

    #[test]
    fn second_header_without_restart_is_refused() {
        assert_eq!(stream_error(&format!("<presence/>{}", &HEADER[21..])), C::NotWellFormed);
        // Also under another prefix.
        assert_eq!(stream_error("<s:stream xmlns:s='http://etherx.jabber.org/streams'>"), C::NotWellFormed);
    }

    #[test]
    fn stanzas_take_the_default_namespace_of_the_header() {
        assert!(one_stanza(HEADER, "<message/>").is("message", ns::CLIENT));
        assert!(one_stanza(S2S_HEADER, "<message/>").is("message", ns::SERVER));
        assert!(one_stanza(HEADER, "<r xmlns='urn:xmpp:sm:3'/>").is("r", "urn:xmpp:sm:3"));
        assert!(one_stanza(HEADER, "<message xmlns=''/>").is("message", ""));
        let no_default = "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>";
        assert!(one_stanza(no_default, "<message/>").is("message", ""));
        let features =
            one_stanza(HEADER, "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>");
        assert!(features.is("features", ns::STREAM));
        assert!(features.to_element().unwrap().child("bind", ns::BIND).is_some());
    }

    /// Writes `st` standalone and checks it parses like `standalone`, the same stanza written
    /// by hand with every namespace declared.
    fn assert_round_trip(st: &Stanza, standalone: &str) {
        let mut out = Vec::new();
        st.write_to(&mut out, "");
        assert_eq!(parse_element(&out, &Limits::default()).unwrap(), element(standalone));
        assert_eq!(st.to_element().unwrap(), element(standalone));
        let again = parse_stanza(&out, &Limits::default()).unwrap();
        assert_eq!(again.to_element().unwrap(), element(standalone));
    }

    fn pairs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn prefixes_used_from_the_header_are_recorded() {
        let st = one_stanza(S2S_HEADER, "<db:result from='a' to='b'>key</db:result>");
        let expected =
            Stanza::from_parts("result", DIALBACK, pairs(&[("from", "a"), ("to", "b")]), vec![], "key".into());
        assert_eq!(st, expected);
        assert_round_trip(&st, "<result xmlns='jabber:server:dialback' from='a' to='b'>key</result>");

        let st = one_stanza(S2S_HEADER, "<message db:z='1'><db:x db:y='2'/><db:x/></message>");
        let inner = "<db:x db:y='2'/><db:x/>";
        let expected = Stanza::from_parts(
            "message",
            ns::SERVER,
            pairs(&[("db:z", "1")]),
            pairs(&[("db", DIALBACK)]),
            inner.into(),
        );
        assert_eq!(st, expected);
        assert_round_trip(
            &st,
            "<message xmlns='jabber:server' xmlns:db='jabber:server:dialback' db:z='1'><db:x db:y='2'/><db:x/></message>",
        );

        // Declared on the top element and used inside: kept, the declaration is not an attribute.
        let st = one_stanza(HEADER, "<message xmlns:f='urn:f' id='1'><f:x/></message>");
        let expected =
            Stanza::from_parts("message", ns::CLIENT, pairs(&[("id", "1")]), pairs(&[("f", "urn:f")]), "<f:x/>".into());
        assert_eq!(st, expected);
        assert_round_trip(&st, "<message xmlns='jabber:client' id='1'><x xmlns='urn:f'/></message>");

        // Declared deeper, or declared and unused: nothing to carry.
        let st = one_stanza(HEADER, "<message xmlns:u='urn:u'><x xmlns:f='urn:f'><f:y/></x></message>");
        let inner = "<x xmlns:f='urn:f'><f:y/></x>";
        assert_eq!(st, Stanza::from_parts("message", ns::CLIENT, vec![], vec![], inner.into()));
        assert_round_trip(&st, "<message xmlns='jabber:client'><x><y xmlns='urn:f'/></x></message>");

        // A header prefix redeclared inside is not the header's.
        let st = one_stanza(S2S_HEADER, "<message><x xmlns:db='urn:other'><db:y/></x></message>");
        assert_eq!(st.to_bytes(), b"<message xmlns='jabber:server'><x xmlns:db='urn:other'><db:y/></x></message>");
    }

    #[test]
    fn elements_declare_the_prefixes_of_their_attributes() {
        // Found by fuzzing the BOSH body: `<x p:y='2'/>` was written without `xmlns:p`, so a
        // stanza built from a parsed element (every BOSH stanza) went out unparseable.
        let text = "<message xmlns='jabber:client' xmlns:p='urn:p' p:z='1'><x p:y='2' xml:lang='en'/><p:w/></message>";
        let el = element(text);
        let x = el.child("x", ns::CLIENT).unwrap();
        assert_eq!((x.attr("p:y"), x.attr("xmlns:p"), x.attr("xmlns:xml")), (Some("2"), Some("urn:p"), None));
        assert_eq!(el.attr("xmlns:p"), Some("urn:p"));
        assert_eq!(parse_element(&el.to_bytes(), &Limits::default()).unwrap(), el);
        let st = Stanza::from_element(&el);
        assert_eq!(st.to_element().unwrap(), el);
    }

    #[test]
    fn attributes_are_unescaped() {
        let st =
            one_stanza(HEADER, "<message to='a&amp;b' id='&lt;&gt;&quot;&apos;&#65;&#x42;&#x1F600;' xml:lang='de'/>");
        assert_eq!(st.to(), Some("a&b"));
        assert_eq!(st.id(), Some("<>\"'AB\u{1F600}"));
        assert_eq!(st.attr("xml:lang"), Some("de"));
        let el = element("<a xmlns='u' x='&lt;1&gt;' xml:lang='en'>&amp;&#x20;t<![CDATA[&amp;]]></a>");
        assert_eq!(el.attr("x"), Some("<1>"));
        assert_eq!(el.attr("xml:lang"), Some("en"));
        assert_eq!(el.nodes(), &[crate::element::Node::Text("& t&amp;".into())]);
    }

    #[test]
    fn empty_header_opens_and_closes() {
        let events = read(b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'/>").unwrap();
        assert!(matches!(events[..], [ReadEvent::StreamOpen(_), ReadEvent::StreamClose]));
    }

    #[test]
    fn dtds_and_entities_are_restricted() {
        assert_eq!(error(b"<?xml version='1.0'?><!DOCTYPE stream>"), C::RestrictedXml);
        let laughs = "<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'><!ENTITY lol2 '&lol;&lol;&lol;'>]>\
            <lolz>&lol2;</lolz>";
        assert_eq!(error(laughs.as_bytes()), C::RestrictedXml);
        assert_eq!(stream_error("<!ENTITY lol 'lol'>"), C::RestrictedXml);
        assert_eq!(stream_error("<message><!DOCTYPE x></message>"), C::RestrictedXml);
        assert_eq!(stream_error("<message><body>&foo;</body></message>"), C::RestrictedXml);
        assert_eq!(stream_error("<message to='&foo;'/>"), C::RestrictedXml);
        assert_eq!(stream_error("<message><body>&aVeryLongEntityNameThatNeverEndsAtAll"), C::RestrictedXml);
    }

    #[test]
    fn comments_and_processing_instructions_are_restricted() {
        assert_eq!(stream_error("<!-- hi -->"), C::RestrictedXml);
        assert_eq!(stream_error("<message><!-- hi --></message>"), C::RestrictedXml);
        assert_eq!(error(b"<!-- hi --><stream:stream>"), C::RestrictedXml);
        assert_eq!(stream_error("<?foo bar?>"), C::RestrictedXml);
        assert_eq!(stream_error("<message><?xml-stylesheet href='x'?></message>"), C::RestrictedXml);
        assert_eq!(stream_error("<?xml version='1.0'?>"), C::RestrictedXml);
        assert_eq!(error(b"<?xml version='1.0'?><?xml version='1.0'?>"), C::RestrictedXml);
        assert_eq!(error(b"<?php echo 1; ?>"), C::RestrictedXml);
    }

    #[test]
    fn bad_characters_are_not_well_formed() {
        for bad in [
            &b"<message><body>\xff\xfe</body></message>"[..],
            b"<message><body>\xc0\x80</body></message>",
            b"<message to='\xe9'/>",
            b"<message><body>a\x00b</body></message>",
            b"<message to='\x00'/>",
            b"<message><body>\x01</body></message>",
            b"<message><![CDATA[\x07]]></message>",
            b"\x00",
            b"<message><body>\xef\xbf\xbf</body></message>",
            b"<message><body>&#0;</body></message>",
            b"<message><body>&#x1;</body></message>",
            b"<message><body>&#xD800;</body></message>",
            b"<message><body>&#x110000;</body></message>",
            b"<message><body>&#99999999999999;</body></message>",
            b"<message><body>&#xZ;</body></message>",
            b"<message><body>a & b</body></message>",
            b"<message><body>]]></body></message>",
        ] {
            let mut input = HEADER.as_bytes().to_vec();
            input.extend_from_slice(bad);
            assert_eq!(error(&input), C::NotWellFormed, "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(error(b"<stream:stream\x00 xmlns:stream='http://etherx.jabber.org/streams'>"), C::NotWellFormed);
        assert_eq!(
            error(b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams' to='\xff'>"),
            C::NotWellFormed
        );
    }

    #[test]
    fn malformed_structure_is_not_well_formed() {
        for bad in [
            "<message><body></message>",
            "<message></messag>",
            "</stream:streams>",
            "</message>",
            "<foo:bar/>",
            "<message foo:x='1'/>",
            "<message><foo:bar/></message>",
            "<message to='a' to='b'/>",
            "<message xmlns:a='u' xmlns:b='u' a:x='1' b:x='2'/>",
            "<message xmlns:a='u' xmlns:a='v'/>",
            "<message xmlns:a=''/>",
            "<message xmlns:xml='urn:not-xml'/>",
            "<message xmlns:x='http://www.w3.org/XML/1998/namespace'/>",
            "<message xmlns:xmlns='u'/>",
            "<xmlns:message/>",
            "<message to='a'id='b'/>",
            "<message to=a/>",
            "<message to='<'/>",
            "<message to/>",
            "<message 1a='x'/>",
            "<1message/>",
            "< message/>",
            "<message / >",
            "<message><a:b:c xmlns:a='u'/></message>",
            "<![CDATA[x]]>",
            "<!x>",
            "hello",
            "<message>x</message>&amp;",
        ] {
            assert_eq!(stream_error(bad), C::NotWellFormed, "{bad}");
        }
        // Text after the end of the stream.
        assert_eq!(stream_error("</stream:stream> x"), C::NotWellFormed);
    }

    #[test]
    fn wrong_stream_headers() {
        assert_eq!(error(b"<stream:stream xmlns:stream='urn:wrong'>"), C::InvalidNamespace);
        assert_eq!(error(b"<stream xmlns='jabber:client'>"), C::InvalidNamespace);
        assert_eq!(error(b"<stream:stream xmlns='jabber:client'>"), C::NotWellFormed);
        assert_eq!(error(b"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"), C::NotWellFormed);
        assert_eq!(error(b"<html><body>"), C::NotWellFormed);
        assert_eq!(error(b"</stream:stream>"), C::NotWellFormed);
        assert_eq!(error(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"), C::NotWellFormed);
        assert_eq!(error(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), C::NotWellFormed);
        assert_eq!(error(b"<?xml version='1.0' encoding='ISO-8859-1'?>"), C::UnsupportedEncoding);
        assert_eq!(error(b"<?xml version='1.1'?>"), C::NotWellFormed);
        // Any prefix, and the declared encoding is case-insensitive.
        let ok =
            "<?xml version='1.0' encoding='utf-8'?><s:stream xmlns:s='http://etherx.jabber.org/streams'></s:stream>";
        assert_eq!(read(ok.as_bytes()).unwrap().len(), 2);
    }

    #[test]
    fn random_binary_is_not_well_formed() {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for round in 0..50 {
            let bytes: Vec<u8> = (0..512)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            assert_eq!(error(&bytes), C::NotWellFormed, "round {round}");
            let mut after_header = HEADER.as_bytes().to_vec();
            after_header.extend_from_slice(&bytes);
            assert_eq!(error(&after_header), C::NotWellFormed, "round {round}");
        }
    }

    #[test]
    fn text_between_stanzas_is_refused() {
        assert_eq!(stream_error("hello"), C::NotWellFormed);
        assert_eq!(stream_error("<presence/> x <presence/>"), C::NotWellFormed);
        assert_eq!(stream_error("&amp;"), C::NotWellFormed);
        assert_eq!(error(b"x<stream:stream>"), C::NotWellFormed);
    }

    #[test]
    fn an_error_poisons_the_reader() {
        let mut r = StreamReader::new(Limits::default());
        r.feed(format!("{HEADER}<!-- x -->").as_bytes());
        assert!(matches!(r.next_event(), Ok(Some(ReadEvent::StreamOpen(_)))));
        let err = r.next_event().unwrap_err();
        assert_eq!(err.condition, C::RestrictedXml);
        r.feed(b"<presence/>");
        assert_eq!(r.next_event(), Err(err));
        assert_eq!(r.buf.capacity(), 0);
    }

    const MIB: usize = 1024 * 1024;

    /// Feeds a stream header then `body` in 64 KiB chunks and returns the error, checking
    /// that the buffer never holds much more than the limit.
    fn feed_big(body: impl Iterator<Item = u8>) -> StreamError {
        const CHUNK: usize = 64 * 1024;
        let limit = Limits::default().max_stanza_bytes;
        let mut r = StreamReader::new(Limits::default());
        r.feed(HEADER.as_bytes());
        let body: Vec<u8> = body.collect();
        for chunk in body.chunks(CHUNK) {
            r.feed(chunk);
            assert!(r.buf.len() <= limit + CHUNK, "buffered {}", r.buf.len());
            loop {
                match r.next_event() {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => return e,
                }
            }
        }
        panic!("accepted")
    }

    #[test]
    fn huge_stanza_is_refused_early() {
        let big = b"<message><body>".iter().copied().chain(std::iter::repeat_n(b'a', 4 * MIB));
        let err = feed_big(big);
        assert_eq!(err.condition, C::PolicyViolation);
        let big = b"<message to='".iter().copied().chain(std::iter::repeat_n(b'a', 4 * MIB));
        assert_eq!(feed_big(big).condition, C::PolicyViolation);
        // Many small stanzas are fine: the limit is per element.
        let many = std::iter::repeat_n(&b"<presence/> "[..], 400_000).flatten().copied();
        let mut r = StreamReader::new(Limits::default());
        r.feed(HEADER.as_bytes());
        let mut n = 0;
        for chunk in many.collect::<Vec<_>>().chunks(64 * 1024) {
            r.feed(chunk);
            while r.next_event().unwrap().is_some() {
                n += 1;
            }
        }
        assert_eq!(n, 400_001);
    }

    #[test]
    fn too_many_attributes_are_refused() {
        let mut tag = String::from("<message");
        for i in 0..100_000 {
            tag.push_str(&format!(" a{i}=''"));
        }
        tag.push_str("/>");
        assert_eq!(stream_error(&tag), C::PolicyViolation);
        // Also when the size limit would allow it.
        let limits = Limits { max_stanza_bytes: 10 * MIB, ..Limits::default() };
        let err = read_chunks(limits.clone(), &[HEADER.as_bytes(), tag.as_bytes()]).unwrap_err();
        assert_eq!((err.condition, err.text.as_deref()), (C::PolicyViolation, Some("too many attributes")));
        let err = parse_element(tag.as_bytes(), &limits).unwrap_err();
        assert_eq!(err.text.as_deref(), Some("too many attributes"));
    }

    #[test]
    fn deep_nesting_is_refused_early() {
        let deep = "<a>".repeat(100_000);
        assert_eq!(stream_error(&deep), C::PolicyViolation);
        let limits = Limits { max_stanza_bytes: 10 * MIB, ..Limits::default() };
        let err = read_chunks(limits.clone(), &[HEADER.as_bytes(), deep.as_bytes()]).unwrap_err();
        assert_eq!(err.text.as_deref(), Some("elements nested too deeply"));
        let closed = format!("{deep}{}", "</a>".repeat(100_000));
        let err = parse_element(closed.as_bytes(), &limits).unwrap_err();
        assert_eq!(err.text.as_deref(), Some("elements nested too deeply"));
    }

    #[test]
    fn limits_are_inclusive() {
        // The header counts against the same size limit: this one is 63 bytes.
        let header = "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>";
        let limits = Limits { max_stanza_bytes: 100, max_depth: 3, max_attrs: 2 };
        let check = |stanza: &str, ok: bool| {
            let bytes: Vec<&[u8]> = stanza.as_bytes().chunks(1).collect();
            for chunks in [vec![header.as_bytes(), stanza.as_bytes()], [&[header.as_bytes()][..], &bytes].concat()] {
                match read_chunks(limits.clone(), &chunks) {
                    Ok(events) => assert!(ok && events.len() == 2, "{stanza}: {events:?}"),
                    Err(e) => assert!(!ok && e.condition == C::PolicyViolation, "{stanza}: {e}"),
                }
            }
            let standalone = parse_element(format!(" {stanza}\n").as_bytes(), &limits);
            assert_eq!(standalone.is_ok(), ok, "{stanza}: {standalone:?}");
            if let Err(e) = standalone {
                assert_eq!(e.condition, C::PolicyViolation);
            }
        };
        let exactly = format!("<m xmlns='u'>{}</m>", "a".repeat(100 - 17));
        assert_eq!(exactly.len(), 100);
        check(&exactly, true);
        check(&format!("<m xmlns='u'>{}</m>", "a".repeat(101 - 17)), false);
        check(&format!("<m xmlns='u' a='{}'/>", "a".repeat(100 - 19)), true);
        check(&format!("<m xmlns='u' a='{}'/>", "a".repeat(101 - 19)), false);
        check("<a><b><c/></b></a>", true);
        check("<a><b><c><d/></c></b></a>", false);
        check("<a x='1' y='2'/>", true);
        check("<a x='1' y='2' z='3'/>", false);
        check("<a><b x='1' y='2' z='3'/></a>", false);
    }

    #[test]
    fn header_size_is_limited() {
        let header = "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>";
        let input = format!("<?xml version='1.0'?> {header}");
        let limits = |max| Limits { max_stanza_bytes: max, ..Limits::default() };
        assert!(read_chunks(limits(input.len()), &[input.as_bytes()]).is_ok());
        let err = read_chunks(limits(input.len() - 1), &[input.as_bytes()]).unwrap_err();
        assert_eq!(err.condition, C::PolicyViolation);
        let spaces = " ".repeat(1000);
        let err = read_chunks(limits(999), &[spaces.as_bytes()]).unwrap_err();
        assert_eq!(err.condition, C::PolicyViolation);
    }

    #[test]
    fn parse_element_round_trips() {
        let text = "<iq xmlns='jabber:client' type='result' id='a&apos;1'>\n  <query xmlns='jabber:iq:roster' ver='2'>\
            <item jid='a@b' name='&lt;A&gt;'><group>x&amp;y</group></item><p:x xmlns:p='urn:p' p:a='1'/>\
            </query> caf\u{e9} <![CDATA[<&>]]></iq>";
        let el = element(text);
        assert!(el.is("iq", ns::CLIENT));
        let query = el.child("query", ns::ROSTER).unwrap();
        assert_eq!(query.child("item", ns::ROSTER).unwrap().attr("name"), Some("<A>"));
        assert_eq!(query.child("x", "urn:p").unwrap().attr("p:a"), Some("1"));
        assert_eq!(el.text(), "\n   caf\u{e9} <&>");
        // What the serializer writes parses back to the same tree.
        let mut plain = el.clone();
        plain.child_mut("query", ns::ROSTER).unwrap().remove_children("x", "urn:p");
        assert_eq!(element(&plain.to_xml_string()), plain);
        // The stanza form too.
        let st = parse_stanza(text.as_bytes(), &Limits::default()).unwrap();
        assert_eq!(st.id(), Some("a'1"));
        assert_eq!(st.to_element().unwrap(), el);
        assert_eq!(element(&format!("\n{text}\n ")), el);
    }

    #[test]
    fn parse_element_refuses_what_the_stream_refuses() {
        let limits = Limits::default();
        for (bad, condition) in [
            ("", C::NotWellFormed),
            ("text", C::NotWellFormed),
            ("<a>", C::NotWellFormed),
            ("<a/><b/>", C::NotWellFormed),
            ("<a/>x", C::NotWellFormed),
            ("<a></b>", C::NotWellFormed),
            ("<p:a/>", C::NotWellFormed),
            ("<a>&foo;</a>", C::RestrictedXml),
            ("<a><!-- c --></a>", C::RestrictedXml),
            ("<?xml version='1.0'?><a/>", C::RestrictedXml),
            ("<!DOCTYPE a><a/>", C::RestrictedXml),
            ("<a>\u{0}</a>", C::NotWellFormed),
        ] {
            assert_eq!(parse_element(bad.as_bytes(), &limits).unwrap_err().condition, condition, "{bad}");
            assert_eq!(parse_stanza(bad.as_bytes(), &limits).unwrap_err().condition, condition, "{bad}");
        }
        assert_eq!(parse_element(b"<a>\xff</a>", &limits).unwrap_err().condition, C::NotWellFormed);
    }

    #[test]
    fn idle_and_release() {
        let mut r = StreamReader::new(Limits::default());
        assert!(r.is_idle());
        r.feed(HEADER.as_bytes());
        r.feed(b"<message><body>hi</bo");
        assert!(!r.is_idle());
        assert!(matches!(r.next_event(), Ok(Some(ReadEvent::StreamOpen(_)))));
        assert_eq!(r.next_event(), Ok(None));
        assert!(!r.is_idle());
        r.release_buffer();
        assert_eq!(r.buf, b"<message><body>hi</bo");
        r.feed(b"dy></message>  ");
        assert!(matches!(r.next_event(), Ok(Some(ReadEvent::Stanza(_)))));
        assert_eq!(r.next_event(), Ok(None));
        assert!(r.is_idle());
        r.release_buffer();
        assert_eq!(r.buf.capacity(), 0);
        r.feed(b"<presence/>");
        assert!(matches!(r.next_event(), Ok(Some(ReadEvent::Stanza(_)))));
    }

    #[test]
    fn trickled_input_is_scanned_linearly() {
        let mut stanza = String::from("<message to='");
        stanza.push_str(&"t".repeat(50 * 1024));
        stanza.push_str("'><body>");
        stanza.push_str(&"x &amp; y ] &#x1F600; ".repeat(2500));
        stanza.push_str("</body><![CDATA[");
        stanza.push_str(&"c]".repeat(10 * 1024));
        stanza.push_str("]]>");
        while stanza.len() < 200 * 1024 {
            stanza.push_str("<x xmlns='urn:x' a='1'><y/>text</x>");
        }
        stanza.push_str("</message>");
        let limits = Limits { max_stanza_bytes: MIB, ..Limits::default() };
        let mut r = StreamReader::new(limits);
        r.feed(HEADER.as_bytes());
        assert!(matches!(r.next_event(), Ok(Some(ReadEvent::StreamOpen(_)))));
        let mut got = None;
        for b in stanza.as_bytes() {
            r.feed(std::slice::from_ref(b));
            if let Some(ev) = r.next_event().unwrap() {
                got = Some(ev);
            }
        }
        let Some(ReadEvent::Stanza(st)) = got else { panic!("no stanza") };
        assert_eq!(st.inner().len(), stanza.len() - 50 * 1024 - "<message to=''>".len() - "</message>".len());
        // Each byte is examined a bounded number of times, not once per feed.
        assert!(r.core.lexer.examined < 2 * (HEADER.len() + stanza.len()), "examined {}", r.core.lexer.examined);
    }
}
