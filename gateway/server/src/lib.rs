//! The Jabberwock XMPP server.
//!
//! * [`transport`] turns bytes into stream events (TCP/TLS, WebSocket);
//! * [`http`] is the axum side: WebSocket, XEP-0156 discovery and the web client;
//! * [`session`] is the one client state machine every transport feeds;
//! * [`routing`] decides where each stanza goes: a local account, a service, a remote server;
//! * [`im`] is RFC 6121: roster, subscriptions, presence, messages to local accounts;
//! * [`modules`] is the module host and its guests, one file per XEP;
//! * [`registry`] knows which session is bound to which JID;
//! * [`stanzas`] builds the replies and wrappers the server writes;
//! * [`server`] wires it together; [`cli`] is the `jabberwock` command.

pub mod accounts;
pub mod administration;
pub mod admission;
pub mod cache;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod control;
pub mod doctor;
pub mod http;
pub mod im;
pub mod metrics;
pub mod modules;
pub mod registry;
pub mod routing;
pub mod s2s;
pub mod server;
pub mod session;
pub mod stanzas;
pub mod stream;
pub mod tls;
pub mod transport;
