//! The incremental stream reader.
//!
//! Bytes arrive in arbitrary pieces ([`StreamReader::feed`]); [`StreamReader::next_event`]
//! returns each complete top-level event once all its bytes are there. The reader never
//! expands entities beyond the five predefined ones and character references, and refuses
//! DTDs, comments, processing instructions and undeclared prefixes (RFC 6120 §11.1).
//! Every input limit is enforced while reading, before memory is committed.

use crate::element::Element;
use crate::error::StreamError;
use crate::stanza::Stanza;

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
    limits: Limits,
}

impl StreamReader {
    pub fn new(limits: Limits) -> Self {
        StreamReader { limits }
    }

    /// Appends received bytes.
    pub fn feed(&mut self, _data: &[u8]) {
        let _ = &self.limits;
        todo!()
    }

    /// The next complete event, `Ok(None)` when more bytes are needed.
    pub fn next_event(&mut self) -> Result<Option<ReadEvent>, StreamError> {
        todo!()
    }

    /// Expects a new stream header (after SASL success), keeping bytes already buffered.
    pub fn restart(&mut self) {
        todo!()
    }

    /// True when no partial event is buffered.
    pub fn is_idle(&self) -> bool {
        todo!()
    }

    /// Frees the buffer's memory; call when idle.
    pub fn release_buffer(&mut self) {
        todo!()
    }
}

/// Parses one complete, standalone element (nothing inherited from a stream header) into
/// a tree, as used for RFC 7395 WebSocket messages and on-demand payload parsing.
pub fn parse_element(_bytes: &[u8], _limits: &Limits) -> Result<Element, StreamError> {
    todo!()
}

/// Parses one complete, standalone element as a [`Stanza`].
pub fn parse_stanza(_bytes: &[u8], _limits: &Limits) -> Result<Stanza, StreamError> {
    todo!()
}
