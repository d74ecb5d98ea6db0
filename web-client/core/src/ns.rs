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
/// XEP-0424 Message Retraction.
pub const RETRACT: &str = MESSAGE_RETRACT;
/// XEP-0444 Message Reactions.
pub const REACTIONS: &str = "urn:xmpp:reactions:0";
/// XEP-0333 Chat Markers.
pub const MARKERS: &str = "urn:xmpp:chat-markers:0";
/// XEP-0461 Message Replies.
pub const REPLY: &str = "urn:xmpp:reply:0";
/// XEP-0428 Fallback Indication.
pub const FALLBACK: &str = "urn:xmpp:fallback:0";
/// XEP-0066 Out of Band Data (in messages).
pub const OOB: &str = "jabber:x:oob";
/// XEP-0363 HTTP File Upload.
pub const UPLOAD: &str = "urn:xmpp:http:upload:0";
