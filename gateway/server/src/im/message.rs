//! Message delivery to a local account (RFC 6121 §8.5).

use std::sync::Arc;

use jabberwock_proto::{Stanza, StanzaError};
use jid::Jid;

use super::offline;
use crate::router::Routed;
use crate::server::Server;

/// Delivers `st` to the local JID `to`. On failure the stanza comes back with the error
/// the sender should get.
pub async fn deliver(server: &Arc<Server>, st: Stanza, to: &Jid) -> Result<(), (Stanza, StanzaError)> {
    let kind = st.stanza_type().unwrap_or("normal");
    let bare = to.to_bare();
    if let Some(resource) = to.resource() {
        if let Some(h) = server.router.get(bare.as_str(), resource.as_str()) {
            h.send(Routed::Stanza(st));
            return Ok(());
        }
        // §8.5.3.2: a full JID with no session.
        match kind {
            "error" | "headline" => return Ok(()),
            "groupchat" => return Err((st, StanzaError::service_unavailable())),
            _ => {}
        }
    }
    // §8.5.2: the bare JID. Resources with negative priority never get bare-JID messages.
    let resources: Vec<_> =
        server.router.resources(bare.as_str()).into_iter().filter(|r| r.available && r.priority >= 0).collect();
    match kind {
        "error" => Ok(()),
        "groupchat" => Err((st, StanzaError::service_unavailable())),
        "headline" => {
            for r in &resources {
                r.handle.send(Routed::Stanza(st.clone()));
            }
            Ok(())
        }
        _ => {
            let Some(top) = resources.iter().map(|r| r.priority).max() else {
                return offline::store(server, &bare, st).await;
            };
            for r in resources.iter().filter(|r| r.priority == top) {
                r.handle.send(Routed::Stanza(st.clone()));
            }
            Ok(())
        }
    }
}
