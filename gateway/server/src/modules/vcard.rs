//! XEP-0054 vcard-temp: anyone may read an account's vCard; only the account writes it.

use async_trait::async_trait;
use jabberwock_proto::{ns, reader, Element, Limits, StanzaError};
use jabberwock_storage::UserRef;

use super::{IqCtx, IqResult, IqRoute, IqTarget, Module};

const STORE: &str = "vcard";

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
            cx.server.store.kv_set(u, STORE, Some(&payload.to_bytes())).await.map_err(|e| {
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
