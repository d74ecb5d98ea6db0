//! XEP-0357 push notifications. A client registers its app server (a JID and a node,
//! with publish options such as a secret); when a message the account should see
//! arrives while no client can see it (it goes to offline storage, reaches a session whose
//! connection dropped and that waits for XEP-0198 resumption, or one whose client said it
//! is inactive, XEP-0352, as iOS apps do before they are suspended), the server publishes
//! a notification to every registration: a XEP-0357 summary with the message count and,
//! only if the operator allows it, the sender and the body.
//!
//! A groupchat message counts only when it mentions the occupant's nick.
//!
//! Notifications are coalesced: at most one per registration every
//! `push.min_interval_secs` (the woken app fetches everything anyway). An app server that
//! answers with an error other than `wait` no longer wants the registration (§7), which
//! is then removed. Registrations are stored per account (map `push`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jabberwock_proto::{ns, Element, Stanza, StanzaError, StanzaKind};
use jabberwock_storage::UserRef;
use jid::{BareJid, FullJid, Jid};
use serde::{Deserialize, Serialize};

use super::{AccountHooks, Host, IqCtx, IqHandler, IqResult, IqRoute, IqTarget, MessageHooks, Module, SessionHooks};
use crate::cache::{AccountCache, Bounds, Lru, Weigh};
use crate::config::{LimitsConfig, PushConfig};
use crate::server::Server;
use crate::stanzas::random_id;

const STORE: &str = "push";
const SUMMARY: &str = "urn:xmpp:push:summary";
/// Bytes of publish options one registration may keep (a secret and an endpoint take a
/// few hundred).
const MAX_OPTIONS_BYTES: usize = 2048;
/// Registrations whose last notification time is remembered; older ones may be notified
/// again early, which only costs a notification.
const RECENT: Bounds = Bounds { entries: 100_000, bytes: 16 << 20 };

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Registration {
    jid: String,
    node: String,
    /// The publish-options form's fields (a secret, typically), sent with each notification.
    options: Vec<(String, String)>,
}

/// An account's registrations, by storage key.
#[derive(Clone, Default)]
struct Registrations(Arc<Vec<(String, Registration)>>);

impl Weigh for Registrations {
    fn weigh(&self) -> usize {
        let options = |r: &Registration| r.options.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        self.0.iter().map(|(k, r)| k.len() + r.jid.len() + r.node.len() + options(r)).sum()
    }
}

struct LastSent(Instant);

impl Weigh for LastSent {
    fn weigh(&self) -> usize {
        0
    }
}

pub struct Push {
    config: PushConfig,
    /// Each account's registrations: every message an inactive client gets looks them up.
    registered: AccountCache<Registrations>,
    /// When each registration (`account\njid\nnode`) was last notified.
    recent: Mutex<Lru<LastSent>>,
}

impl Push {
    pub fn new(config: &PushConfig, limits: &LimitsConfig) -> Self {
        Push { config: config.clone(), registered: AccountCache::new(limits.account_cache()), recent: Mutex::new(Lru::new(RECENT)) }
    }

    async fn registrations(&self, server: &Server, account: &BareJid) -> Registrations {
        self.registered
            .get_or_load(account.as_str(), || async {
                let u = UserRef { host: account.domain().as_str(), user: account.node().map_or("", |n| n.as_str()) };
                let stored = server.store.map_all(u, STORE).await.unwrap_or_default();
                let parsed = stored.into_iter().filter_map(|(k, raw)| Some((k, serde_json::from_slice(&raw).ok()?))).collect();
                Registrations(Arc::new(parsed))
            })
            .await
    }
}

impl Module for Push {
    fn register(self: Arc<Self>, host: &mut Host) {
        if !self.config.enabled {
            return;
        }
        host.account_features(&[ns::PUSH]);
        host.iqs(
            &[
                IqRoute { target: IqTarget::Account, name: "enable", ns: ns::PUSH },
                IqRoute { target: IqTarget::Account, name: "disable", ns: ns::PUSH },
            ],
            self.clone(),
        );
        host.message_hooks(self.clone());
        host.account_hooks(self.clone());
        host.session_hooks(self);
    }
}

impl AccountHooks for Push {
    fn deleted(&self, account: &BareJid) {
        self.registered.forget(account.as_str());
    }

    fn changed_elsewhere(&self, account: &BareJid) {
        self.registered.forget(account.as_str());
    }
}

fn key(jid: &str, node: &str) -> String {
    format!("{jid}\n{node}")
}

#[async_trait]
impl IqHandler for Push {
    async fn handle_iq(&self, cx: &IqCtx<'_>, payload: &Element) -> IqResult {
        let account = cx.to.to_bare();
        if cx.from.to_bare() != account || !cx.set {
            return Err(if cx.set { StanzaError::forbidden() } else { StanzaError::bad_request() });
        }
        let u = UserRef { host: account.domain().as_str(), user: account.node().map_or("", |n| n.as_str()) };
        let app = payload.attr("jid").and_then(|j| Jid::new(j).ok()).ok_or_else(|| StanzaError::bad_request().with_text("jid must be the app server's JID"))?;
        let store_error = |e: jabberwock_storage::StorageError| {
            tracing::error!(error = %e, "push registrations could not be stored");
            StanzaError::internal_server_error()
        };
        let existing = cx.server.store.map_all(u, STORE).await.map_err(store_error)?;
        if payload.name() == "disable" {
            // Without a node, every registration with that app server goes.
            for (k, raw) in existing {
                let Ok(r) = serde_json::from_slice::<Registration>(&raw) else { continue };
                if r.jid == app.as_str() && payload.attr("node").is_none_or(|n| n == r.node) {
                    cx.server.store.map_set(u, STORE, &k, None).await.map_err(store_error)?;
                }
            }
            self.registered.forget(account.as_str());
            crate::cluster::account_changed(cx.server, &account).await;
            return Ok(None);
        }
        let node = payload.attr("node").filter(|n| !n.is_empty()).ok_or_else(|| StanzaError::bad_request().with_text("node is required"))?;
        let k = key(app.as_str(), node);
        if existing.len() >= self.config.max_registrations && !existing.iter().any(|(e, _)| *e == k) {
            return Err(StanzaError::resource_constraint().with_text("too many push registrations"));
        }
        let options: Vec<(String, String)> = payload
            .child("x", ns::DATA_FORMS)
            .map(|form| {
                form.children()
                    .filter(|f| f.name() == "field" && f.attr("var").is_some_and(|v| v != "FORM_TYPE"))
                    .filter_map(|f| Some((f.attr("var")?.to_owned(), f.child_text("value", ns::DATA_FORMS).unwrap_or_default())))
                    .collect()
            })
            .unwrap_or_default();
        if node.len() + options.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() > MAX_OPTIONS_BYTES {
            return Err(StanzaError::not_acceptable().with_text("the node and publish options are too large"));
        }
        let r = Registration { jid: app.to_string(), node: node.to_owned(), options };
        let raw = serde_json::to_vec(&r).expect("serializes");
        cx.server.store.map_set(u, STORE, &k, Some(&raw)).await.map_err(store_error)?;
        self.registered.forget(account.as_str());
        crate::cluster::account_changed(cx.server, &account).await;
        tracing::info!(account = %account, app = %r.jid, "push notifications enabled");
        Ok(None)
    }
}

#[async_trait]
impl MessageHooks for Push {
    /// Never keeps the message itself: the offline module after it does.
    async fn store_offline(&self, server: &Arc<Server>, to: &BareJid, st: &Stanza) -> Option<Result<(), StanzaError>> {
        if let Some(message) = worth_a_notification(st) {
            self.notify(server, to, &message).await;
        }
        None
    }
}

#[async_trait]
impl SessionHooks for Push {
    async fn unseen(&self, server: &Arc<Server>, jid: &FullJid, st: &Stanza) {
        let message = match worth_a_notification(st) {
            Some(m) => Some(m),
            None if st.stanza_type() == Some("groupchat") => mentioning(server, jid, st).await,
            None => None,
        };
        if let Some(message) = message {
            self.notify(server, &jid.to_bare(), &message).await;
        }
    }
}

/// Messages someone should read: with a body or an end-to-end encrypted payload, not
/// chat states, receipts or errors.
fn worth_a_notification(st: &Stanza) -> Option<Element> {
    if st.kind() != StanzaKind::Message || matches!(st.stanza_type(), Some("error" | "groupchat" | "headline")) {
        return None;
    }
    let el = st.to_element().ok()?;
    let readable = el.child("body", ns::CLIENT).is_some()
        || el.children().any(|c| c.name() == "encrypted" && (c.ns() == "eu.siacs.conversations.axolotl" || c.ns() == "urn:xmpp:omemo:2"));
    readable.then_some(el)
}

/// A groupchat message whose body names the nick `jid` has in that room.
async fn mentioning(server: &Server, jid: &FullJid, st: &Stanza) -> Option<Element> {
    let el = st.to_element().ok()?;
    let body = el.child_text("body", ns::CLIENT)?.to_lowercase();
    let room = Jid::new(st.from()?).ok()?.to_bare();
    let nick = server.modules.get::<super::muc::Muc>()?.nick_of(&room, &Jid::from(jid.clone())).await?;
    (!nick.is_empty() && body.contains(&nick.to_lowercase())).then_some(el)
}

impl Push {
    async fn notify(&self, server: &Arc<Server>, account: &BareJid, message: &Element) {
        let registrations = self.registrations(server, account).await;
        for (k, r) in registrations.0.iter() {
            if !self.due(&format!("{account}\n{k}")) {
                continue;
            }
            let publish = self.publish(account, r, message);
            let app = r.jid.clone();
            let (server, account, config_key) = (server.clone(), account.clone(), k.clone());
            // The app server may be slow or far: its answer is awaited off the message's path.
            tokio::spawn(async move {
                let reply = server.iq_requests.request(&server, publish).await;
                let refused = reply.as_ref().is_some_and(|r| r.stanza_type() == Some("error"))
                    && reply.as_ref().and_then(|r| r.to_element().ok()).and_then(|e| e.child("error", ns::CLIENT).and_then(|e| e.attr("type").map(str::to_owned))).as_deref() != Some("wait");
                if refused {
                    let u = UserRef { host: account.domain().as_str(), user: account.node().map_or("", |n| n.as_str()) };
                    let _ = server.store.map_set(u, STORE, &config_key, None).await;
                    if let Some(push) = server.modules.get::<Push>() {
                        push.registered.forget(account.as_str());
                    }
                    crate::cluster::account_changed(&server, &account).await;
                    tracing::info!(%account, %app, "the app server refused a notification; push disabled for it");
                }
            });
        }
    }

    /// Whether a registration may be notified now (and, if so, it is counted as notified).
    fn due(&self, registration: &str) -> bool {
        let mut recent = self.recent.lock().expect("push times");
        let interval = Duration::from_secs(self.config.min_interval_secs);
        if recent.get(registration).is_some_and(|t| t.0.elapsed() < interval) {
            return false;
        }
        recent.insert(registration, LastSent(Instant::now()));
        true
    }

    /// XEP-0357 §7: the notification, published to the app server's node.
    fn publish(&self, account: &BareJid, r: &Registration, message: &Element) -> Stanza {
        let field = |var: &str, value: &str| {
            Element::new("field", ns::DATA_FORMS).with_attr("var", var).with_child(Element::new("value", ns::DATA_FORMS).with_text(value))
        };
        let mut summary = Element::new("x", ns::DATA_FORMS).with_attr("type", "submit").with_child(field("FORM_TYPE", SUMMARY)).with_child(field("message-count", "1"));
        if self.config.include_sender {
            if let Some(from) = message.attr("from").and_then(|f| Jid::new(f).ok()) {
                summary.push(field("last-message-sender", from.to_bare().as_str()));
            }
        }
        if self.config.include_body {
            if let Some(body) = message.child_text("body", ns::CLIENT) {
                summary.push(field("last-message-body", &body));
            }
        }
        let mut pubsub = Element::new("pubsub", ns::PUBSUB).with_child(
            Element::new("publish", ns::PUBSUB)
                .with_attr("node", r.node.as_str())
                .with_child(Element::new("item", ns::PUBSUB).with_child(Element::new("notification", ns::PUSH).with_child(summary))),
        );
        if !r.options.is_empty() {
            let mut form = Element::new("x", ns::DATA_FORMS).with_attr("type", "submit").with_child(field("FORM_TYPE", ns::PUBSUB_PUBLISH_OPTIONS).with_attr("type", "hidden"));
            for (var, value) in &r.options {
                form.push(field(var, value));
            }
            pubsub.push(Element::new("publish-options", ns::PUBSUB).with_child(form));
        }
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_attr("id", random_id())
            .with_attr("from", account.as_str())
            .with_attr("to", r.jid.as_str())
            .with_child(pubsub);
        Stanza::from_element(&iq)
    }
}
