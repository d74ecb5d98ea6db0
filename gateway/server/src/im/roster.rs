//! The roster (RFC 6121 §2), roster versioning (XEP-0237) and the subscription state
//! machine (RFC 6121 §3 and appendix A), persisted.
//!
//! Stores per account: map `roster` (contact bare JID → [`Item`] as JSON), keyval
//! `roster_version`, and map `roster_pending` (contact → the stored inbound `subscribe`
//! awaiting an answer, redelivered at login). Every read-modify-write runs under the
//! account's lock, and the item and the new version are written in one transaction. Both
//! maps are capped (`limits.max_roster_items`, `limits.max_pending_subscriptions`).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use jabberwock_proto::{ns, reader, Element, Limits, Stanza, StanzaError};
use jabberwock_storage::{UserRef, Write};
use jid::{BareJid, Jid};
use serde::{Deserialize, Serialize};

use crate::modules::{Host, IqCtx, IqHandler, IqResult, IqRoute, IqTarget, Module};
use crate::server::Server;
use crate::stanzas::random_id;

const ROSTER: &str = "roster";
const VERSION: &str = "roster_version";
const PENDING: &str = "roster_pending";
/// Longest item name or group name we keep.
const MAX_TEXT: usize = 1023;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Subscription {
    #[default]
    None,
    To,
    From,
    Both,
}

impl Subscription {
    pub fn has_to(self) -> bool {
        matches!(self, Subscription::To | Subscription::Both)
    }

    pub fn has_from(self) -> bool {
        matches!(self, Subscription::From | Subscription::Both)
    }

    fn from_flags(to: bool, from: bool) -> Self {
        match (to, from) {
            (false, false) => Subscription::None,
            (true, false) => Subscription::To,
            (false, true) => Subscription::From,
            (true, true) => Subscription::Both,
        }
    }

    fn with_to(self, to: bool) -> Self {
        Self::from_flags(to, self.has_from())
    }

    fn with_from(self, from: bool) -> Self {
        Self::from_flags(self.has_to(), from)
    }

    fn as_str(self) -> &'static str {
        match self {
            Subscription::None => "none",
            Subscription::To => "to",
            Subscription::From => "from",
            Subscription::Both => "both",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
    #[serde(default)]
    pub subscription: Subscription,
    /// Our subscription request to the contact is pending ("Pending Out").
    #[serde(default)]
    pub ask: bool,
    /// The user pre-approved the contact's subscription (RFC 6121 §3.4).
    #[serde(default)]
    pub approved: bool,
    #[serde(default)]
    pub groups: Vec<String>,
}

impl Item {
    fn to_element(&self, jid: &str) -> Element {
        let mut el = Element::new("item", ns::ROSTER)
            .with_attr("jid", jid)
            .with_opt_attr("name", self.name.clone())
            .with_attr("subscription", self.subscription.as_str());
        if self.ask {
            el.set_attr("ask", "subscribe");
        }
        if self.approved {
            el.set_attr("approved", "true");
        }
        for g in &self.groups {
            el.push(Element::new("group", ns::ROSTER).with_text(g.clone()));
        }
        el
    }
}

/// One account's roster, addressed by bare JID parts.
#[derive(Clone, Copy)]
pub struct Account<'a> {
    pub host: &'a str,
    pub user: &'a str,
}

impl<'a> Account<'a> {
    pub fn of(bare: &'a BareJid) -> Option<Self> {
        Some(Account { host: bare.domain().as_str(), user: bare.node()?.as_str() })
    }

    fn uref(self) -> UserRef<'a> {
        UserRef { host: self.host, user: self.user }
    }

    pub fn bare(self) -> String {
        format!("{}@{}", self.user, self.host)
    }
}

pub async fn load(server: &Server, a: Account<'_>) -> (BTreeMap<String, Item>, u64) {
    let items = match server.store.map_all(a.uref(), ROSTER).await {
        Ok(rows) => rows.into_iter().filter_map(|(k, v)| Some((k, serde_json::from_slice(&v).ok()?))).collect(),
        Err(e) => {
            tracing::error!(error = %e, "loading a roster failed");
            BTreeMap::new()
        }
    };
    (items, version(server, a).await)
}

async fn version(server: &Server, a: Account<'_>) -> u64 {
    match server.store.kv_get(a.uref(), VERSION).await {
        Ok(Some(v)) => std::str::from_utf8(&v).ok().and_then(|s| s.parse().ok()).unwrap_or(0),
        _ => 0,
    }
}

pub async fn get(server: &Server, a: Account<'_>, contact: &str) -> Option<Item> {
    let raw = server.store.map_get(a.uref(), ROSTER, contact).await.ok()??;
    serde_json::from_slice(&raw).ok()
}

/// Writes (or with `None` removes) an item and bumps the version atomically, then pushes
/// the change to every interested resource.
async fn save(server: &Server, a: Account<'_>, contact: &str, item: Option<&Item>) -> Result<(), StanzaError> {
    let ver = (version(server, a).await + 1).to_string();
    let json = item.map(|i| serde_json::to_vec(i).expect("items serialize"));
    let writes = [
        Write::Map { store: ROSTER, key: contact, value: json.as_deref() },
        Write::Keyval { store: VERSION, value: Some(ver.as_bytes()) },
    ];
    server.store.write_batch(a.uref(), &writes).await.map_err(|e| {
        tracing::error!(error = %e, "saving a roster item failed");
        StanzaError::internal_server_error()
    })?;
    push(server, a, contact, item, &ver);
    Ok(())
}

/// RFC 6121 §2.1.6: a roster push to each interested resource.
fn push(server: &Server, a: Account<'_>, contact: &str, item: Option<&Item>, ver: &str) {
    let item_el = match item {
        Some(i) => i.to_element(contact),
        None => Element::new("item", ns::ROSTER).with_attr("jid", contact).with_attr("subscription", "remove"),
    };
    let bare = a.bare();
    for r in server.sessions.resources(&bare).into_iter().filter(|r| r.interested) {
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_attr("id", random_id())
            .with_attr("to", format!("{bare}/{}", r.resource))
            .with_child(Element::new("query", ns::ROSTER).with_attr("ver", ver).with_child(item_el.clone()));
        let _ = r.handle.deliver(Stanza::from_element(&iq));
    }
}

/// Changes one item under the account lock; `f` returns the new item (`None` removes it).
/// Saves and pushes only when something changed. Returns the old and the new item.
async fn update(
    server: &Server,
    a: Account<'_>,
    contact: &str,
    f: impl FnOnce(Option<Item>) -> Option<Item>,
) -> Result<(Option<Item>, Option<Item>), StanzaError> {
    let _guard = server.lock_account(&a.bare()).await;
    let old = get(server, a, contact).await;
    let new = f(old.clone());
    if old.is_none() && new.is_some() && roster_full(server, a).await? {
        // A quota rather than a refusal of this contact: RFC 6120 §8.3.3.18's "lacks the
        // system resources", as for the other per-account caps, and no item is stored.
        return Err(StanzaError::resource_constraint().with_text("the roster is full"));
    }
    if new != old {
        save(server, a, contact, new.as_ref()).await?;
    }
    Ok((old, new))
}

/// Whether the roster holds `limits.max_roster_items` contacts already.
async fn roster_full(server: &Server, a: Account<'_>) -> Result<bool, StanzaError> {
    let cap = server.config.limits.max_roster_items as u64;
    let held = server.store.map_count(a.uref(), ROSTER, cap).await.map_err(|e| {
        tracing::error!(error = %e, "counting roster items failed");
        StanzaError::internal_server_error()
    })?;
    if held >= cap {
        server.metrics.limit_hit(crate::metrics::Limit::RosterItems);
    }
    Ok(held >= cap)
}

async fn has_pending(server: &Server, a: Account<'_>, contact: &str) -> bool {
    matches!(server.store.map_get(a.uref(), PENDING, contact).await, Ok(Some(_)))
}

async fn take_pending(server: &Server, a: Account<'_>, contact: &str) -> bool {
    let had = has_pending(server, a, contact).await;
    if had {
        let _ = server.store.map_set(a.uref(), PENDING, contact, None).await;
    }
    had
}

/// Stores an inbound subscription request until the user answers it, unless the account
/// already has `limits.max_pending_subscriptions` requests waiting: any domain can mint
/// requesters, so those are refused instead. A contact asking again replaces its request.
async fn store_pending(server: &Server, a: Account<'_>, contact: &str, request: &Stanza) -> Result<(), StanzaError> {
    let internal = |e: jabberwock_storage::StorageError| {
        tracing::error!(error = %e, "storing a subscription request failed");
        StanzaError::internal_server_error()
    };
    let cap = server.config.limits.max_pending_subscriptions as u64;
    let _guard = server.lock_account(&a.bare()).await;
    if !has_pending(server, a, contact).await && server.store.map_count(a.uref(), PENDING, cap).await.map_err(internal)? >= cap {
        server.metrics.limit_hit(crate::metrics::Limit::PendingSubscriptions);
        return Err(StanzaError::resource_constraint().with_text("too many subscription requests are waiting"));
    }
    server.store.map_set(a.uref(), PENDING, contact, Some(&request.to_bytes())).await.map_err(internal)
}

/// Subscription requests still waiting for the user's answer (RFC 6121 §3.1.3).
pub async fn pending_requests(server: &Server, a: Account<'_>) -> Vec<Stanza> {
    let rows = server.store.map_all(a.uref(), PENDING).await.unwrap_or_default();
    rows.iter().filter_map(|(_, raw)| reader::parse_stanza(raw, &Limits::unlimited()).ok()).collect()
}

/// A subscription-related presence the user (`from`, a local bare JID) sends to `to`
/// (RFC 6121 §3, "outbound" processing at the user's server).
pub async fn outbound_subscription(server: &Arc<Server>, from: &BareJid, mut st: Stanza, to: &BareJid) {
    let Some(a) = Account::of(from) else { return };
    let contact = to.as_str();
    // As the client sent it, to answer with an error.
    let request = st.clone();
    // Subscription stanzas carry bare JIDs on both sides (RFC 6121 §3.1.1).
    st.set_attr("from", from.as_str());
    st.set_attr("to", contact);
    let kind = st.stanza_type().unwrap_or_default().to_owned();
    let result = match kind.as_str() {
        "subscribe" => update(server, a, contact, |i| {
            let mut i = i.unwrap_or_default();
            if !i.subscription.has_to() {
                i.ask = true;
            }
            Some(i)
        })
        .await
        .map(|_| true),
        "subscribed" => {
            // The request stays pending if the answer cannot be stored (a full roster).
            let pending = has_pending(server, a, contact).await;
            let answered = update(server, a, contact, |i| {
                let mut i = i.unwrap_or_default();
                if pending {
                    i.subscription = i.subscription.with_from(true);
                    i.approved = false;
                } else if !i.subscription.has_from() {
                    i.approved = true;
                }
                Some(i)
            })
            .await;
            if answered.is_ok() && pending {
                take_pending(server, a, contact).await;
            }
            answered.map(|(old, _)| pending && !old.is_some_and(|o| o.subscription.has_from()))
        }
        "unsubscribe" => update(server, a, contact, |i| {
            i.map(|mut i| {
                i.subscription = i.subscription.with_to(false);
                i.ask = false;
                i
            })
        })
        .await
        .map(|_| true),
        "unsubscribed" => {
            let pending = take_pending(server, a, contact).await;
            update(server, a, contact, |i| {
                i.map(|mut i| {
                    i.subscription = i.subscription.with_from(false);
                    i.approved = false;
                    i
                })
            })
            .await
            .map(|(old, _)| {
                let had_from = old.is_some_and(|o| o.subscription.has_from());
                pending || had_from
            })
        }
        _ => return,
    };
    match result {
        // A pre-approval stays local; everything else goes to the contact.
        Ok(true) => {
            crate::routing::route(server, st).await;
            match kind.as_str() {
                "subscribed" => super::presence::send_current_presence(server, from, contact).await,
                "unsubscribed" => super::presence::send_unavailable(server, from, contact).await,
                _ => {}
            }
        }
        Ok(false) => {}
        // Nothing went to the contact; the sending resource learns why.
        Err(e) => crate::routing::route(server, crate::stanzas::error_reply(&request, e)).await,
    }
}

/// A subscription-related presence arriving for the local account `to` (RFC 6121 §3,
/// "inbound" processing at the contact's server).
pub async fn inbound_subscription(server: &Arc<Server>, st: Stanza, to: &BareJid) {
    let Some(a) = Account::of(to) else { return };
    let Some(from) = st.from().and_then(|f| Jid::new(f).ok()).map(|j| j.to_bare()) else { return };
    let contact = from.as_str();
    if !crate::accounts::exists(server, a.host, a.user).await {
        if st.stanza_type() == Some("subscribe") {
            // RFC 6121 §3.1.3: refuse requests to accounts that do not exist.
            reply(server, to, &from, "unsubscribed").await;
        }
        return;
    }
    match st.stanza_type().unwrap_or_default() {
        "subscribe" => {
            let current = get(server, a, contact).await;
            if current.as_ref().is_some_and(|i| i.subscription.has_from()) {
                reply(server, to, &from, "subscribed").await;
                return;
            }
            if current.as_ref().is_some_and(|i| i.approved) {
                let approved = update(server, a, contact, |i| {
                    i.map(|mut i| {
                        i.subscription = i.subscription.with_from(true);
                        i.approved = false;
                        i
                    })
                })
                .await;
                if approved.is_ok() {
                    reply(server, to, &from, "subscribed").await;
                    super::presence::send_current_presence(server, to, contact).await;
                }
                return;
            }
            if let Err(e) = store_pending(server, a, contact, &st).await {
                crate::routing::route(server, crate::stanzas::error_reply(&st, e)).await;
                return;
            }
            deliver_to_available(server, &a.bare(), &st);
        }
        "subscribed" => {
            let changed = update(server, a, contact, |i| {
                i.map(|mut i| {
                    if i.ask {
                        i.ask = false;
                        i.subscription = i.subscription.with_to(true);
                    }
                    i
                })
            })
            .await;
            if matches!(changed, Ok((Some(old), _)) if old.ask) {
                deliver_to_available(server, &a.bare(), &st);
            }
        }
        "unsubscribe" => {
            let pending = take_pending(server, a, contact).await;
            let changed = update(server, a, contact, |i| {
                i.map(|mut i| {
                    i.subscription = i.subscription.with_from(false);
                    i
                })
            })
            .await;
            if pending || matches!(changed, Ok((Some(old), _)) if old.subscription.has_from()) {
                deliver_to_available(server, &a.bare(), &st);
            }
        }
        "unsubscribed" => {
            let changed = update(server, a, contact, |i| {
                i.map(|mut i| {
                    i.subscription = i.subscription.with_to(false);
                    i.ask = false;
                    i
                })
            })
            .await;
            if matches!(changed, Ok((Some(old), _)) if old.ask || old.subscription.has_to()) {
                deliver_to_available(server, &a.bare(), &st);
            }
        }
        _ => {}
    }
}

/// A presence of `kind` from the account `from` to `to`, sent by the server on the
/// account's behalf.
async fn reply(server: &Arc<Server>, from: &BareJid, to: &BareJid, kind: &str) {
    let el = Element::new("presence", ns::CLIENT).with_attr("from", from.as_str()).with_attr("to", to.as_str()).with_attr("type", kind);
    crate::routing::route(server, Stanza::from_element(&el)).await;
}

fn deliver_to_available(server: &Server, bare: &str, st: &Stanza) {
    for r in server.sessions.resources(bare).into_iter().filter(|r| r.available) {
        let _ = r.handle.deliver(st.clone());
    }
}

/// `jabber:iq:roster`: get and set of the account's own roster.
pub struct RosterModule;

impl Module for RosterModule {
    fn register(self: Arc<Self>, host: &mut Host) {
        host.iqs(&[IqRoute { target: IqTarget::Account, name: "query", ns: ns::ROSTER }], self);
    }
}

#[async_trait]
impl IqHandler for RosterModule {
    async fn handle_iq(&self, cx: &IqCtx<'_>, payload: &Element) -> IqResult {
        let to_bare = cx.to.to_bare();
        if cx.from.to_bare() != to_bare {
            return Err(StanzaError::forbidden());
        }
        let a = Account::of(&to_bare).ok_or_else(StanzaError::bad_request)?;
        if !cx.set {
            if let Some(res) = cx.from.resource() {
                if let Some(h) = cx.server.sessions.get(to_bare.as_str(), res.as_str()) {
                    cx.server.sessions.set_interested(to_bare.as_str(), res.as_str(), h.conn).await;
                }
            }
            let (items, ver) = load(cx.server, a).await;
            let ver = ver.to_string();
            if payload.attr("ver") == Some(ver.as_str()) {
                return Ok(None);
            }
            let mut q = Element::new("query", ns::ROSTER).with_attr("ver", ver);
            for (jid, item) in &items {
                q.push(item.to_element(jid));
            }
            return Ok(Some(q));
        }
        roster_set(cx.server, a, payload).await.map(|()| None)
    }
}

async fn roster_set(server: &Arc<Server>, a: Account<'_>, query: &Element) -> Result<(), StanzaError> {
    let mut items = query.children();
    let (Some(item), None) = (items.next(), items.next()) else {
        return Err(StanzaError::bad_request().with_text("a roster set carries exactly one item"));
    };
    if !item.is("item", ns::ROSTER) {
        return Err(StanzaError::bad_request());
    }
    let contact = item
        .attr("jid")
        .ok_or_else(|| StanzaError::bad_request().with_text("item without jid"))
        .and_then(|j| BareJid::new(j).map_err(|_| StanzaError::jid_malformed()))?;
    if item.attr("subscription") == Some("remove") {
        return remove(server, a, &contact).await;
    }
    let name = item.attr("name").filter(|n| !n.is_empty()).map(str::to_owned);
    let mut groups = Vec::new();
    for g in item.children().filter(|c| c.is("group", ns::ROSTER)) {
        let g = g.text();
        if g.is_empty() || g.len() > MAX_TEXT {
            return Err(StanzaError::not_acceptable().with_text("empty or oversized group name"));
        }
        if groups.contains(&g) {
            return Err(StanzaError::bad_request().with_text("duplicate group"));
        }
        groups.push(g);
    }
    if name.as_ref().is_some_and(|n| n.len() > MAX_TEXT) {
        return Err(StanzaError::not_acceptable().with_text("name too long"));
    }
    update(server, a, contact.as_str(), |old| {
        let mut i = old.unwrap_or_default();
        i.name = name;
        i.groups = groups;
        Some(i)
    })
    .await
    .map(|_| ())
}

/// RFC 6121 §2.5.2: removing an item cancels both subscription directions.
async fn remove(server: &Arc<Server>, a: Account<'_>, contact: &BareJid) -> Result<(), StanzaError> {
    let pending = take_pending(server, a, contact.as_str()).await;
    let (old, _) = update(server, a, contact.as_str(), |_| None).await?;
    let Some(old) = old else {
        return if pending { Ok(()) } else { Err(StanzaError::item_not_found()) };
    };
    let own = BareJid::new(&a.bare()).map_err(|_| StanzaError::internal_server_error())?;
    let presence = |kind: &str| {
        Stanza::from_element(
            &Element::new("presence", ns::CLIENT).with_attr("from", own.as_str()).with_attr("to", contact.as_str()).with_attr("type", kind),
        )
    };
    if old.subscription.has_to() || old.ask {
        crate::routing::route(server, presence("unsubscribe")).await;
    }
    if old.subscription.has_from() || pending {
        crate::routing::route(server, presence("unsubscribed")).await;
        super::presence::send_unavailable(server, &own, contact.as_str()).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_flags() {
        assert_eq!(Subscription::None.with_to(true), Subscription::To);
        assert_eq!(Subscription::To.with_from(true), Subscription::Both);
        assert_eq!(Subscription::Both.with_to(false), Subscription::From);
        assert_eq!(Subscription::From.with_from(false), Subscription::None);
    }

    #[test]
    fn item_element() {
        let i = Item { name: Some("Al".into()), subscription: Subscription::To, ask: true, approved: false, groups: vec!["G".into()] };
        assert_eq!(
            i.to_element("a@b").to_xml_string(),
            "<item xmlns='jabber:iq:roster' jid='a@b' name='Al' subscription='to' ask='subscribe'><group>G</group></item>"
        );
    }
}
