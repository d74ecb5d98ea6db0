//! Message delivery to a local account (RFC 6121 §8.5). The modules' message hooks see
//! each message on its way in (an archive stamps it, carbons copy it) and keep it when no
//! resource takes it (offline storage).
//!
//! A session that holds too much output refuses what comes for it; the message is then
//! routed as if that session were not there: to the account's other resources, or to
//! offline storage. Where that leaves it nowhere to go, the sender gets
//! `resource-constraint`.

use std::sync::Arc;

use jabberwock_proto::{Stanza, StanzaError};
use jid::{BareJid, Jid};

use crate::registry::{ConnId, Resource};
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
    let dest = match target(server, &st, to, &[]) {
        Ok(Target::Offline) if !crate::accounts::exists(server, bare.domain().as_str(), bare.node().map_or("", |n| n.as_str())).await => {
            return Err((st, StanzaError::service_unavailable()));
        }
        Ok(t) => t,
        Err(e) => return Err((st, e)),
    };
    let mut st = st;
    let announced = from.is_some() && !matches!(dest, Target::Nowhere);
    if let (Some(from), true) = (from, announced) {
        let from = from.to_bare();
        for h in &server.modules.message_hooks {
            if let Err(e) = h.delivering(server, &bare, &from, &mut st).await {
                return bounce(server, &bare, true, st, e).await;
            }
        }
    }
    dispatch(server, st, to, dest, Seen::First { announced }).await
}

/// Routes again a message that reached `to`'s session but was never delivered by it (a
/// session that ended with it unacknowledged, or a parked session's journal): to the
/// account's other resources or to offline storage. The hooks that saw it reach the
/// account (the archive, carbons) do not see it again; it is the same message. An error
/// goes back to its sender.
pub async fn reroute(server: &Arc<Server>, st: Stanza, to: &BareJid) {
    reroute_without(server, st, to, &[]).await
}

/// [`reroute`], as if the sessions in `refused` were not there (they are on a node that is
/// gone, say, which the registry may not know yet).
pub async fn reroute_without(server: &Arc<Server>, mut st: Stanza, to: &BareJid, refused: &[ConnId]) {
    st.set_attr("to", to.as_str());
    let to = Jid::from(to.clone());
    let delivered = match target(server, &st, &to, refused) {
        Ok(dest) => dispatch(server, st, &to, dest, Seen::Again).await,
        Err(e) => Err((st, e)),
    };
    if let Err((st, e)) = delivered {
        for reply in crate::stanzas::bounce_reply(&st, e) {
            crate::routing::route(server, reply).await;
        }
    }
}

/// Whether the hooks see a message for the first time.
#[derive(Clone, Copy)]
enum Seen {
    /// They see it delivered; `announced`: they saw it coming, and take back what they
    /// recorded if it bounces.
    First { announced: bool },
    /// Routed again: they saw it the first time.
    Again,
}

/// Hands `st` to the resources of `dest`, or offline storage, trying the next target
/// while resources refuse it.
async fn dispatch(server: &Arc<Server>, st: Stanza, to: &Jid, mut dest: Target, seen: Seen) -> Result<(), (Stanza, StanzaError)> {
    let bare = to.to_bare();
    let announced = matches!(seen, Seen::First { announced: true });
    let bounce = |st, e| bounce(server, &bare, announced, st, e);
    // Sessions that refused the message, as it is routed again without them.
    let mut refused: Vec<ConnId> = Vec::new();
    loop {
        match dest {
            Target::Nowhere if refused.is_empty() => return Ok(()),
            Target::Nowhere => return bounce(st, StanzaError::resource_constraint()).await,
            Target::Offline => {
                for h in &server.modules.message_hooks {
                    match h.store_offline(server, &bare, &st).await {
                        Some(Ok(())) => return Ok(()),
                        Some(Err(e)) => return bounce(st, e).await,
                        None => {}
                    }
                }
                return bounce(st, StanzaError::service_unavailable()).await;
            }
            Target::Resources(resources) => {
                let mut delivered: Vec<&str> = Vec::with_capacity(resources.len());
                for r in &resources {
                    match r.handle.deliver(st.clone()) {
                        Ok(()) => delivered.push(&r.resource),
                        Err(_) => refused.push(r.handle.conn),
                    }
                }
                if !delivered.is_empty() {
                    if matches!(seen, Seen::First { .. }) {
                        for h in &server.modules.message_hooks {
                            h.delivered(server, &bare, &delivered, &st);
                        }
                    }
                    return Ok(());
                }
                dest = match target(server, &st, to, &refused) {
                    Ok(t) => t,
                    Err(_) => return bounce(st, StanzaError::resource_constraint()).await,
                };
            }
        }
    }
}

/// The message goes back to its sender with `e`: if the hooks saw it coming
/// (`announced`), they take back what they recorded.
async fn bounce(server: &Server, to: &BareJid, announced: bool, st: Stanza, e: StanzaError) -> Result<(), (Stanza, StanzaError)> {
    if announced {
        for h in &server.modules.message_hooks {
            h.not_delivered(server, to, &st).await;
        }
    }
    Err((st, e))
}

/// RFC 6121 §8.5.2 (bare JID) and §8.5.3 (full JID), as if the sessions in `refused`
/// were not there.
fn target(server: &Server, st: &Stanza, to: &Jid, refused: &[ConnId]) -> Result<Target, StanzaError> {
    let kind = st.stanza_type().unwrap_or("normal");
    let bare: BareJid = to.to_bare();
    let mut resources = server.sessions.resources(bare.as_str());
    resources.retain(|r| !refused.contains(&r.handle.conn));
    if let Some(resource) = to.resource() {
        if let Some(r) = resources.iter().find(|r| r.resource == resource.as_str()) {
            return Ok(Target::Resources(vec![r.clone()]));
        }
        // §8.5.3.2: a full JID with no session.
        match kind {
            "error" | "headline" => return Ok(Target::Nowhere),
            "groupchat" => return Err(StanzaError::service_unavailable()),
            _ => {}
        }
    }
    // Resources with negative priority never get bare-JID messages.
    resources.retain(|r| r.available && r.priority >= 0);
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
