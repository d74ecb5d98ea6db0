//! The Jabberwock XMPP server.
//!
//! * [`transport`] turns bytes into stream events (TCP/TLS, WebSocket);
//! * [`http`] is the axum side: WebSocket, XEP-0156 discovery and the web client;
//! * [`session`] is the one client state machine every transport feeds;
//! * [`im`] is RFC 6121: roster, subscriptions, presence, messages, offline storage;
//! * [`modules`] holds one file per XEP the server answers;
//! * [`router`] knows which session is bound to which JID;
//! * [`server`] wires it together; [`cli`] is the `jabberwock` command.

pub mod accounts;
pub mod admission;
pub mod cache;
pub mod cli;
pub mod config;
pub mod http;
pub mod im;
pub mod modules;
pub mod router;
pub mod s2s;
pub mod server;
pub mod session;
pub mod stream;
pub mod tls;
pub mod transport;
