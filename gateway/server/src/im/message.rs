//! Message delivery to a local account (RFC 6121 §8.5). The modules' message hooks see
//! each message on its way in (an archive stamps it, carbons copy it) and keep it when no
//! resource takes it (offline storage).

use std::sync::Arc;

use jabberwock_proto::{Stanza, StanzaError};
use jid::{BareJid, Jid};

use crate::registry::{Resource, Routed};
use crate::server::Server;

/// Where a message for an account goes.
enum Target {
    Resources(Vec<Resource>),
    Offline,
    /// Silently dropped, as RFC 6121 asks for this type.
    Nowhere,
}

/// Delivers `st` from `from` (its parsed `from`, if any) to the local JID `to`. On
/// failure the stanza comes back with the error the sender should get.
pub async fn deliver(server: &Arc<Server>, st: Stanza, from: Option<&Jid>, to: &Jid) -> Result<(), (Stanza, StanzaError)> {
    let bare = to.to_bare();
    let target = match target(server, &st, to) {
        Ok(Target::Offline) if !crate::accounts::exists(server, bare.domain().as_str(), bare.node().map_or("", |n| n.as_str())).await => {
            return Err((st, StanzaError::service_unavailable()));
        }
        Ok(t) => t,
        Err(e) => return Err((st, e)),
    };
    let mut st = st;
    if let (Some(from), false) = (from, matches!(target, Target::Nowhere)) {
        let from = from.to_bare();
        for h in &server.modules.message_hooks {
            h.delivering(server, &bare, &from, &mut st).await;
        }
    }
    match target {
        Target::Nowhere => Ok(()),
        Target::Offline => {
            for h in &server.modules.message_hooks {
                if let Some(stored) = h.store_offline(server, &bare, &st).await {
                    return stored.map_err(|e| (st, e));
                }
            }
            Err((st, StanzaError::service_unavailable()))
        }
        Target::Resources(resources) => {
            for r in &resources {
                r.handle.send(Routed::stanza(st.clone()));
            }
            let delivered: Vec<&str> = resources.iter().map(|r| r.resource.as_str()).collect();
            for h in &server.modules.message_hooks {
                h.delivered(server, &bare, &delivered, &st);
            }
            Ok(())
        }
    }
}

/// RFC 6121 §8.5.2 (bare JID) and §8.5.3 (full JID).
fn target(server: &Server, st: &Stanza, to: &Jid) -> Result<Target, StanzaError> {
    let kind = st.stanza_type().unwrap_or("normal");
    let bare: BareJid = to.to_bare();
    if let Some(resource) = to.resource() {
        if let Some(r) = server.sessions.resource(bare.as_str(), resource.as_str()) {
            return Ok(Target::Resources(vec![r]));
        }
        // §8.5.3.2: a full JID with no session.
        match kind {
            "error" | "headline" => return Ok(Target::Nowhere),
            "groupchat" => return Err(StanzaError::service_unavailable()),
            _ => {}
        }
    }
    // Resources with negative priority never get bare-JID messages.
    let resources: Vec<_> =
        server.sessions.resources(bare.as_str()).into_iter().filter(|r| r.available && r.priority >= 0).collect();
    match kind {
        "error" => Ok(Target::Nowhere),
        "groupchat" => Err(StanzaError::service_unavailable()),
        "headline" if resources.is_empty() => Ok(Target::Nowhere),
        "headline" => Ok(Target::Resources(resources)),
        _ => match resources.iter().map(|r| r.priority).max() {
            None => Ok(Target::Offline),
            Some(top) => Ok(Target::Resources(resources.into_iter().filter(|r| r.priority == top).collect())),
        },
    }
}
