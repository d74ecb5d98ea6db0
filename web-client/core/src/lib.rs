//! The Jabberwock web client's XMPP logic, without I/O.
//!
//! * [`scram`]: SCRAM-SHA-1/-256 (RFC 5802, RFC 7677), client side.
//! * [`fast`]: XEP-0484 FAST tokens (HT-SHA-256-NONE), client side.
//! * [`connection`]: stream negotiation as a state machine (open → SASL → bind or resume →
//!   online, or open → SASL2 with Bind2 or resumption inline → online).
//! * [`sm`]: XEP-0198 stream management: acknowledgements and resumption.
//! * [`resume`]: what a page keeps across a reload to resume its stream.
//! * [`framing`]: RFC 7395 WebSocket messages ↔ connection frames.
//! * [`bosh`]: XEP-0124/0206 BOSH request bodies ↔ connection frames.
//! * [`discovery`]: XEP-0156 host-meta (JSON and XRD).
//! * [`stanza`]: building and classifying stanzas.
//! * [`roster`], [`chat`]: the models the views show.
//! * [`bookmarks`]: the rooms the user keeps (XEP-0402, or XEP-0048 where that is all).
//! * [`caps`]: our disco#info and its XEP-0115 hash.
//! * [`muc`]: group chats (XEP-0045), with [`form`] for their XEP-0004 settings forms.
//! * [`upload`]: XEP-0363 HTTP upload: the service, slots and their checks.
//! * [`actions`]: corrections, retractions, reactions, replies, markers and file links.
//! * [`kept`]: the contacts and recent conversations the browser keeps for reading offline.
//! * [`outbox`]: what is written while offline; [`blocking`]: XEP-0191; [`account`]:
//!   XEP-0077 password change; [`avatar`]: pictures (XEP-0153 and vCard photos).
//! * [`client`]: all of the above behind one type the view layer drives.
//! * [`tabs`]: what the tabs of a browser and the worker holding their shared session say.
//!
//! Nothing here does I/O, reads a clock or draws random numbers: the caller passes the
//! time and the nonce. That keeps it fast to test natively and identical in the browser.

pub mod account;
pub mod actions;
pub mod address;
pub mod avatar;
pub mod blocking;
pub mod bookmarks;
pub mod bosh;
pub mod caps;
pub mod chat;
pub mod client;
pub mod connection;
pub mod discovery;
pub mod fast;
pub mod kept;
pub mod form;
pub mod framing;
pub mod muc;
pub mod ns;
pub mod outbox;
pub mod resume;
pub mod roster;
pub mod scram;
pub mod sm;
pub mod splice;
pub mod stanza;
pub mod tabs;
pub mod upload;

pub use address::Account;
pub use client::{Client, Event};
pub use connection::{ConnError, Phase};
pub use framing::{Frame, Input};
pub use jabberwock_proto::{Element, Limits};
pub use resume::Resumable;
pub use roster::{ContactView, Subscription};
pub use stanza::{PresenceInfo, Show};
