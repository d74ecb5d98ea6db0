//! XEP-0054 vcard-temp: anyone may read an account's vCard; only the account writes it.
//! XEP-0153: the hash of the vCard's photo is kept beside it and stamped into the
//! account's presence, so contacts always see the current avatar.

use async_trait::async_trait;
use base64::Engine;
use jabberwock_proto::{escape, ns, reader, Element, Limits, Stanza, StanzaError};
use jabberwock_storage::{UserRef, Write};
use sha1::Digest;

use super::{IqCtx, IqResult, IqRoute, IqTarget, Module};

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

/// Adds the account's photo hash to an available presence that carries none.
pub async fn stamp_photo_hash(server: &crate::server::Server, u: UserRef<'_>, presence: &mut Stanza) {
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

#[async_trait]
impl Module for VCard {
    fn features(&self) -> &'static [&'static str] {
        &[ns::VCARD]
    }

    fn iq_routes(&self) -> &'static [IqRoute] {
        &[IqRoute { target: IqTarget::Account, name: "vCard", ns: ns::VCARD }]
    }

    async fn handle_iq(&self, cx: &IqCtx<'_>, payload: &Element) -> IqResult {
        let owner = cx.to.to_bare();
        let u = UserRef { host: owner.domain().as_str(), user: owner.node().ok_or_else(StanzaError::bad_request)?.as_str() };
        if cx.set {
            if cx.from.to_bare() != owner {
                return Err(StanzaError::forbidden());
            }
            let card = payload.to_bytes();
            let hash = photo_hash(payload);
            let writes = [
                Write::Keyval { store: STORE, value: Some(&card) },
                Write::Keyval { store: PHOTO_HASH, value: Some(hash.as_bytes()) },
            ];
            cx.server.store.write_batch(u, &writes).await.map_err(|e| {
                tracing::error!(error = %e, "storing a vCard failed");
                StanzaError::internal_server_error()
            })?;
            return Ok(None);
        }
        let stored = cx.server.store.kv_get(u, STORE).await.map_err(|_| StanzaError::internal_server_error())?;
        let card = stored
            .and_then(|raw| reader::parse_element(&raw, &Limits::unlimited()).ok())
            .unwrap_or_else(|| Element::new("vCard", ns::VCARD));
        Ok(Some(card))
    }
}
