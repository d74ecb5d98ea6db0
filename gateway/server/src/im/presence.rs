//! Presence (RFC 6121 §4): broadcast to subscribers and the account's own resources,
//! probes at login, directed presence, and unavailable on logout or disconnect.

use std::sync::Arc;

use jabberwock_proto::{ns, Element, Stanza};
use jabberwock_storage::UserRef;
use jid::{BareJid, Jid};

use super::roster::{self, Account};
use crate::router::Routed;
use crate::server::Server;
use crate::session::Session;
use crate::stream::{Flow, Frame};

const LAST_ACTIVITY: &str = "last_activity";

/// Presence from the bound client of `s`.
pub async fn outbound(s: &mut Session, st: Stanza, out: &mut Vec<Frame>) -> Flow {
    let bound = s.bound.as_ref().expect("bound");
    let kind = st.stanza_type().map(str::to_owned);
    match (st.to().map(Jid::new), kind.as_deref()) {
        (Some(Err(_)), _) => {
            out.push(Frame::Stanza(super::error_reply(&st, jabberwock_proto::StanzaError::jid_malformed())));
        }
        (Some(Ok(to)), Some("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed")) => {
            let from = BareJid::new(&bound.bare).expect("bound JIDs are valid");
            roster::outbound_subscription(&s.server, &from, st, &to.to_bare()).await;
        }
        // Probes are the server's business (RFC 6121 §4.3).
        (_, Some("probe")) => {}
        (Some(Ok(to)), _) => directed(s, st, &to).await,
        (None, None) => available(s, st, out).await,
        (None, Some("unavailable")) => unavailable(s, st).await,
        (None, _) => {}
    }
    Flow::Continue
}

async fn directed(s: &mut Session, st: Stanza, to: &Jid) {
    let bound = s.bound.as_mut().expect("bound");
    if st.stanza_type() == Some("unavailable") {
        bound.directed.remove(to.as_str());
    } else if st.stanza_type().is_none() {
        // Whoever saw us available learns when we leave, even without initial presence.
        bound.directed.insert(to.to_string());
    }
    super::route(&s.server, st).await;
}

fn priority_of(st: &Stanza) -> i8 {
    st.to_element()
        .ok()
        .and_then(|el| el.child_text("priority", ns::CLIENT))
        .and_then(|p| p.trim().parse::<i64>().ok())
        .map_or(0, |p| p.clamp(-128, 127) as i8)
}

async fn available(s: &mut Session, mut st: Stanza, out: &mut Vec<Frame>) {
    let server = s.server.clone();
    let priority = priority_of(&st);
    let bound = s.bound.as_mut().expect("bound");
    let u = jabberwock_storage::UserRef { host: &bound.domain, user: &bound.user };
    crate::modules::vcard::stamp_photo_hash(&server, u, &mut st).await;
    let initial = !bound.available;
    let first_ever = !bound.initial_presence_sent;
    bound.available = true;
    bound.initial_presence_sent = true;
    let (bare, resource, full) = (bound.bare.clone(), bound.resource.clone(), bound.jid.to_string());
    server.router.set_presence(&bare, &resource, s.conn, Some((priority, st.clone())));
    let own = BareJid::new(&bare).expect("bound JIDs are valid");
    let a = Account::of(&own).expect("accounts have a localpart");
    let (items, _) = roster::load(&server, a).await;

    // To every subscriber, and to each of the account's available resources (this one too).
    for (contact, _) in items.iter().filter(|(_, i)| i.subscription.has_from()) {
        let mut copy = st.clone();
        copy.set_attr("to", contact.as_str());
        super::route(&server, copy).await;
    }
    for r in server.router.resources(&bare).into_iter().filter(|r| r.available) {
        let mut copy = st.clone();
        copy.set_attr("to", format!("{bare}/{}", r.resource));
        if r.resource == resource {
            out.push(Frame::Stanza(copy));
        } else {
            r.handle.send(Routed::stanza(copy));
        }
    }
    // New capabilities may bring new +notify interests (XEP-0163 §4.3.2).
    tokio::spawn(crate::modules::pep::on_available(server.clone(), Jid::new(&full).expect("bound JIDs are valid"), st.clone()));
    if !initial {
        return;
    }
    // Probes: the current presence of every contact we are subscribed to, and of our
    // other resources.
    let full_jid = Jid::new(&full).expect("bound JIDs are valid");
    for (contact, _) in items.iter().filter(|(_, i)| i.subscription.has_to()) {
        if let Ok(contact) = BareJid::new(contact) {
            for p in probe(&server, &own, &contact, &full_jid).await {
                out.push(Frame::Stanza(p));
            }
        }
    }
    for r in server.router.resources(&bare).into_iter().filter(|r| r.available && r.resource != resource) {
        if let Some(p) = r.presence {
            let mut p = (*p).clone();
            p.set_attr("to", full.as_str());
            out.push(Frame::Stanza(p));
        }
    }
    if first_ever {
        for req in roster::pending_requests(&server, a).await {
            out.push(Frame::Stanza(req));
        }
    }
    if priority >= 0 {
        for msg in super::offline::take_all(&server, a.host, a.user).await {
            out.push(Frame::Stanza(msg));
        }
    }
}

/// RFC 6121 §4.3.2: answers a probe from `prober` for `contact`, if the contact's roster
/// grants `prober`'s account a subscription. A remote contact's server gets the probe
/// (from the prober's bare JID) and answers it in its own time.
async fn probe(server: &Arc<Server>, prober_bare: &BareJid, contact: &BareJid, prober: &Jid) -> Vec<Stanza> {
    if server.config.served_domain(contact.domain().as_str()).is_none() {
        let el = Element::new("presence", ns::CLIENT)
            .with_attr("type", "probe")
            .with_attr("from", prober_bare.as_str())
            .with_attr("to", contact.as_str());
        super::route(server, Stanza::from_element(&el)).await;
        return Vec::new();
    }
    let Some(ca) = Account::of(contact) else { return Vec::new() };
    let granted = roster::get(server, ca, prober_bare.as_str()).await.is_some_and(|i| i.subscription.has_from());
    if !granted {
        return Vec::new();
    }
    server
        .router
        .resources(contact.as_str())
        .into_iter()
        .filter_map(|r| r.presence)
        .map(|p| {
            let mut p = (*p).clone();
            p.set_attr("to", prober.as_str());
            p
        })
        .collect()
}

async fn unavailable(s: &mut Session, st: Stanza) {
    let server = s.server.clone();
    let bound = s.bound.as_mut().expect("bound");
    let was_available = std::mem::replace(&mut bound.available, false);
    let directed = std::mem::take(&mut bound.directed);
    let (bare, resource) = (bound.bare.clone(), bound.resource.clone());
    server.router.set_presence(&bare, &resource, s.conn, None);
    record_last_activity(&server, &bare, &st).await;
    if !was_available && directed.is_empty() {
        return;
    }
    let own = BareJid::new(&bare).expect("bound JIDs are valid");
    let mut targets: Vec<String> = Vec::new();
    if was_available {
        let (items, _) = roster::load(&server, Account::of(&own).expect("localpart")).await;
        targets.extend(items.into_iter().filter(|(_, i)| i.subscription.has_from()).map(|(c, _)| c));
        targets.extend(
            server.router.resources(&bare).into_iter().filter(|r| r.available).map(|r| format!("{bare}/{}", r.resource)),
        );
    }
    for d in directed {
        if !targets.contains(&d) {
            targets.push(d);
        }
    }
    for to in targets {
        let mut copy = st.clone();
        copy.set_attr("to", to);
        super::route(&server, copy).await;
    }
}

/// The session ends: unavailable to everyone who saw it available.
pub async fn go_offline(s: &mut Session) {
    let bound = s.bound.as_ref().expect("bound");
    let el = Element::new("presence", ns::CLIENT).with_attr("type", "unavailable").with_attr("from", bound.jid.as_str());
    unavailable(s, Stanza::from_element(&el)).await;
}

/// Presence for a local account (RFC 6121 §4.3 and §8.5).
pub async fn inbound(server: &Arc<Server>, st: Stanza, to: &Jid) {
    let bare = to.to_bare();
    match st.stanza_type() {
        Some("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed") => {
            roster::inbound_subscription(server, st, &bare).await;
        }
        Some("probe") => {
            let Some(prober) = st.from().and_then(|f| Jid::new(f).ok()) else { return };
            for p in probe(server, &prober.to_bare(), &bare, &prober).await {
                super::route(server, p).await;
            }
        }
        _ => match to.resource() {
            Some(res) => {
                if let Some(h) = server.router.get(bare.as_str(), res.as_str()) {
                    h.send(Routed::stanza(st));
                }
            }
            None => {
                for r in server.router.resources(bare.as_str()).into_iter().filter(|r| r.available) {
                    r.handle.send(Routed::stanza(st.clone()));
                }
            }
        },
    }
}

/// Sends the current presence of each available resource of `from` to `to` (after `to`
/// was granted a subscription).
pub async fn send_current_presence(server: &Arc<Server>, from: &BareJid, to: &str) {
    for r in server.router.resources(from.as_str()) {
        if let Some(p) = r.presence {
            let mut p = (*p).clone();
            p.set_attr("to", to);
            super::route(server, p).await;
        }
    }
}

/// Sends unavailable from each available resource of `from` to `to` (after `to` lost its
/// subscription).
pub async fn send_unavailable(server: &Arc<Server>, from: &BareJid, to: &str) {
    for r in server.router.resources(from.as_str()).into_iter().filter(|r| r.available) {
        let el = Element::new("presence", ns::CLIENT)
            .with_attr("type", "unavailable")
            .with_attr("from", format!("{from}/{}", r.resource))
            .with_attr("to", to);
        super::route(server, Stanza::from_element(&el)).await;
    }
}

/// XEP-0012: when the account was last seen, and its last status.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct LastActivity {
    pub unix_secs: i64,
    pub status: String,
}

async fn record_last_activity(server: &Server, bare: &str, st: &Stanza) {
    let Ok(own) = BareJid::new(bare) else { return };
    let Some(a) = Account::of(&own) else { return };
    let status = st.to_element().ok().and_then(|e| e.child_text("status", ns::CLIENT)).unwrap_or_default();
    let last = LastActivity { unix_secs: time::OffsetDateTime::now_utc().unix_timestamp(), status };
    let json = serde_json::to_vec(&last).expect("serializes");
    if let Err(e) = server.store.kv_set(UserRef { host: a.host, user: a.user }, LAST_ACTIVITY, Some(&json)).await {
        tracing::warn!(error = %e, "recording last activity failed");
    }
}

pub async fn last_activity(server: &Server, host: &str, user: &str) -> Option<LastActivity> {
    let raw = server.store.kv_get(UserRef { host, user }, LAST_ACTIVITY).await.ok()??;
    serde_json::from_slice(&raw).ok()
}
