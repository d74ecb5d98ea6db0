//! Transports turn bytes into stream events for the one session core, and frames back
//! into bytes. They own nothing of XMPP's logic.

pub mod tcp;
