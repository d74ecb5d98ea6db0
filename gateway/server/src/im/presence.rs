//! Presence (RFC 6121 §4): broadcast to subscribers and the account's own resources,
//! probes at login, directed presence, and unavailable on logout or disconnect.

use std::sync::Arc;

use jabberwock_proto::{ns, Element, Stanza};
use jid::{BareJid, Jid};

use super::roster::{self, Account};
use crate::modules::Available;
use crate::routing::route;
use crate::server::Server;
use crate::session::Session;
use crate::stream::{Flow, Frame};

/// Presence from the bound client of `s`.
pub async fn outbound(s: &mut Session, st: Stanza, out: &mut Vec<Frame>) -> Flow {
    let bound = s.bound.as_ref().expect("bound");
    let kind = st.stanza_type().map(str::to_owned);
    match (st.to().map(Jid::new), kind.as_deref()) {
        (Some(Err(_)), _) => {
            out.push(Frame::Stanza(crate::stanzas::error_reply(&st, jabberwock_proto::StanzaError::jid_malformed())));
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
    route(&s.server, st).await;
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
    let jid = s.bound.as_ref().expect("bound").jid.clone();
    for h in &server.modules.presence_hooks {
        h.broadcasting(&server, &jid, &mut st).await;
    }
    let bound = s.bound.as_mut().expect("bound");
    let initial = !bound.available;
    let first_ever = !bound.initial_presence_sent;
    bound.available = true;
    bound.initial_presence_sent = true;
    let (bare, resource) = (bound.bare.clone(), bound.resource.clone());
    server.sessions.set_presence(&bare, &resource, s.conn, Some((priority, st.clone()))).await;
    let own = BareJid::new(&bare).expect("bound JIDs are valid");
    let a = Account::of(&own).expect("accounts have a localpart");
    let (items, _) = roster::load(&server, a).await;

    // To every subscriber, and to each of the account's available resources (this one too).
    for (contact, _) in items.iter().filter(|(_, i)| i.subscription.has_from()) {
        let mut copy = st.clone();
        copy.set_attr("to", contact.as_str());
        route(&server, copy).await;
    }
    for r in server.sessions.resources(&bare).into_iter().filter(|r| r.available) {
        let mut copy = st.clone();
        copy.set_attr("to", format!("{bare}/{}", r.resource));
        if r.resource == resource {
            out.push(Frame::Stanza(copy));
        } else {
            let _ = r.handle.deliver(copy);
        }
    }
    if initial {
        probes_and_requests(s, &own, a, &items, first_ever, out).await;
    }
    let mut ev = Available { server: &server, jid: &jid, presence: &st, priority, initial, out: Vec::new(), stored: Vec::new() };
    for h in &server.modules.presence_hooks {
        h.available(&mut ev).await;
    }
    out.extend(ev.out.into_iter().map(Frame::Stanza));
    for (st, receipt) in ev.stored {
        s.send_stored(st, receipt, out);
    }
}

/// At initial presence: the current presence of every contact the account is subscribed
/// to and of its other resources, then (the first time) pending subscription requests.
async fn probes_and_requests(
    s: &Session,
    own: &BareJid,
    a: Account<'_>,
    items: &std::collections::BTreeMap<String, roster::Item>,
    first_ever: bool,
    out: &mut Vec<Frame>,
) {
    let server = &s.server;
    let bound = s.bound.as_ref().expect("bound");
    let (bare, resource, full) = (&bound.bare, &bound.resource, bound.jid.as_str());
    let full_jid = Jid::new(full).expect("bound JIDs are valid");
    for (contact, _) in items.iter().filter(|(_, i)| i.subscription.has_to()) {
        if let Ok(contact) = BareJid::new(contact) {
            for p in probe(server, own, &contact, &full_jid).await {
                out.push(Frame::Stanza(p));
            }
        }
    }
    for r in server.sessions.resources(bare).into_iter().filter(|r| r.available && &r.resource != resource) {
        if let Some(p) = r.presence {
            let mut p = (*p).clone();
            p.set_attr("to", full);
            out.push(Frame::Stanza(p));
        }
    }
    if first_ever {
        for req in roster::pending_requests(server, a).await {
            out.push(Frame::Stanza(req));
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
        route(server, Stanza::from_element(&el)).await;
        return Vec::new();
    }
    let Some(ca) = Account::of(contact) else { return Vec::new() };
    let granted = roster::get(server, ca, prober_bare.as_str()).await.is_some_and(|i| i.subscription.has_from());
    if !granted {
        return Vec::new();
    }
    server
        .sessions
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
    let (bare, resource, jid) = (bound.bare.clone(), bound.resource.clone(), bound.jid.clone());
    server.sessions.set_presence(&bare, &resource, s.conn, None).await;
    for h in &server.modules.presence_hooks {
        h.unavailable(&server, &jid, &st).await;
    }
    if !was_available && directed.is_empty() {
        return;
    }
    let mut targets: Vec<String> = Vec::new();
    if was_available {
        targets = unavailable_targets(&server, &BareJid::new(&bare).expect("bound JIDs are valid")).await;
    }
    for d in directed {
        if !targets.contains(&d) {
            targets.push(d);
        }
    }
    for to in targets {
        let mut copy = st.clone();
        copy.set_attr("to", to);
        route(&server, copy).await;
    }
}

/// Who learns that a resource of `own` that was available is gone: the account's
/// subscribers and its available resources.
async fn unavailable_targets(server: &Arc<Server>, own: &BareJid) -> Vec<String> {
    let (items, _) = roster::load(server, Account::of(own).expect("localpart")).await;
    let mut targets: Vec<String> = items.into_iter().filter(|(_, i)| i.subscription.has_from()).map(|(c, _)| c).collect();
    targets.extend(server.sessions.resources(own.as_str()).into_iter().filter(|r| r.available).map(|r| format!("{own}/{}", r.resource)));
    targets
}

/// Unavailable from `full`, an available session that ended without saying so on a
/// cluster node that is gone (its directed presence died with it).
pub async fn unavailable_on_behalf(server: &Arc<Server>, full: &jid::FullJid) {
    let el = Element::new("presence", ns::CLIENT).with_attr("type", "unavailable").with_attr("from", full.as_str());
    let st = Stanza::from_element(&el);
    for to in unavailable_targets(server, &full.to_bare()).await {
        let mut copy = st.clone();
        copy.set_attr("to", to);
        route(server, copy).await;
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
                route(server, p).await;
            }
        }
        _ => match to.resource() {
            Some(res) => {
                if let Some(h) = server.sessions.get(bare.as_str(), res.as_str()) {
                    let _ = h.deliver(st);
                }
            }
            None => {
                for r in server.sessions.resources(bare.as_str()).into_iter().filter(|r| r.available) {
                    let _ = r.handle.deliver(st.clone());
                }
            }
        },
    }
}

/// Sends the current presence of each available resource of `from` to `to` (after `to`
/// was granted a subscription).
pub async fn send_current_presence(server: &Arc<Server>, from: &BareJid, to: &str) {
    for r in server.sessions.resources(from.as_str()) {
        if let Some(p) = r.presence {
            let mut p = (*p).clone();
            p.set_attr("to", to);
            route(server, p).await;
        }
    }
}

/// Sends unavailable from each available resource of `from` to `to` (after `to` lost its
/// subscription).
pub async fn send_unavailable(server: &Arc<Server>, from: &BareJid, to: &str) {
    for r in server.sessions.resources(from.as_str()).into_iter().filter(|r| r.available) {
        let el = Element::new("presence", ns::CLIENT)
            .with_attr("type", "unavailable")
            .with_attr("from", format!("{from}/{}", r.resource))
            .with_attr("to", to);
        route(server, Stanza::from_element(&el)).await;
    }
}
