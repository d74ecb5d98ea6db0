//! XEP-0163 personal eventing (PEP) on XEP-0060 publish-subscribe, with XEP-0223
//! publish-options: every account is a pubsub service with its own nodes (avatars,
//! OMEMO device lists and bundles, bookmarks, …).
//!
//! Nodes are created on first publish with the publish-options as their configuration; a
//! later publish whose options disagree fails with `precondition-not-met`. Notifications
//! go to the owner's resources and to the contacts the access model admits, on each
//! resource whose XEP-0115 capabilities include `<node>+notify`; a resource that becomes
//! available gets the last item of every node it is interested in.
//!
//! What one account stores is capped (`pep.*`): nodes, items per node (the oldest go)
//! and item size. Neither publishing nor reading loads a whole node: a publish trims the
//! node in storage, and `items` answers a page at a time.

use std::sync::Arc;

use async_trait::async_trait;
use jabberwock_proto::{ns, reader, Element, Limits, Stanza, StanzaError, StanzaErrorCondition};
use jabberwock_storage::{ArchiveDelete, ArchiveItem, ArchiveQuery, NewArchiveItem, StorageError, UserRef};
use jid::{BareJid, Jid};
use serde::{Deserialize, Serialize};

use super::caps::Caps;
use super::{Available, Host, IqCtx, IqHandler, IqResult, IqRoute, IqTarget, Module, PresenceHooks};
use crate::im::roster::{self, Account};
use crate::server::Server;
use crate::stanzas::{now_us, random_id};

const NODES: &str = "pep_nodes";
/// Items in one answer to an `items` request: the newest, and then older pages through
/// XEP-0059 result set management.
const PAGE: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Access {
    Open,
    Presence,
    Roster,
    Whitelist,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct NodeConfig {
    access_model: Access,
    max_items: u32,
    persist_items: bool,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig { access_model: Access::Presence, max_items: 1, persist_items: true }
    }
}

fn items_store(node: &str) -> String {
    format!("pep/{node}")
}

fn pubsub_error(condition: StanzaErrorCondition, app: &str) -> StanzaError {
    StanzaError::new(condition).with_app_condition(Element::new(app, ns::PUBSUB_ERRORS))
}

/// The options of a XEP-0223 publish-options form, applied over `base`; `max_items` is
/// the most a node may keep (`pep.max_items`).
fn apply_options(base: &NodeConfig, form: Option<&Element>, max_items: u32) -> Result<NodeConfig, StanzaError> {
    let mut c = base.clone();
    let Some(form) = form else { return Ok(c) };
    for field in form.children().filter(|f| f.is("field", ns::DATA_FORMS)) {
        let value = field.child_text("value", ns::DATA_FORMS).unwrap_or_default();
        let invalid = || StanzaError::bad_request().with_text(format!("bad value for {}", field.attr("var").unwrap_or_default()));
        match field.attr("var").unwrap_or_default() {
            "pubsub#access_model" => {
                c.access_model = match value.as_str() {
                    "open" => Access::Open,
                    "presence" => Access::Presence,
                    "roster" => Access::Roster,
                    "whitelist" => Access::Whitelist,
                    _ => return Err(invalid()),
                }
            }
            "pubsub#max_items" => {
                c.max_items = if value == "max" { max_items } else { value.parse::<u32>().map_err(|_| invalid())?.clamp(1, max_items) }
            }
            "pubsub#persist_items" => c.persist_items = matches!(value.as_str(), "1" | "true"),
            _ => {}
        }
    }
    Ok(c)
}

async fn node_config(server: &Server, a: Account<'_>, node: &str) -> Option<NodeConfig> {
    let raw = server.store.map_get(UserRef { host: a.host, user: a.user }, NODES, node).await.ok()??;
    let mut config: NodeConfig = serde_json::from_slice(&raw).ok()?;
    // Nodes made under a higher `pep.max_items` keep no more than the current one.
    config.max_items = config.max_items.min(server.config.pep.max_items);
    Some(config)
}

/// Creates the node, unless the account has `pep.max_nodes` already.
async fn create_node(server: &Server, a: Account<'_>, node: &str, config: &NodeConfig) -> Result<(), StanzaError> {
    let u = UserRef { host: a.host, user: a.user };
    let cap = server.config.pep.max_nodes as u64;
    // Counting and creating under the account's lock: concurrent publishes cannot both
    // take the last place.
    let _guard = server.lock_account(&a.bare()).await;
    if server.store.map_count(u, NODES, cap).await.map_err(internal)? >= cap {
        // XEP-0060 §7.1.3 lists no condition for a node quota; like the server's other
        // per-account caps, RFC 6120's resource-constraint, and nothing is stored.
        return Err(StanzaError::resource_constraint().with_text("too many pubsub nodes"));
    }
    let json = serde_json::to_vec(config).expect("serializes");
    server.store.map_set(u, NODES, node, Some(&json)).await.map_err(internal)
}

/// Whether `who` may see the items of `owner`'s node.
async fn may_read(server: &Server, owner: &BareJid, config: &NodeConfig, who: &BareJid) -> bool {
    if who == owner {
        return true;
    }
    let Some(a) = Account::of(owner) else { return false };
    match config.access_model {
        Access::Open => true,
        Access::Whitelist => false,
        Access::Presence => roster::get(server, a, who.as_str()).await.is_some_and(|i| i.subscription.has_from()),
        Access::Roster => roster::get(server, a, who.as_str()).await.is_some(),
    }
}

fn event_message(owner: &BareJid, to: &str, items: Element) -> Stanza {
    let el = Element::new("message", ns::CLIENT)
        .with_attr("from", owner.as_str())
        .with_attr("to", to)
        .with_attr("type", "headline")
        .with_attr("id", random_id())
        .with_child(Element::new("event", ns::PUBSUB_EVENT).with_child(items));
    Stanza::from_element(&el)
}

fn wants(server: &Server, full_jid: &str, node: &str) -> bool {
    let caps = server.modules.get::<Caps>().and_then(|c| c.features_of(full_jid));
    caps.is_some_and(|f| f.iter().any(|v| v.strip_suffix("+notify") == Some(node)))
}

/// Sends an event to every interested resource the node's access model admits.
async fn notify(server: &Server, owner: &BareJid, node: &str, config: &NodeConfig, items: Element) {
    let Some(a) = Account::of(owner) else { return };
    let mut audience = vec![owner.clone()];
    let (contacts, _) = roster::load(server, a).await;
    for (jid, _) in contacts {
        if let Ok(contact) = BareJid::new(&jid) {
            if server.config.served_domain(contact.domain().as_str()).is_some() && may_read(server, owner, config, &contact).await {
                audience.push(contact);
            }
        }
    }
    for who in audience {
        for r in server.sessions.resources(who.as_str()).into_iter().filter(|r| r.available) {
            let full = format!("{who}/{}", r.resource);
            if wants(server, &full, node) {
                let _ = r.handle.deliver(event_message(owner, &full, items.clone()));
            }
        }
    }
}

pub struct Pep;

impl Module for Pep {
    fn register(self: Arc<Self>, host: &mut Host) {
        host.features(&[ns::PUBSUB, "http://jabber.org/protocol/pubsub#publish", ns::PUBSUB_PUBLISH_OPTIONS, "http://jabber.org/protocol/pubsub#auto-create"]);
        host.account_features(&[
            ns::PUBSUB,
            "http://jabber.org/protocol/pubsub#publish",
            ns::PUBSUB_PUBLISH_OPTIONS,
            "http://jabber.org/protocol/pubsub#auto-create",
            "http://jabber.org/protocol/pubsub#retrieve-items",
            "http://jabber.org/protocol/pubsub#retract-items",
            "http://jabber.org/protocol/pubsub#last-published",
            "http://jabber.org/protocol/pubsub#access-presence",
            "http://jabber.org/protocol/pubsub#access-open",
            "http://jabber.org/protocol/pubsub#access-whitelist",
        ]);
        host.presence_hooks(self.clone());
        host.iqs(&[
            IqRoute { target: IqTarget::Account, name: "pubsub", ns: ns::PUBSUB },
            IqRoute { target: IqTarget::Account, name: "pubsub", ns: ns::PUBSUB_OWNER },
        ], self);
    }
}

#[async_trait]
impl IqHandler for Pep {
    async fn handle_iq(&self, cx: &IqCtx<'_>, payload: &Element) -> IqResult {
        let owner = cx.to.to_bare();
        let requester = cx.from.to_bare();
        let a = Account::of(&owner).ok_or_else(StanzaError::bad_request)?;
        let action = payload.first_child().ok_or_else(StanzaError::bad_request)?;
        let node = action.attr("node").filter(|n| !n.is_empty()).ok_or_else(|| pubsub_error(StanzaErrorCondition::BadRequest, "nodeid-required"))?;
        let is_owner = requester == owner;
        match (payload.ns(), action.name(), cx.set) {
            (ns::PUBSUB, "publish", true) if is_owner => publish(cx.server, a, &owner, node, action, payload).await,
            (ns::PUBSUB, "items", false) => items(cx.server, a, &owner, &requester, node, action, payload.child("set", ns::RSM)).await,
            (ns::PUBSUB, "retract", true) if is_owner => retract(cx.server, a, &owner, node, action).await,
            (ns::PUBSUB_OWNER, "delete", true) if is_owner => delete(cx.server, a, node).await,
            (_, "publish" | "retract" | "delete", true) => Err(StanzaError::forbidden()),
            _ => Err(StanzaError::feature_not_implemented()),
        }
    }
}

async fn publish(server: &Server, a: Account<'_>, owner: &BareJid, node: &str, action: &Element, pubsub: &Element) -> IqResult {
    let item = action.child("item", ns::PUBSUB).ok_or_else(|| pubsub_error(StanzaErrorCondition::BadRequest, "item-required"))?;
    let form = pubsub.child("publish-options", ns::PUBSUB).and_then(|p| p.child("x", ns::DATA_FORMS));
    let u = UserRef { host: a.host, user: a.user };
    let id = item.attr("id").map(str::to_owned).unwrap_or_else(random_id);
    let mut stored = item.clone();
    stored.set_attr("id", id.clone());
    let payload = stored.to_bytes();
    if payload.len() > server.config.pep.max_item_bytes {
        return Err(pubsub_error(StanzaErrorCondition::NotAcceptable, "payload-too-big"));
    }
    let max_items = server.config.pep.max_items;
    let config = match node_config(server, a, node).await {
        // XEP-0223: the options are preconditions on an existing node.
        Some(existing) => {
            if apply_options(&existing, form, max_items)? != existing {
                return Err(pubsub_error(StanzaErrorCondition::Conflict, "precondition-not-met"));
            }
            existing
        }
        None => {
            let config = apply_options(&NodeConfig::default(), form, max_items)?;
            create_node(server, a, node, &config).await?;
            config
        }
    };
    let store = items_store(node);
    server.store.archive_delete(u, &store, ArchiveDelete::Ids(&[id.as_str()])).await.map_err(internal)?;
    let stamp_us = now_us();
    server.store.archive_append(u, &store, NewArchiveItem { id: &id, stamp_us, with: "", payload: &payload }, None).await.map_err(internal)?;
    // Keep the newest max_items (only the last one when items are not persistent),
    // without reading the node.
    let keep = if config.persist_items { config.max_items } else { 1 };
    server.store.archive_delete(u, &store, ArchiveDelete::AllButNewest(keep.into())).await.map_err(internal)?;
    if node == ns::AVATAR_METADATA {
        if let Some(metadata) = stored.child("metadata", ns::AVATAR_METADATA) {
            let data_id = metadata.child("info", ns::AVATAR_METADATA).and_then(|i| i.attr("id")).unwrap_or_default();
            let data = avatar_data(server, a, data_id).await;
            crate::modules::vcard::avatar_published(server, owner, metadata, data).await;
        }
    }
    let event_item = rename_ns(stored, ns::PUBSUB_EVENT);
    notify(server, owner, node, &config, Element::new("items", ns::PUBSUB_EVENT).with_attr("node", node).with_child(event_item)).await;
    Ok(Some(
        Element::new("pubsub", ns::PUBSUB).with_child(
            Element::new("publish", ns::PUBSUB).with_attr("node", node).with_child(Element::new("item", ns::PUBSUB).with_attr("id", id)),
        ),
    ))
}

/// Publishes one item as the owner would, for conversions the server does on its behalf,
/// with XEP-0223 publish-options such as `("pubsub#access_model", "whitelist")`.
pub async fn publish_item(server: &Server, owner: &BareJid, node: &str, id: &str, payload: Element, options: &[(&str, &str)]) -> Result<(), StanzaError> {
    let a = Account::of(owner).ok_or_else(StanzaError::bad_request)?;
    let action = Element::new("publish", ns::PUBSUB)
        .with_attr("node", node)
        .with_child(Element::new("item", ns::PUBSUB).with_attr("id", id).with_child(payload));
    let mut pubsub = Element::new("pubsub", ns::PUBSUB).with_child(action.clone());
    if !options.is_empty() {
        let field = |var: &str, value: &str| {
            Element::new("field", ns::DATA_FORMS).with_attr("var", var).with_child(Element::new("value", ns::DATA_FORMS).with_text(value))
        };
        let mut form = Element::new("x", ns::DATA_FORMS).with_attr("type", "submit").with_child(field("FORM_TYPE", ns::PUBSUB_PUBLISH_OPTIONS));
        for (var, value) in options {
            form.push(field(var, value));
        }
        pubsub.push(Element::new("publish-options", ns::PUBSUB).with_child(form));
    }
    publish(server, a, owner, node, &action, &pubsub).await.map(|_| ())
}

/// Retracts items as the owner would, notifying subscribers.
pub async fn retract_items(server: &Server, owner: &BareJid, node: &str, ids: &[String]) -> Result<(), StanzaError> {
    let a = Account::of(owner).ok_or_else(StanzaError::bad_request)?;
    let mut action = Element::new("retract", ns::PUBSUB).with_attr("node", node).with_attr("notify", "true");
    for id in ids {
        action.push(Element::new("item", ns::PUBSUB).with_attr("id", id.as_str()));
    }
    retract(server, a, owner, node, &action).await.map(|_| ())
}

/// Every item of the owner's node, oldest first, as `<item/>` elements (empty if there
/// is no such node).
pub async fn all_items(server: &Server, owner: &BareJid, node: &str) -> Result<Vec<Element>, StanzaError> {
    let a = Account::of(owner).ok_or_else(StanzaError::bad_request)?;
    let page = server.store.archive_query(UserRef { host: a.host, user: a.user }, &items_store(node), &ArchiveQuery::default()).await.map_err(internal)?;
    Ok(page.items.iter().filter_map(|i| reader::parse_element(&i.payload, &Limits::unlimited()).ok()).collect())
}

/// The base64 image of the avatar data item `id`, if stored.
async fn avatar_data(server: &Server, a: Account<'_>, id: &str) -> Option<String> {
    let u = UserRef { host: a.host, user: a.user };
    let item = server.store.archive_get(u, &items_store(ns::AVATAR_DATA), id).await.ok()??;
    let el = reader::parse_element(&item.payload, &Limits::unlimited()).ok()?;
    el.child_text("data", ns::AVATAR_DATA)
}

async fn items(server: &Server, a: Account<'_>, owner: &BareJid, requester: &BareJid, node: &str, action: &Element, pubsub_set: Option<&Element>) -> IqResult {
    let config = node_config(server, a, node).await.ok_or_else(StanzaError::item_not_found)?;
    if !may_read(server, owner, &config, requester).await {
        return Err(match config.access_model {
            Access::Presence => pubsub_error(StanzaErrorCondition::NotAuthorized, "presence-subscription-required"),
            Access::Roster => pubsub_error(StanzaErrorCondition::NotAuthorized, "not-in-roster-group"),
            _ => pubsub_error(StanzaErrorCondition::NotAllowed, "closed-node"),
        });
    }
    let u = UserRef { host: a.host, user: a.user };
    let store = items_store(node);
    let wanted: Vec<&str> = action.children().filter(|i| i.is("item", ns::PUBSUB)).filter_map(|i| i.attr("id")).collect();
    let mut out = Element::new("items", ns::PUBSUB).with_attr("node", node);
    let mut rsm = None;
    let stored = if wanted.is_empty() {
        let page = items_page(server, u, &store, action, pubsub_set).await?;
        rsm = page.1;
        page.0
    } else {
        // XEP-0060 §6.5.8: the items asked for by id, however old.
        let mut found = Vec::new();
        for id in wanted.iter().take(PAGE) {
            found.extend(server.store.archive_get(u, &store, id).await.map_err(internal)?);
        }
        found
    };
    for item in &stored {
        if let Ok(el) = reader::parse_element(&item.payload, &Limits::unlimited()) {
            // Stored in the event namespace or the pubsub one: answer in pubsub's.
            out.push(rename_ns(el, ns::PUBSUB));
        }
    }
    let mut answer = Element::new("pubsub", ns::PUBSUB).with_child(out);
    if let Some(set) = rsm {
        answer.push(set);
    }
    Ok(Some(answer))
}

/// One page of a node's items, newest first: the newest `max_items` (XEP-0060 §6.5.7),
/// or a XEP-0059 page (`<max/>`, and `<after/>` the last item of the previous page to go
/// further back), never more than [`PAGE`]. A page that leaves older items out comes
/// with a result set (`<set/>`) naming its first and last items.
async fn items_page(server: &Server, u: UserRef<'_>, store: &str, action: &Element, set: Option<&Element>) -> Result<(Vec<ArchiveItem>, Option<Element>), StanzaError> {
    let number = |text: &str| text.trim().parse::<usize>().map_err(|_| StanzaError::bad_request());
    let max_items = action.attr("max_items").map(number).transpose()?;
    let rsm_max = set.and_then(|s| s.child_text("max", ns::RSM)).map(|m| number(&m)).transpose()?;
    let after = set.and_then(|s| s.child_text("after", ns::RSM));
    let limit = max_items.or(rsm_max).unwrap_or(PAGE).min(PAGE);
    // Newest first: the page after an item holds the items stored before it.
    let q = ArchiveQuery { limit: Some(limit), last_page: true, before_id: after.as_deref(), ..Default::default() };
    let page = match server.store.archive_query(u, store, &q).await {
        Ok(page) => page,
        Err(StorageError::NotFound) => return Err(StanzaError::item_not_found().with_text("no such item to page after")),
        Err(e) => return Err(internal(e)),
    };
    let items: Vec<ArchiveItem> = page.items.into_iter().rev().collect();
    // Asked for the newest N with max_items and got them: no result set, as in XEP-0060.
    let rsm = (set.is_some() || (!page.complete && max_items.is_none())).then(|| {
        let mut rsm = Element::new("set", ns::RSM);
        if let (Some(first), Some(last)) = (items.first(), items.last()) {
            rsm.push(Element::new("first", ns::RSM).with_text(first.id.clone()));
            rsm.push(Element::new("last", ns::RSM).with_text(last.id.clone()));
        }
        rsm
    });
    Ok((items, rsm))
}

/// The `<item/>` wrapper in namespace `ns` (its payload keeps its own namespace).
fn rename_ns(item: Element, to: &str) -> Element {
    let mut el = Element::new("item", to);
    for (k, v) in item.attrs() {
        el.set_attr(k, v);
    }
    for child in item.children() {
        el.push(child.clone());
    }
    el
}

async fn retract(server: &Server, a: Account<'_>, owner: &BareJid, node: &str, action: &Element) -> IqResult {
    let config = node_config(server, a, node).await.ok_or_else(StanzaError::item_not_found)?;
    let ids: Vec<&str> = action.children().filter(|i| i.is("item", ns::PUBSUB)).filter_map(|i| i.attr("id")).collect();
    if ids.is_empty() {
        return Err(pubsub_error(StanzaErrorCondition::BadRequest, "item-required"));
    }
    let u = UserRef { host: a.host, user: a.user };
    let removed = server.store.archive_delete(u, &items_store(node), ArchiveDelete::Ids(&ids)).await.map_err(internal)?;
    if removed == 0 {
        return Err(StanzaError::item_not_found());
    }
    if matches!(action.attr("notify"), Some("true" | "1")) {
        let mut items = Element::new("items", ns::PUBSUB_EVENT).with_attr("node", node);
        for id in ids {
            items.push(Element::new("retract", ns::PUBSUB_EVENT).with_attr("id", id));
        }
        notify(server, owner, node, &config, items).await;
    }
    Ok(None)
}

async fn delete(server: &Server, a: Account<'_>, node: &str) -> IqResult {
    let u = UserRef { host: a.host, user: a.user };
    if node_config(server, a, node).await.is_none() {
        return Err(StanzaError::item_not_found());
    }
    server.store.archive_delete(u, &items_store(node), ArchiveDelete::All).await.map_err(internal)?;
    server.store.map_set(u, NODES, node, None).await.map_err(internal)?;
    Ok(None)
}

fn internal(e: jabberwock_storage::StorageError) -> StanzaError {
    tracing::error!(error = %e, "PEP storage failed");
    StanzaError::internal_server_error()
}

#[async_trait]
impl PresenceHooks for Pep {
    /// New capabilities may bring new +notify interests (XEP-0163 §4.3.2); learning them
    /// may take a disco#info round trip, so it runs on its own.
    async fn available(&self, ev: &mut Available<'_>) {
        tokio::spawn(send_last_items(ev.server.clone(), Jid::from(ev.jid.clone()), ev.presence.clone()));
    }
}

/// A local resource became available: learn its capabilities, then send it the last item
/// of every node it wants from its own account and from the contacts it may read.
async fn send_last_items(server: Arc<Server>, full: Jid, presence: Stanza) {
    let Some(caps) = server.modules.get::<Caps>() else { return };
    let Some(features) = caps.learn(&server, full.as_str(), &presence).await else { return };
    let wanted: Vec<&str> = features.iter().filter_map(|f| f.strip_suffix("+notify")).collect();
    if wanted.is_empty() {
        return;
    }
    let me = full.to_bare();
    let Some(a) = Account::of(&me) else { return };
    let (contacts, _) = roster::load(&server, a).await;
    let owners = std::iter::once(me.clone())
        .chain(contacts.into_iter().filter(|(_, i)| i.subscription.has_to()).filter_map(|(j, _)| BareJid::new(&j).ok()))
        .filter(|o| server.config.served_domain(o.domain().as_str()).is_some());
    let Some(handle) = full.resource().and_then(|r| server.sessions.get(me.as_str(), r.as_str())) else { return };
    for owner in owners {
        let Some(oa) = Account::of(&owner) else { continue };
        for node in &wanted {
            let Some(config) = node_config(&server, oa, node).await else { continue };
            if !may_read(&server, &owner, &config, &me).await {
                continue;
            }
            let u = UserRef { host: oa.host, user: oa.user };
            let last = server.store.archive_query(u, &items_store(node), &ArchiveQuery { limit: Some(1), last_page: true, ..Default::default() }).await;
            let Some(item) = last.ok().and_then(|p| p.items.into_iter().next()) else { continue };
            let Ok(el) = reader::parse_element(&item.payload, &Limits::unlimited()) else { continue };
            let items = Element::new("items", ns::PUBSUB_EVENT).with_attr("node", *node).with_child(rename_ns(el, ns::PUBSUB_EVENT));
            let _ = handle.deliver(event_message(&owner, full.as_str(), items));
        }
    }
}
