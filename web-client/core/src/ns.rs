//! Namespaces: the protocol crate's, plus the few only the client uses.

pub use jabberwock_proto::ns::*;

/// XEP-0156 host-meta document.
pub const XRD: &str = "http://docs.oasis-open.org/ns/xri/xrd-1.0";
/// XEP-0085 chat state notifications.
pub const CHATSTATES: &str = "http://jabber.org/protocol/chatstates";
/// XEP-0184 message delivery receipts.
pub const RECEIPTS: &str = "urn:xmpp:receipts";
/// XEP-0308 Last Message Correction.
pub const CORRECT: &str = "urn:xmpp:message-correct:0";
