//! XEP-0054 vcard-temp: anyone may read an account's vCard; only the account writes it.
//! XEP-0153: the hash of the vCard's photo is kept beside it and stamped into the
//! account's presence, so contacts always see the current avatar.
//! XEP-0398: a vCard photo is also published as a XEP-0084 avatar, and a published avatar
//! becomes the vCard photo, so old and new clients see the same picture.

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use jabberwock_proto::{escape, ns, reader, Element, Limits, Stanza, StanzaError};
use jabberwock_storage::{UserRef, Write};
use sha1::Digest;

use super::{Host, IqCtx, IqHandler, IqResult, IqRoute, IqTarget, Module, PresenceHooks};
use crate::server::Server;
use jid::{BareJid, FullJid};

const STORE: &str = "vcard";
const PHOTO_HASH: &str = "vcard_photo_hash";

/// The hex SHA-1 of the vCard's PHOTO/BINVAL, or "" when it has no photo (XEP-0153 §4.1).
fn photo_hash(card: &Element) -> String {
    let Some(binval) = card.child("PHOTO", ns::VCARD).and_then(|p| p.child_text("BINVAL", ns::VCARD)) else {
        return String::new();
    };
    let compact: String = binval.chars().filter(|c| !c.is_whitespace()).collect();
    match base64::engine::general_purpose::STANDARD.decode(compact) {
        Ok(bytes) => sha1::Sha1::digest(bytes).iter().map(|b| format!("{b:02x}")).collect(),
        Err(_) => String::new(),
    }
}

/// Stores the vCard with its photo hash; returns the hash.
async fn save(server: &Server, u: UserRef<'_>, card: &Element) -> Result<String, StanzaError> {
    let bytes = card.to_bytes();
    let hash = photo_hash(card);
    let writes =
        [Write::Keyval { store: STORE, value: Some(&bytes) }, Write::Keyval { store: PHOTO_HASH, value: Some(hash.as_bytes()) }];
    server.store.write_batch(u, &writes).await.map_err(|e| {
        tracing::error!(error = %e, "storing a vCard failed");
        StanzaError::internal_server_error()
    })?;
    Ok(hash)
}

/// XEP-0398 §4: the vCard's photo as XEP-0084 avatar data and metadata.
async fn publish_as_avatar(server: &Server, owner: &BareJid, card: &Element, hash: &str) {
    let Some(photo) = card.child("PHOTO", ns::VCARD) else { return };
    let binval: String = photo.child_text("BINVAL", ns::VCARD).unwrap_or_default().chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD.decode(&binval).map(|b| b.len()).unwrap_or(0);
    let mime = photo.child_text("TYPE", ns::VCARD).unwrap_or_else(|| "image/png".to_owned());
    let data = Element::new("data", ns::AVATAR_DATA).with_text(binval);
    let info = Element::new("info", ns::AVATAR_METADATA).with_attr("id", hash).with_attr("bytes", bytes.to_string()).with_attr("type", mime);
    let metadata = Element::new("metadata", ns::AVATAR_METADATA).with_child(info);
    for (node, payload) in [(ns::AVATAR_DATA, data), (ns::AVATAR_METADATA, metadata)] {
        if let Err(e) = super::pep::publish_item(server, owner, node, hash, payload, &[]).await {
            tracing::warn!(error = %e, node, "publishing the vCard photo as an avatar failed");
        }
    }
}

/// XEP-0398 §3: an avatar published over PEP becomes the vCard photo. `metadata` is the
/// payload of the metadata item, `data` the base64 image it names.
pub async fn avatar_published(server: &Server, owner: &BareJid, metadata: &Element, data: Option<String>) {
    let Some(user) = owner.node() else { return };
    let u = UserRef { host: owner.domain().as_str(), user: user.as_str() };
    let info = metadata.child("info", ns::AVATAR_METADATA);
    let hash = info.and_then(|i| i.attr("id")).unwrap_or_default();
    if server.store.kv_get(u, PHOTO_HASH).await.ok().flatten().as_deref() == Some(hash.as_bytes()) {
        return;
    }
    let stored = server.store.kv_get(u, STORE).await.ok().flatten();
    let mut card = stored
        .and_then(|raw| reader::parse_element(&raw, &Limits::unlimited()).ok())
        .unwrap_or_else(|| Element::new("vCard", ns::VCARD));
    card.remove_children("PHOTO", ns::VCARD);
    if let (Some(info), Some(data)) = (info, data) {
        let mime = info.attr("type").unwrap_or("image/png");
        card.push(
            Element::new("PHOTO", ns::VCARD)
                .with_child(Element::new("TYPE", ns::VCARD).with_text(mime))
                .with_child(Element::new("BINVAL", ns::VCARD).with_text(data)),
        );
    }
    if let Err(e) = save(server, u, &card).await {
        tracing::warn!(error = %e, "updating the vCard from an avatar failed");
    }
}

#[async_trait]
impl PresenceHooks for VCard {
    /// XEP-0153: the account's photo hash goes into an available presence that carries
    /// none.
    async fn broadcasting(&self, server: &Server, from: &FullJid, presence: &mut Stanza) {
        let Some(user) = from.node() else { return };
        stamp_photo_hash(server, UserRef { host: from.domain().as_str(), user: user.as_str() }, presence).await;
    }
}

async fn stamp_photo_hash(server: &Server, u: UserRef<'_>, presence: &mut Stanza) {
    if presence.inner().contains(ns::VCARD_UPDATE) {
        return;
    }
    let Ok(Some(hash)) = server.store.kv_get(u, PHOTO_HASH).await else { return };
    let mut x = Vec::from(&b"<x"[..]);
    escape::namespace_declaration(&mut x, "", ns::VCARD_UPDATE);
    x.extend_from_slice(b"><photo>");
    escape::text(&mut x, std::str::from_utf8(&hash).unwrap_or_default());
    x.extend_from_slice(b"</photo></x>");
    presence.append_raw_child(std::str::from_utf8(&x).expect("UTF-8"));
}

pub struct VCard;

impl Module for VCard {
    fn register(self: Arc<Self>, host: &mut Host) {
        host.features(&[ns::VCARD]);
        host.account_features(&[ns::PEP_VCARD_CONVERSION]);
        host.presence_hooks(self.clone());
        host.iqs(&[IqRoute { target: IqTarget::Account, name: "vCard", ns: ns::VCARD }], self);
    }
}

#[async_trait]
impl IqHandler for VCard {
    async fn handle_iq(&self, cx: &IqCtx<'_>, payload: &Element) -> IqResult {
        let owner = cx.to.to_bare();
        let u = UserRef { host: owner.domain().as_str(), user: owner.node().ok_or_else(StanzaError::bad_request)?.as_str() };
        if cx.set {
            if cx.from.to_bare() != owner {
                return Err(StanzaError::forbidden());
            }
            let previous = cx.server.store.kv_get(u, PHOTO_HASH).await.ok().flatten();
            let hash = save(cx.server, u, payload).await?;
            if !hash.is_empty() && previous.as_deref() != Some(hash.as_bytes()) {
                publish_as_avatar(cx.server, &owner, payload, &hash).await;
            }
            return Ok(None);
        }
        let stored = cx.server.store.kv_get(u, STORE).await.map_err(|_| StanzaError::internal_server_error())?;
        let card = stored
            .and_then(|raw| reader::parse_element(&raw, &Limits::unlimited()).ok())
            .unwrap_or_else(|| Element::new("vCard", ns::VCARD));
        Ok(Some(card))
    }
}
