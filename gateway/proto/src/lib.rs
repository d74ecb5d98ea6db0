//! The XMPP wire protocol with no I/O.
//!
//! * [`element`]: a small owned XML tree, used when a module needs to look inside a stanza.
//! * [`reader`]: the incremental stream reader that turns bytes into [`reader::ReadEvent`]s
//!   and enforces the input limits.
//! * [`stanza`]: a top-level element kept as its parsed start tag plus the raw bytes of its
//!   content, so routing never builds a DOM.
//! * [`localpart`]: what names the server's own accounts may have.
//! * [`error`]: stream errors (RFC 6120 §4.9) and stanza errors (RFC 6120 §8.3).
//! * [`websocket`] and [`bosh`]: what the web transports read from each message or
//!   request (RFC 7395 framing, XEP-0124/0206 bodies).

pub mod bosh;
pub mod element;
pub mod error;
pub mod escape;
pub mod localpart;
pub mod ns;
pub mod reader;
pub mod stanza;
pub mod websocket;
pub mod writer;

pub use element::{Element, Node};
pub use error::{ErrorType, StanzaError, StanzaErrorCondition, StreamError, StreamErrorCondition};
pub use jid;
pub use reader::{Limits, ReadEvent, StreamHeader, StreamReader};
pub use stanza::{Stanza, StanzaKind};
